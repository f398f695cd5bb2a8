"""The local Prometheus's configuration: scorer pods found through the API server (pure).

What a user writes in a cluster: `kubernetes_sd_configs` (role pod), keep the pods annotated
`prometheus.io/scrape: "true"` (the operator annotates every scorer pod), scrape the port
named by `prometheus.io/port`, and copy namespace, pod, pipeline and track onto every series.
The pipeline and track come from the pod's labels (the operator's), not from what the scorer
says about itself: a mislabelled process cannot report into another pipeline's numbers.

Discovery is limited to pods on the real node (a field selector, as a per-node agent would
do): kwok's fake pods have addresses nothing listens on, outside the machine's own networks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from scorefleet.dev.nodeconf import NODE_NAME

JOB = "scorefleet-scorers"
# Scraped often: the local default shows QPS and p99 within seconds of a short load.
SCRAPE_INTERVAL = "2s"


def _label(name: str) -> str:
    """The meta label Prometheus makes of a pod label or annotation name."""
    return "".join(c if c.isalnum() else "_" for c in name)


def scrape_config(*, api_server: str, ca: Path, cert: Path, key: Path) -> dict[str, Any]:
    tls = {"ca_file": str(ca), "cert_file": str(cert), "key_file": str(key)}
    meta = "__meta_kubernetes_pod_"
    return {
        "job_name": JOB,
        "scrape_interval": SCRAPE_INTERVAL,
        "kubernetes_sd_configs": [{
            "role": "pod",
            "api_server": api_server,
            "tls_config": tls,
            "selectors": [{"role": "pod", "field": f"spec.nodeName={NODE_NAME}"}],
        }],
        "relabel_configs": [
            {"source_labels": [f"{meta}annotation_{_label('prometheus.io/scrape')}"],
             "regex": "true", "action": "keep"},
            {"source_labels": [f"{meta}phase"], "regex": "Running", "action": "keep"},
            {"source_labels": [f"{meta}ip", f"{meta}annotation_{_label('prometheus.io/port')}"],
             "regex": r"(.+);(\d+)", "replacement": "$1:$2", "target_label": "__address__"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": [f"{meta}name"], "target_label": "pod"},
            {"source_labels": [f"{meta}label_{_label('scorefleet.io/pipeline')}"],
             "target_label": "pipeline"},
            {"source_labels": [f"{meta}label_{_label('scorefleet.io/track')}"],
             "target_label": "track"},
        ],
    }


def config(*, api_server: str, ca: Path, cert: Path, key: Path) -> str:
    doc = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [scrape_config(api_server=api_server, ca=ca, cert=cert, key=key)],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def rbac(user: str) -> str:
    """Read access for discovery (what the Prometheus chart's ClusterRole grants)."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": user},
        "rules": [{"apiGroups": [""], "resources": ["pods", "services", "endpoints", "nodes"],
                   "verbs": ["get", "list", "watch"]},
                  {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                   "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    return yaml.safe_dump_all([role, binding], sort_keys=False)
