"""The chart's namespaced install: the operator may only touch its one namespace, and its
periodic resync and measurement still cover every pipeline there.

The operator runs with the token of the chart's ServiceAccount (a Role in the watched
namespace, nothing cluster-wide on pipelines), `--namespace=<watched>`, a 1 s resync and a real
Prometheus. Before the resync followed Kopf's watched namespaces it listed pipelines
cluster-wide: 403 every pass, and nothing was ever measured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import helm, helm_bin  # noqa: F401
from tests.chart.test_cluster import (  # noqa: F401
    PIPELINE,
    Release,
    free_port,
    install_rbac,
    new_namespace,
    run_pipeline,
    start_operator,
    stop_operator,
)
from tests.conftest import eventually, kubectl
from tests.prometheus_server import PrometheusServer

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]


def measured_at(namespace: str) -> str | None:
    out = kubectl("get", "scoringpipeline", "phish", "-n", namespace, "-o", "json")
    metrics = json.loads(out).get("status", {}).get("metrics") or {}
    return metrics.get("measuredAt")


def test_resync_measures_the_watched_namespace_only(
        install_rbac: Callable[..., Release], new_namespace: Callable[[], str],  # noqa: F811
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watched = new_namespace()
    other = new_namespace()
    rel = install_rbac({"watchNamespace": watched,
                        "operator": {"verbose": True, "livenessPort": free_port()}})
    kubectl("apply", "-n", other, "-f", "-", stdin=PIPELINE)
    # No scrape targets: every answer is "no data", which still stamps status.metrics with
    # its measuredAt; only a resync that reached the pipeline and Prometheus writes that.
    with PrometheusServer(tmp_path, []) as prom:
        monkeypatch.setenv("SCOREFLEET_PROMETHEUS_URL", prom.url)
        monkeypatch.setenv("SCOREFLEET_PROMETHEUS_NAMESPACE_LABEL", "")
        monkeypatch.setenv("SCOREFLEET_RESYNC_SECONDS", "1")
        op = start_operator(rel, tmp_path)
        try:
            run_pipeline(op, watched)
            first: Any = eventually("status.metrics.measuredAt",
                                    lambda: measured_at(watched), timeout=30)
            # Several passes, each measuring again (measuredAt has a resolution of 1 s).
            eventually("a later resync", lambda: (m := measured_at(watched)) and m > first,
                       timeout=30)
            assert "resync failed" not in op.text()
            # The pipeline outside the watched namespace was never touched.
            assert json.loads(kubectl("get", "scoringpipeline", "phish", "-n", other,
                                      "-o", "json")).get("status") is None
        finally:
            stop_operator(op)  # no 403, no Forbidden, no traceback in the log
