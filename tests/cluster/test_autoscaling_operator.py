"""The operator autoscales on what a real Prometheus scraped from real scorer processes.

kwok pods run no containers, so three scorer processes on 127.0.0.1 stand in for the stable
track's pods (as many as maxReplicas, so Prometheus always sees at least as many scorers as
there are ready pods and the readings are complete), and a load thread sends them requests.
The replica count the operator writes into the Deployment therefore follows the measured
load, but the stand-ins do not get faster when it grows: that needs the real node
(benchmarks/autoscaling, docs/autoscaling.md). `targetQPSPerReplica: 10` makes a few dozen
requests per second worth three replicas, so the test needs no heavy load; the SLO (500 ms) is
far from the stand-ins' latency so that only QPS moves the decisions.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
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

SCALE_REASONS = ("ScaleUp", "PanicScaleUp", "ScaleDown", "BelowMinReplicas", "AboveMaxReplicas")
PIPELINE = """
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata: {name: phish}
spec:
  model: {name: phish, version: v1, uri: "file:///models/v1.onnx"}
  scaling:
    minReplicas: 1
    maxReplicas: 3
    targetQPSPerReplica: 10
    scaleDown: {stabilizationWindow: 10s}
  slo: {p99Latency: 500ms}
  rollout:
    canary: {steps: [{weight: 50}]}
    analysis: {interval: 5s, minRequestCount: 1000000}
