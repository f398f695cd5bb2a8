"""Canary analysis end to end on real measurements: the operator judges what a real Prometheus
scraped from real scorer processes, and rolls back or promotes.

kwok pods run no containers, so two scorer processes on 127.0.0.1 stand in for the pipeline's
stable and candidate pods (same pipeline and track labels in their metrics), and a load thread
sends requests to both: the traffic split is the load thread's, not the router's (the Replicas
router's real split needs scorer pods on a real node). Prints the measured time from the start
of the first bad interval to the rollback (traffic back on stable in status, candidate scaled
to zero), in analysis intervals.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from scorefleet.scorer.protos import v1_pb2
from tests.conftest import eventually, kubectl
from tests.operator_process import OperatorProcess
from tests.prometheus_server import PrometheusServer
from tests.scorer.scorer_process import Models, ScorerProcess

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow]

INTERVAL = 5  # seconds per analysis interval
RESYNC = 1  # seconds between the operator's measuring reconciles

PIPELINE = f"""
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata: {{name: phish}}
spec:
  model: {{name: phish, version: v1, uri: "file:///models/v1.onnx"}}
  scaling: {{minReplicas: 1, maxReplicas: 2}}
  slo: {{p99Latency: 2s}}
  rollout:
    canary: {{steps: [{{weight: 50}}]}}
    analysis: {{interval: {INTERVAL}s, minRequestCount: 20, failureLimit: 2}}
"""


class Load:
    """Requests to a scorer from a thread, at most ~100 RPC/s, for at most 3 minutes."""

    def __init__(self, scorer: ScorerProcess) -> None:
        self.scorer = scorer
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 180
        request = v1_pb2.ScoreRequest(event=v1_pb2.Event(features=[0.2] * 32))
        while not self.stop.is_set() and time.monotonic() < deadline:
            # A broken candidate answers UNAVAILABLE: counted by the scorer itself.
            with contextlib.suppress(grpc.RpcError):
                self.scorer.scorer.Score(request, timeout=2)
            self.sent += 1
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture
def operator_with(tmp_path: Path) -> Iterator[Any]:
    """Starts the operator on a Prometheus URL; stops it cleanly after the test."""
    operators: list[OperatorProcess] = []

    def start(prometheus_url: str) -> None:
        workdir = tmp_path / f"operator-{len(operators)}"
        workdir.mkdir()
        operators.append(OperatorProcess(workdir, {
            "SCOREFLEET_PROMETHEUS_URL": prometheus_url,
            "SCOREFLEET_PROMETHEUS_NAMESPACE_LABEL": "",  # static scrape: no namespace
            "SCOREFLEET_RESYNC_SECONDS": str(RESYNC), "SCOREFLEET_METRICS_WINDOW": "10s"}
        ).start())

    yield start
    for op in operators:
        op.stop()


def status(namespace: str) -> dict[str, Any]:
    sp = json.loads(kubectl("get", "sp", "phish", "-n", namespace, "-o", "json"))
    return dict(sp.get("status") or {})


@pytest.mark.parametrize("candidate", ["broken", "good"])
def test_canary_judged_on_real_measurements(control_plane: Any, namespace: str, models: Models,
                                            start_scorer: Any, tmp_path: Path,
                                            operator_with: Any, candidate: str) -> None:
    stable = start_scorer({"model": models.ref("v1"), "pipeline": "phish"}).wait_serving()
    config: dict[str, Any] = {"model": models.ref("v2"), "pipeline": "phish",
                              "track": "candidate"}
    if candidate == "broken":
        config["model"] = models.ref("broken")  # never loads: every RPC is UNAVAILABLE
    cand = start_scorer(config)
    if candidate != "broken":
        cand.wait_serving()
    with PrometheusServer(tmp_path, [f"127.0.0.1:{stable.metrics_port}",
                                     f"127.0.0.1:{cand.metrics_port}"]) as prom:
        prom.wait_for("targets up", prom.targets_up, 30)
        operator_with(prom.url)
        kubectl("apply", "-n", namespace, "-f", "-", stdin=PIPELINE)
        eventually("v1 stable", lambda: status(namespace).get("phase") == "Ready", timeout=120)
        with Load(stable), Load(cand):
            kubectl("patch", "sp", "phish", "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"model": {"version": "v2",
                                                   "uri": "file:///models/v2.onnx"}}}))
            started = eventually("step started", lambda: (status(namespace).get("canary")
                                                         or {}).get("stepStartedAt"),
                                 timeout=90, interval=0.2)
            seen_started = time.monotonic()
            done = eventually("rollout finished", lambda: (
                s if (s := status(namespace)).get("rollout", {}).get("phase") in (
                    "Failed", "Succeeded") else None), timeout=150, interval=0.2)
            seen_done = time.monotonic()
    rollout = done["rollout"]
    checks = {c["metric"]: c for c in done["analysis"]["checks"]}
    if candidate == "good":
        assert rollout["phase"] == "Succeeded", rollout
        assert done["stable"]["version"] == "v2"
        return
    assert rollout["phase"] == "Failed", rollout
    failed = "errorRate"
    assert checks[failed]["result"] == "Failed"
    assert checks[failed]["measured"] > checks[failed]["threshold"]
    assert done["canary"]["weight"] == 50 and done["phase"] == "Failed"
    by_status = (datetime.strptime(rollout["finishedAt"], "%Y-%m-%dT%H:%M:%SZ")
                 .replace(tzinfo=UTC) - datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ")
                 .replace(tzinfo=UTC)).total_seconds()
    observed = seen_done - seen_started
    print(f"\nROLLBACK {candidate}: {by_status:.0f} s from the first bad interval's start to "
          f"Failed by status times ({by_status / INTERVAL:.2f} intervals of {INTERVAL} s); "
          f"{observed:.1f} s as observed by polling; {checks[failed]['metric']} "
          f"{checks[failed]['measured']} vs {checks[failed]['threshold']}")
    # Two failed intervals (failureLimit 2), each judged by the first resync after it ends.
    assert by_status <= 2 * (INTERVAL + RESYNC) + 2
    kubectl("wait", "-n", namespace, "--for=condition=RolledBack", "sp/phish", "--timeout=30s")
