"""The operator killed and restarted at every phase of a rollout on real scorer pods resumes
exactly where it was: each transition happens once, in order, no step skipped or repeated, the
rollout's clocks unchanged by the restarts, the end state right; the requests flowing
throughout are counted for failures (printed, with when they failed).

The project's scorer image on the local cluster's real node: 2 stable pods (v1); v2 rolls out
through canary steps of 33% (one candidate pod) and 50% (two) with neither pause nor gate, so
each step is moved on by the operator's own analysis of what the node's Prometheus discovered
(kubernetes_sd) and scraped from the pods, while 60 RPC/s go through the cluster DNS to them
(the Replicas router), then promoted.

A SIGKILL sent from outside lands between two passes almost always: a pass takes milliseconds.
So the operator kills itself inside the pass that makes each transition
(scorefleet/operator/crash_points.py), at each point where a crash can leave the world half
done: the children acted on but the status not written (`before-status`; a promotion has then
deleted the candidate while the status still says Promoting), and the status written but its
Events not created (`after-status`; the outbox in status has them created by the next pass).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scorefleet import load
from scorefleet.operator.crash_points import ENV as CRASH_AT
from scorefleet.operator.crash_points import POINTS  # in pass order
from tests.cluster import real_pods
from tests.cluster.real_pods import pipeline_yaml, wait_ready_pods
from tests.cluster.test_rollout_real_pods import DRAIN_DELAY, Answers, send, status
from tests.conftest import eventually, kubectl
from tests.operator_process import OperatorProcess
from tests.scorer.scorer_process import Models

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow,
              pytest.mark.timeout(900)]  # the first real-pod test also builds the image

NAME = "phish"
# The rollout's transitions, in order; the operator is killed twice in the pass making each.
TRANSITIONS = ("RolloutStarted", "CanaryStep", "CanaryStepPassed", "CanaryStep", "Promoting",
               "RolloutSucceeded")


def restart_pipeline(models: Models, store_url: str, version: str) -> str:
    """Noisy p99 intervals on a loaded 2-core machine are Inconclusive: a pause after the
    default 3 in a row would wait for `resume`, which is not what this test is about."""
    base: str = pipeline_yaml(NAME, models, store_url, replicas=2, version=version)
    return base + """\
  rollout:
    canary: {steps: [{weight: 33}, {weight: 50}]}
    analysis: {interval: 5s, minRequestCount: 20, inconclusiveLimit: 20}
