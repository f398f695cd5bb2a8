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

from scorefleet.scorer.example_model import synthetic_features
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

    def __init__(self, scorer: ScorerProcess, events: list[list[float]] | None = None) -> None:
        self.scorer = scorer
        self.events = events or [[0.2] * 32]
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 180
        requests = [v1_pb2.ScoreRequest(event=v1_pb2.Event(features=e)) for e in self.events]
        while not self.stop.is_set() and time.monotonic() < deadline:
            # A broken candidate answers UNAVAILABLE: counted by the scorer itself.
            with contextlib.suppress(grpc.RpcError):
                self.scorer.scorer.Score(requests[self.sent % len(requests)], timeout=2)
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


SHADOW_PIPELINE = f"""
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata: {{name: phish}}
spec:
  model: {{name: phish, version: v1, uri: "file:///models/v1.onnx"}}
  scaling: {{minReplicas: 1, maxReplicas: 2}}
  rollout:
    strategy: ShadowThenCanary
    shadow: {{sampleRate: 1.0, duration: 1m, minSamples: 20, minAgreement: 0.0}}
    analysis: {{interval: {INTERVAL}s, minRequestCount: 20, failureLimit: 2}}
"""


def drifted_model(models: Models, version: str = "v9", shift: float = 1.4) -> dict[str, Any]:
    """v1 with every score's odds multiplied by e^shift (~4x): the same ranking, a shifted
    score distribution, as a recalibrated or mis-trained model would give."""
    import onnx

    model = onnx.load(str(models.dir / "model-v1.onnx"))
    ensemble = next(n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor")
    base = next(a for a in ensemble.attribute if a.name == "base_values")
    base.floats[0] += shift
    models.add(version, model)
    return models.ref(version)


def test_a_drifting_candidate_fails_in_shadow_before_taking_traffic(
        control_plane: Any, namespace: str, models: Models, start_scorer: Any, tmp_path: Path,
        operator_with: Any) -> None:
    """A candidate whose scores drift (odds x4) scores the stable pods' own requests beside
    v1 and fails the default drift limit (PSI 0.1, less its sampling noise) in shadow, before
    any canary step gives it a request."""
    # The stand-in for the stable pods runs what the operator's shadow config asks of them.
    stable = start_scorer({"model": models.ref("v1"), "pipeline": "phish",
                           "shadow": {"model": drifted_model(models), "sampleRate": 1.0,
                                      "maxCpuFraction": 1.0}}).wait_serving()
    with PrometheusServer(tmp_path, [f"127.0.0.1:{stable.metrics_port}"]) as prom:
        prom.wait_for("targets up", prom.targets_up, 30)
        operator_with(prom.url)
        kubectl("apply", "-n", namespace, "-f", "-", stdin=SHADOW_PIPELINE)
        eventually("v1 stable", lambda: status(namespace).get("phase") == "Ready", timeout=120)
        # Varied events (a constant one would put every score in one bucket).
        events = synthetic_features(2000, seed=5).astype(float).tolist()
        with Load(stable, events):
            kubectl("patch", "sp", "phish", "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"model": {"version": "v9",
                                                   "uri": "file:///models/v9.onnx"}}}))
            done = eventually("rollout finished", lambda: (
                s if (s := status(namespace)).get("rollout", {}).get("phase") in (
                    "Failed", "Succeeded") else None), timeout=150, interval=0.5)
    assert done["rollout"]["phase"] == "Failed", done["rollout"]
    assert "in shadow" in done["rollout"]["message"], done["rollout"]["message"]
    checks = {c["metric"]: c for c in done["shadow"]["checks"]}
    drift = checks["scoreDrift"]
    assert drift["result"] == "Failed" and drift["measured"] > drift["threshold"] == 0.1
    assert done["shadow"]["samples"] >= 20
    # It never took a request: no canary step was entered, no candidate track was made.
    assert "canary" not in done
    assert not kubectl("get", "deployment", "phish-candidate", "-n", namespace,
                       "--ignore-not-found").strip()
    print(f"\nSHADOW DRIFT: failed in shadow after {done['shadow']['samples']} pairs; "
          f"scoreDrift {drift['measured']} > {drift['threshold']} ({drift['message']}); "
          f"agreement {checks['agreement']['measured']}")