"""


class Load:
    """Requests round-robin over the stand-ins from one thread: ~100 RPC/s at most, for at
    most 4 minutes."""

    def __init__(self, scorers: list[ScorerProcess]) -> None:
        self.scorers = scorers
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 240
        request = v1_pb2.ScoreRequest(event=v1_pb2.Event(features=[0.2] * 32))
        i = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                self.scorers[i % len(self.scorers)].scorer.Score(request, timeout=2)
            i += 1
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


class Operator(OperatorProcess):
    """The operator deciding every 2 s from the test's Prometheus (static scrape, so no
    namespace label), its own /metrics served."""

    def __init__(self, tmp_path: Path, prometheus_url: str) -> None:
        super().__init__(tmp_path, {
            "SCOREFLEET_PROMETHEUS_URL": prometheus_url,
            "SCOREFLEET_PROMETHEUS_NAMESPACE_LABEL": "",  # static scrape
            "SCOREFLEET_AUTOSCALE_SECONDS": "2", "SCOREFLEET_METRICS_WINDOW": "10s",
            "SCOREFLEET_PANIC_WINDOW": "5s"}, metrics=True)


@pytest.fixture
def fleet(control_plane: Any, namespace: str, models: Models, start_scorer: Any,
          tmp_path: Path) -> Iterator[tuple[list[ScorerProcess], PrometheusServer, Operator]]:
    scorers = [start_scorer({"model": models.ref("v1"), "pipeline": "phish"})
               for _ in range(3)]
    for s in scorers:
        s.wait_serving()
    with PrometheusServer(tmp_path, [f"127.0.0.1:{s.metrics_port}" for s in scorers]) as prom:
        prom.wait_for("targets up", prom.targets_up, 30)
        operator = Operator(tmp_path, prom.url)
        operator.start()
        try:
            kubectl("apply", "-n", namespace, "-f", "-", stdin=PIPELINE)
            eventually("Ready", lambda: status(namespace).get("phase") == "Ready", timeout=120)
            yield scorers, prom, operator
        finally:
            kubectl("delete", "sp", "phish", "-n", namespace, "--ignore-not-found")
            if operator.proc is not None:
                operator.stop()


def status(namespace: str) -> dict[str, Any]:
    sp = json.loads(kubectl("get", "sp", "phish", "-n", namespace, "-o", "json"))
    return dict(sp.get("status") or {})


def scaling(namespace: str) -> dict[str, Any]:
    return dict((status(namespace).get("autoscaling") or {}).get("stable") or {})


def replicas(namespace: str, track: str = "stable") -> int:
    dep = json.loads(kubectl("get", "deployment", f"phish-{track}", "-n", namespace,
                             "-o", "json"))
    return int(dep["spec"]["replicas"])


def events(namespace: str) -> list[dict[str, Any]]:
    raw = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json"))
    return [e for e in raw["items"] if e["involvedObject"].get("kind") == "ScoringPipeline"]


def condition(namespace: str, kind: str) -> dict[str, Any]:
    return next((c for c in status(namespace).get("conditions", []) if c["type"] == kind), {})


def hold(what: str, check: Any, seconds: float) -> None:
    """`check` stays true for `seconds` (polled every second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(1)


def test_replicas_follow_load_hold_without_metrics_and_survive_a_restart(
        namespace: str, fleet: tuple[list[ScorerProcess], PrometheusServer, Operator]) -> None:
    scorers, prom, operator = fleet
    assert replicas(namespace) == 1
    with Load(scorers):
        eventually("scaled up to 3", lambda: replicas(namespace) == 3, timeout=90)
        s = eventually("status says 3", lambda: (a := scaling(namespace)).get("desired") == 3
                       and a, timeout=30)
        assert s["reason"] in ("WithinTarget", "AtMaxReplicas", "ScaleUp"), s
        assert s["demandQps"] > 20 and s["sloP99LatencyMs"] == 500, s
        assert operator.metric("scorefleet_operator_autoscaler_desired_replicas",
                               pipeline="phish", track="stable") == 3
        changes = operator.metric("scorefleet_operator_autoscaler_scale_changes_total",
                                  pipeline="phish", direction="up")
        header, row = kubectl("get", "sp", "phish", "-n", namespace).splitlines()[:2]
        assert row[header.index("DESIRED"):].split()[0] == "3"

        # An operator restart under load: the Deployment never drops back to minReplicas.
        operator.stop()
        restarted = time.time()
        operator.start()
        hold("3 replicas through the restart", lambda: replicas(namespace) == 3, 15)
        eventually("a new decision after the restart", lambda: _decided_since(
            scaling(namespace), restarted), timeout=30)
        assert replicas(namespace) == 3

        # Prometheus stops, and so does the load: the autoscaler holds and says why.
        prom.stop()
        outage = time.time()
    stale = eventually("StaleMetrics in status", lambda: (
        a if (a := scaling(namespace)).get("reason") == "StaleMetrics" else None), timeout=30)
    assert "Prometheus unavailable" in stale["message"], stale
    assert condition(namespace, "ScalingActive")["status"] == "False"
    # Longer than the rate window (10 s) and the scale-down window (10 s) together.
    hold("no scale-down without metrics", lambda: replicas(namespace) == 3, 30)
    assert operator.metric("scorefleet_operator_autoscaler_metrics_available",
                           pipeline="phish", track="stable") == 0

    # Prometheus is back: the idle fleet is measured again and scaled down.
    prom.start()
    eventually("scaled down to 1", lambda: replicas(namespace) == 1, timeout=120)
    assert condition(namespace, "ScalingActive")["status"] == "True"
    s = scaling(namespace)
    assert s["desired"] == 1 and s["measurement"].startswith("Sample:"), s

    # Every change: exactly one Event and one log line, and no second "ChildUpdated" Event.
    scale_events = [e for e in events(namespace) if e["reason"] in SCALE_REASONS]
    ups = [e for e in scale_events if e["reason"] in ("ScaleUp", "PanicScaleUp")]
    downs = [e for e in scale_events if e["reason"] == "ScaleDown"]
    assert ups and downs, scale_events
    assert sum(e.get("count", 1) for e in ups) == changes  # the first operator's changes
    assert not [e for e in events(namespace) if e["reason"] == "ChildUpdated"]
    log = operator.text()
    for e in scale_events:
        assert log.count(f"{e['reason']}: {e['message']}") == 1, e["message"]
    assert any(e["type"] == "Warning" and e["reason"] == "StaleMetrics"
               and _at(e) >= outage - 1 for e in events(namespace))


def test_no_scale_down_during_a_rollout(
        namespace: str, fleet: tuple[list[ScorerProcess], PrometheusServer, Operator]) -> None:
    scorers, _, _ = fleet
    with Load(scorers):
        eventually("scaled up to 3", lambda: replicas(namespace) == 3, timeout=90)
        kubectl("patch", "sp", "phish", "-n", namespace, "--type=merge", "-p", json.dumps(
            {"spec": {"model": {"version": "v2", "uri": "file:///models/v2.onnx"}}}))
        eventually("canary started", lambda: (status(namespace).get("rollout") or {}).get(
            "phase") == "Canary", timeout=60)
    # The load is gone: without the rollout this fleet goes to 1 within ~20 s (the other test).
    eventually("RolloutInProgress holds", lambda: scaling(namespace).get("reason")
               == "RolloutInProgress", timeout=40)
    hold("no scale-down during the rollout", lambda: replicas(namespace) == 3, 30)
    # Sized by weight: the Replicas router gives the candidate the pod share of its weight.
    assert replicas(namespace, "candidate") == 3
    kubectl("annotate", "sp", "phish", "-n", namespace, "--overwrite",
            "scorefleet.io/rollout-action=abort t1")
    eventually("rollout aborted", lambda: (status(namespace).get("rollout") or {}).get(
        "phase") == "Aborted", timeout=60)
    eventually("scaled down after the rollout", lambda: replicas(namespace) == 1, timeout=90)


def _decided_since(s: dict[str, Any], since: float) -> bool:
    return bool(s.get("decidedAt")) and _parse(s["decidedAt"]) >= since


def _at(event: dict[str, Any]) -> float:
    return _parse(event.get("lastTimestamp") or event.get("eventTime") or "")


def _parse(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(re.sub(r"\.\d+", "", text)).timestamp()