"""


def crashed(op: OperatorProcess, timeout: float) -> None:
    """Wait for the crash point to kill the operator."""
    assert op.proc is not None
    try:
        code = op.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        op.kill()
        raise AssertionError(f"crash point not reached within {timeout}s; operator log "
                             f"tail:\n{op.text()[-6000:]}") from None
    assert code == -signal.SIGKILL, f"operator exited {code}, not by its crash point"
    op.proc = None


def stage(s: dict[str, Any]) -> int:
    """How many of TRANSITIONS status records as done."""
    rollout, canary = s.get("rollout") or {}, s.get("canary") or {}
    phase = rollout.get("phase")
    if phase is None:
        return 0
    if phase == "Canary":
        return 1 + 2 * int(canary.get("step", 0)) + (1 if canary.get("stepStartedAt") else 0)
    if phase not in ("Promoting", "Succeeded"):
        raise AssertionError(f"rollout {phase}: {rollout.get('message')}")
    return {"Promoting": 5, "Succeeded": 6}[str(phase)]


def deployment(ns: str, track: str) -> dict[str, Any] | None:
    out = kubectl("get", "deploy", f"{NAME}-{track}", "-n", ns, "-o", "json", check=False)
    return json.loads(out) if out.lstrip().startswith("{") else None


def test_killed_and_restarted_at_every_phase_on_real_pods(
        real_node: Any, scorer_image: str, real_namespace: str, models: Models,
        tmp_path: Path) -> None:
    node, ns = real_node, real_namespace
    real_pods.publish_models(models, node)
    op = real_pods.operator(node.prometheus_url, tmp_path / "operator.log")
    stop = threading.Event()
    results: list[Answers] = []
    loader = threading.Thread(target=lambda: results.append(send(
        load.headless_target(NAME, ns, node.dns), rate=60, seconds=420, stop=stop)))
    # (crash point, phase it left, seconds it ran, when it died: seconds after v2 was applied)
    kills: list[tuple[str, str, float, float]] = []
    try:
        op.start()
        kubectl("apply", "-n", ns, "-f", "-",
                stdin=restart_pipeline(models, node.model_store_url, "v1"))
        wait_ready_pods(ns, NAME, 2)
        eventually("v1 Ready", lambda: status(ns, NAME).get("phase") == "Ready", timeout=120)
        op.stop()
        loader.start()
        # Applied with no operator running: the first one below starts the rollout.
        kubectl("apply", "-n", ns, "-f", "-",
                stdin=restart_pipeline(models, node.model_store_url, "v2"))
        began = time.monotonic()
        clocks: dict[str, str] = {}  # rollout start, step starts: set once, never moved
        for index, reason in enumerate(TRANSITIONS):
            for point in POINTS:
                started = time.monotonic()
                op.start(**{CRASH_AT: f"{point}:{reason}"})
                crashed(op, timeout=150)
                ran = time.monotonic() - started
                s = status(ns, NAME)
                kills.append((f"{point}:{reason}", (s.get("rollout") or {}).get(
                    "phase", "none"), ran, time.monotonic() - began))
                # Crashed inside the pass making this transition: before its status write
                # the one before it is the last recorded, after it this one is.
                done = index if point == "before-status" else index + 1
                assert stage(s) == done, (reason, point, s.get("rollout"), s.get("canary"))
                _same_clocks(clocks, s)
                if (reason, point) == ("Promoting", "after-status"):
                    # Moved on by the analysis of the candidate pods Prometheus scraped.
                    analysis = s["analysis"]
                    assert analysis["lastResult"] == "Successful", analysis
                    (count,) = [c for c in analysis["checks"] if c["metric"] == "requestCount"]
                    assert count["measured"] >= count["threshold"] == 20, count
                if (reason, point) == ("RolloutSucceeded", "before-status"):
                    # The switching pass deleted the candidate and died before recording
                    # Succeeded: the stable track already runs v2, the status says Promoting.
                    # The next operator must finish without recreating the candidate.
                    assert deployment(ns, "candidate") is None
                    config = kubectl("get", "configmap", f"{NAME}-stable", "-n", ns,
                                     "-o", "jsonpath={.data.config\\.yaml}")
                    assert "version: v2" in config, "stable track not switched"
        took = time.monotonic() - began
        op.start()  # no crash point: it announces what the last one recorded
        s = status(ns, NAME)
        assert s["rollout"]["phase"] == "Succeeded", s["rollout"]
        assert s["stable"]["version"] == "v2" and s.get("candidate") is None
        assert deployment(ns, "candidate") is None
        eventually("Ready", lambda: status(ns, NAME).get("phase") == "Ready", timeout=60)
        eventually("outbox emptied", lambda: not status(ns, NAME).get("pendingEvents"),
                   timeout=30)
        _one_event_per_transition(ns)
        pods = wait_ready_pods(ns, NAME, 2)
        assert {p["metadata"]["labels"]["scorefleet.io/track"] for p in pods} == {"stable"}
        time.sleep(DRAIN_DELAY + 1)  # the replaced pods' drain ends
        op.stop()
        assert "Traceback" not in op.text(), op.text()[-3000:]
    finally:
        stop.set()
        if loader.is_alive():
            loader.join(timeout=30)
        if op.proc is not None and op.proc.poll() is None:
            op.kill()
    (during,) = results
    failed = sum(n for code, n in during.codes.items() if code != "OK")
    final = send(load.headless_target(NAME, ns, node.dns), rate=60, seconds=5)
    print(f"\nRESTART ON REAL PODS: {len(kills)} kills, rollout Succeeded "
          f"{took:.0f} s after v2 was applied; phase left at each kill "
          f"{[(point, phase, round(ran, 1), round(at, 1)) for point, phase, ran, at in kills]}"
          f"; requests during the whole rollout {dict(during.codes)} ({failed} failed, at "
          f"{[round(t - began, 2) for t in during.failed_at]} s: {during.failures[:5]}), by "
          f"track {dict(during.tracks())}; afterwards {dict(final.codes)}; pods started "
          f"per ReplicaSet {_pods_started(ns)}; the Deployments scaled "
          f"{_scaling_history(ns)}")
    # Not one request fails. (Before the clients retried a request the server cancelled
    # unanswered, load.SERVICE_CONFIG, 2 of 7 runs had one CANCELLED as the deleted
    # candidate's server stopped at the end of its drain.)
    assert failed == 0, during.summary()
    assert {v for _, _, v in during.rows} == {"v1", "v2"}, during.summary()
    assert final.codes == Counter(OK=final.codes["OK"]), final.summary()
    assert {(track, version) for _, track, version in final.rows} == {("stable", "v2")}


def _same_clocks(clocks: dict[str, str], s: dict[str, Any]) -> None:
    """The rollout's start and each step's start, once persisted, never change."""
    rollout, canary = s.get("rollout") or {}, s.get("canary") or {}
    seen = {"rollout": rollout.get("startedAt")}
    if canary.get("stepStartedAt"):
        seen[f"step {canary.get('step')}"] = canary["stepStartedAt"]
    for key, value in seen.items():
        if value:
            assert clocks.setdefault(key, value) == value, (key, clocks[key], value)


def _one_event_per_transition(ns: str) -> None:
    """Each transition announced once although the operator died at every one of them."""
    events = json.loads(kubectl("get", "events", "-n", ns, "-o", "json",
                                "--field-selector", f"involvedObject.name={NAME}"))["items"]
    # Rollout transitions, not the Promoted condition's own change events (which can carry
    # the same reason, e.g. RolloutSucceeded, with "Promoted is True: ...").
    rollout_events = [e for e in events if not e["message"].startswith(
        ("Promoted is", "RolledBack is"))]
    count = {r: sum(e.get("count", 1) for e in rollout_events if e["reason"] == r)
             for r in set(TRANSITIONS)}
    assert count == dict(Counter(TRANSITIONS)), count
    steps = [e["message"] for e in rollout_events if e["reason"] == "CanaryStep"]
    assert sorted(m.split(":")[0] for m in steps) == [
        "canary step 1/2 at 33%", "canary step 2/2 at 50%"], steps


def _pods_started(ns: str) -> dict[str, int]:
    """How many pods the scheduler placed, per ReplicaSet (from its Scheduled Events)."""
    events = json.loads(kubectl("get", "events", "-n", ns, "-o", "json", "--field-selector",
                                "reason=Scheduled"))["items"]
    pods = {e["involvedObject"]["name"] for e in events}
    return dict(Counter(pod.rsplit("-", 1)[0] for pod in pods))


def _scaling_history(ns: str) -> list[str]:
    """The Deployment controller's scaling, in order (an Event repeated counts xN)."""
    events = json.loads(kubectl("get", "events", "-n", ns, "-o", "json", "--field-selector",
                                "reason=ScalingReplicaSet"))["items"]
    return [f"{e['lastTimestamp'][11:19]} {e['message'].removeprefix('Scaled ')}"
            + (f" x{e['count']}" if e.get("count", 1) > 1 else "")
            for e in sorted(events, key=lambda e: e["lastTimestamp"])]
