"""The operator killed and restarted at every rollout phase resumes exactly where it was: each
transition happens once, in order, no step skipped or repeated, the rollout's clocks unchanged
by the restarts. (The pure property test kills it between any two reconciles; this is the same
on the real control plane, with kwok pods.)

A SIGKILL sent from outside lands between two passes almost always: a pass takes milliseconds.
So the operator kills itself inside the pass that makes each transition
(scorefleet/operator/crash_points.py), at each point where a crash can leave the world half
done: the children acted on but the status not written (`before-status`; a promotion has then
deleted the candidate while the status still says Promoting), and the status written but its
Events not created (`after-status`; the outbox in status has them created by the next pass).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scorefleet.operator.crash_points import ENV as CRASH_AT
from scorefleet.rollout_cli import main as cli
from tests.conftest import eventually, kubectl

pytestmark = pytest.mark.cluster

PIPELINE = """
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata: {name: phish}
spec:
  model: {name: phishing, version: v1, uri: "file:///models/phishing-v1.onnx"}
  scaling: {minReplicas: 2, maxReplicas: 4}
  rollout:
    canary: {steps: [{weight: 10, manualGate: true}, {weight: 50, manualGate: true}]}
    analysis: {interval: 2s, inconclusiveLimit: 100}
"""
# Where a crash can leave a pass half done, in pass order.
POINTS = ("before-status", "after-status")


class Operator:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, crash_at: str | None = None) -> None:
        env = {**os.environ, "SCOREFLEET_RESYNC_SECONDS": "1"}
        env.pop("SCOREFLEET_PROMETHEUS_URL", None)
        env.pop(CRASH_AT, None)
        if crash_at:
            env[CRASH_AT] = crash_at
        with self.log.open("a") as out:
            out.write(f"--- operator started, {CRASH_AT}={crash_at}\n")
        with self.log.open("a") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "scorefleet.operator",
                                          "--verbose"], stdout=out, stderr=subprocess.STDOUT,
                                         env=env)

    def crashed(self, timeout: float) -> None:
        """Wait for the crash point to kill the operator."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"crash point not reached within {timeout}s; operator log "
                                 f"tail:\n{self.log.read_text()[-6000:]}") from None
        assert code == -9, f"operator exited {code}, not by its crash point"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no cleanup, mid-whatever it was doing
        self.proc.wait(timeout=10)


def status(namespace: str) -> dict[str, Any]:
    sp = json.loads(kubectl("get", "sp", "phish", "-n", namespace, "-o", "json"))
    return dict(sp.get("status") or {})


def stage(s: dict[str, Any]) -> int:
    """How many of the rollout's transitions (in the test's order) status records as done."""
    rollout, canary = s.get("rollout") or {}, s.get("canary") or {}
    phase = rollout.get("phase")
    if phase is None:
        return 0
    if phase == "Canary":
        return 1 + 2 * int(canary.get("step", 0)) + (1 if canary.get("stepStartedAt") else 0)
    return {"Promoting": 5, "Succeeded": 6}[str(phase)]


def deployment(namespace: str, track: str) -> dict[str, Any] | None:
    out = kubectl("get", "deploy", f"phish-{track}", "-n", namespace, "-o", "json",
                  check=False)
    return json.loads(out) if out.lstrip().startswith("{") else None


