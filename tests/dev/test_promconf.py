"""The node's Prometheus configuration (pure): what a user writes for scorer pods."""

from __future__ import annotations

from pathlib import Path

import yaml

from scorefleet.dev import promconf
from scorefleet.dev.nodeconf import NODE_NAME


def test_pods_are_discovered_through_the_api_server_with_the_node_s_credentials() -> None:
    cfg = yaml.safe_load(promconf.config(api_server="https://127.0.0.1:6443", ca=Path("/ca"),
                                         cert=Path("/c"), key=Path("/k")))
    (job,) = cfg["scrape_configs"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert sd["api_server"] == "https://127.0.0.1:6443"
    assert sd["tls_config"] == {"ca_file": "/ca", "cert_file": "/c", "key_file": "/k"}
    # Only the real node's pods: kwok's have addresses nothing listens on.
    assert sd["selectors"] == [{"role": "pod", "field": f"spec.nodeName={NODE_NAME}"}]


def test_relabelling_keeps_annotated_pods_and_names_namespace_pod_pipeline_track() -> None:
    job = promconf.scrape_config(api_server="https://x", ca=Path("/ca"), cert=Path("/c"),
                                 key=Path("/k"))
    rules = job["relabel_configs"]
    keep = [r for r in rules if r.get("action") == "keep"]
    assert keep[0]["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    targets = {r["target_label"]: r["source_labels"] for r in rules if "target_label" in r}
    assert targets["namespace"] == ["__meta_kubernetes_namespace"]
    assert targets["pod"] == ["__meta_kubernetes_pod_name"]
    assert targets["pipeline"] == ["__meta_kubernetes_pod_label_scorefleet_io_pipeline"]
    assert targets["track"] == ["__meta_kubernetes_pod_label_scorefleet_io_track"]
    assert targets["__address__"] == ["__meta_kubernetes_pod_ip",
                                      "__meta_kubernetes_pod_annotation_prometheus_io_port"]
