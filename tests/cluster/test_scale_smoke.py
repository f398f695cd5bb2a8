"""The scale benchmark's machinery at a tiny scale, so that it cannot rot: 5 pipelines, the
operator as its own process with the chart's (namespaced) ServiceAccount, a 2 s resync, the
API server's per-FlowSchema counts, /proc sampling. The figures themselves come from
`python benchmarks/scale` (docs/scale.md), never from a test.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

# The benchmark is the package `scale` under benchmarks/ (as `python benchmarks/scale` runs it).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from scale import fleet
from scale.operator_process import free_port
from scale.run import Config, headline, run

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_benchmark_machinery_at_five_pipelines(control_plane: Any, tmp_path: Path) -> None:
    ns = f"scale-{uuid.uuid4().hex[:6]}"
    cfg = Config(pipelines=5, namespace=ns, operator_namespace=f"{ns}-system",
                 resync_seconds=2.0, converge_timeout=180.0, settle_seconds=4.0,
                 steady_seconds=15.0, watch_one_namespace=True)
    result = run(cfg, tmp_path, free_port())

    conv = result["converge"]
    assert conv["converged"], result
    assert conv["deployments_created"]["count"] == 5
    assert conv["pipelines_ready"]["count"] == 5
    assert 0 < conv["deployments_created"]["all_s"] <= conv["pipelines_ready"]["all_s"]
    steady = result["steady"]
    # A 2 s resync over 15 s reconciles every pipeline at least once even on a loaded machine;
    # the API server counted each (one GET of the pipeline per reconcile, in its own
    # FlowSchema) and the rest.
    assert steady["reconciles"] >= cfg.pipelines, steady
    assert steady["requests_per_reconcile"] > 1, steady
    assert steady["operator_requests"] > steady["reconciles"]
    # Unchanged pipelines: a resync rewrites no status.
    assert steady["status_writes"] == 0, steady["by_verb_all_clients"]
    procs = steady["processes"]["processes"]
    assert procs["operator"]["rss_mb_median"] > 20
    assert procs["operator"]["cpu_core_share"] > 0
    assert "kube-apiserver" in procs
    assert result["operator_log"]["errors_and_warnings"] == 0, result["operator_log"]
    assert not result["operator_exited_early"]
    figures = headline(cfg, result)["figures"]
    assert figures["requests_per_resync"] == round(steady["requests_per_reconcile"] * 5)


def test_node_sizing() -> None:
    shape = fleet.NodeShape(pods=110, cpu=128, memory_gi=512)
    # 1,000 default pipelines: 2,000 pods + 10 % headroom, 110 a node.
    assert fleet.kwok_nodes_needed(1000, 0, shape) == 20
    assert fleet.kwok_nodes_needed(5, 64, shape) == 0
    # CPU bound: 8 cores of 1-CPU pods hold 8 pods.
    assert fleet.kwok_nodes_needed(4, 0, fleet.NodeShape(pods=110, cpu=8)) == 2
    assert fleet.service_ips(["10.0.0.0/24"]) == 254