def test_killed_and_restarted_at_every_phase(control_plane: Any, namespace: str,
                                             tmp_path: Path) -> None:
    op = Operator(tmp_path / "operator.log")
    op.start()
    try:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=PIPELINE)
        eventually("Ready", lambda: status(namespace).get("phase") == "Ready", timeout=120)
        op.kill()

        def new_model() -> None:
            kubectl("patch", "sp", "phish", "-n", namespace, "--type=merge", "-p", json.dumps(
                {"spec": {"model": {"version": "v2",
                                    "uri": "file:///models/phishing-v2.onnx"}}}))

        def promote() -> None:
            assert cli(["-n", namespace, "promote", "phish"]) == 0

        # Each transition in order, and what makes it happen once the operator runs.
        transitions: list[tuple[str, Callable[[], None] | None]] = [
            ("RolloutStarted", new_model), ("CanaryStep", None), ("CanaryStepPassed", promote),
            ("CanaryStep", None), ("Promoting", promote), ("RolloutSucceeded", None)]
        clocks: dict[str, str] = {}  # rollout start, step starts: set once, never moved
        for index, (reason, act) in enumerate(transitions):
            for point in POINTS:
                op.start(crash_at=f"{point}:{reason}")
                if act is not None and point == POINTS[0]:
                    # Once the transition before it is recorded (this operator redoes it when
                    # the last one died before recording it): an SRE acts on what status shows.
                    def ready(i: int = index) -> bool:
                        return stage(status(namespace)) == i

                    eventually(f"{reason}: ready to act", ready, timeout=60)
                    act()
                op.crashed(timeout=90)
                s = status(namespace)
                # Crashed inside the pass making this transition: before its status write
                # the one before it is the last recorded, after it this one is.
                done = index if point == "before-status" else index + 1
                assert stage(s) == done, (reason, point, s.get("rollout"), s.get("canary"))
                _same_clocks(clocks, s)
                if (reason, point) == ("RolloutSucceeded", "before-status"):
                    # The switching pass deleted the candidate and died before recording
                    # Succeeded: the stable track already runs v2, the status says Promoting.
                    # The next operator must finish without recreating the candidate (it
                    # used to recreate it and stay in Promoting for good).
                    assert deployment(namespace, "candidate") is None
                    config = kubectl("get", "configmap", "phish-stable", "-n", namespace,
                                     "-o", "jsonpath={.data.config\\.yaml}")
                    assert "version: v2" in config, "stable track not switched"
        op.start()  # no crash point: it announces what the last one recorded
        s = status(namespace)
        assert s["rollout"]["phase"] == "Succeeded", s["rollout"]
        assert s["stable"]["version"] == "v2" and s.get("candidate") is None
        assert deployment(namespace, "candidate") is None
        eventually("Ready", lambda: status(namespace).get("phase") == "Ready", timeout=30)
        eventually("outbox emptied", lambda: not status(namespace).get("pendingEvents"),
                   timeout=30)
        events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json",
                                    "--field-selector", "involvedObject.name=phish"))["items"]
        # Rollout transitions, not the Promoted condition's own change events (which can
        # carry the same reason, e.g. RolloutSucceeded, with "Promoted is True: ...").
        rollout_events = [e for e in events if not e["message"].startswith(
            ("Promoted is", "RolledBack is"))]
        count = {r: sum(e.get("count", 1) for e in rollout_events if e["reason"] == r)
                 for r in ("RolloutStarted", "CanaryStep", "CanaryStepPassed", "Promoting",
                           "RolloutSucceeded")}
        # Each transition announced once although the operator died at every one of them.
        assert count == {"RolloutStarted": 1, "CanaryStep": 2, "CanaryStepPassed": 1,
                         "Promoting": 1, "RolloutSucceeded": 1}, count
        steps = [e["message"] for e in rollout_events if e["reason"] == "CanaryStep"]
        assert sorted(m.split(":")[0] for m in steps) == [
            "canary step 1/2 at 10%", "canary step 2/2 at 50%"], steps
    finally:
        if op.proc is not None and op.proc.poll() is None:
            op.kill()


def _same_clocks(clocks: dict[str, str], s: dict[str, Any]) -> None:
    """The rollout's start and each step's start, once persisted, never change."""
    rollout, canary = s.get("rollout") or {}, s.get("canary") or {}
    seen = {"rollout": rollout.get("startedAt")}
    if canary.get("stepStartedAt"):
        seen[f"step {canary.get('step')}"] = canary["stepStartedAt"]
    for key, value in seen.items():
        if value:
            assert clocks.setdefault(key, value) == value, (key, clocks[key], value)
