"""The operator SIGKILLed and restarted at every rollout phase resumes exactly where it was:
each step entered once, in order, the rollout's identity and clocks unchanged by the restart.
(The pure property test kills it between any two reconciles; this is the same on the real
control plane, with kwok pods.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest

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


class Operator:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "SCOREFLEET_RESYNC_SECONDS": "1"}
        env.pop("SCOREFLEET_PROMETHEUS_URL", None)
        with self.log.open("a") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "scorefleet.operator",
                                          "--verbose"], stdout=out, stderr=subprocess.STDOUT,
                                         env=env)
        size = self.log.stat().st_size

        def watching() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            with self.log.open() as f:
                f.seek(size)
                return "watch-stream for scoringpipelines" in f.read()

        eventually("operator watching", watching, timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no cleanup, mid-whatever it was doing
        self.proc.wait(timeout=10)


def status(namespace: str) -> dict[str, Any]:
    sp = json.loads(kubectl("get", "sp", "phish", "-n", namespace, "-o", "json"))
    return dict(sp.get("status") or {})


def started(namespace: str, step: int) -> dict[str, Any] | None:
    s = status(namespace)
    canary = s.get("canary") or {}
    return s if canary.get("step") == step and canary.get("stepStartedAt") else None


def judged_after(namespace: str, last: str | None) -> bool:
    return bool(status(namespace)["analysis"].get("lastRunAt") != last)


def test_killed_and_restarted_at_every_phase(control_plane: Any, namespace: str,
                                             tmp_path: Path) -> None:
    op = Operator(tmp_path / "operator.log")
    op.start()
    try:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=PIPELINE)
        eventually("Ready", lambda: status(namespace).get("phase") == "Ready", timeout=120)
        kubectl("patch", "sp", "phish", "-n", namespace, "--type=merge", "-p", json.dumps(
            {"spec": {"model": {"version": "v2", "uri": "file:///models/phishing-v2.onnx"}}}))
        seen: list[tuple[str, int, str | None]] = []
        for step in (0, 1):
            s = eventually(f"step {step} started", partial(started, namespace, step),
                           timeout=60)
            before = (s["rollout"]["startedAt"], s["canary"]["step"],
                      s["canary"]["stepStartedAt"])
            op.kill()
            op.start()
            # A few resyncs later: same rollout, same step, same step clock.
            eventually("resynced", partial(judged_after, namespace,
                                           s["analysis"].get("lastRunAt")), timeout=30)
            after = status(namespace)
            assert (after["rollout"]["startedAt"], after["canary"]["step"],
                    after["canary"]["stepStartedAt"]) == before
            assert after["rollout"]["attempt"] == 1
            seen.append((after["rollout"]["phase"], after["canary"]["step"],
                         after["canary"]["stepStartedAt"]))
            assert cli(["-n", namespace, "promote", "phish"]) == 0
        eventually("promoting", lambda: status(namespace)["rollout"]["phase"] in (
            "Promoting", "Succeeded"), timeout=60, interval=0.1)
        op.kill()
        op.start()
        eventually("succeeded", lambda: status(namespace)["rollout"]["phase"] == "Succeeded",
                   timeout=90)
        assert status(namespace)["stable"]["version"] == "v2"
        assert [step for _, step, _ in seen] == [0, 1]
        events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json",
                                    "--field-selector", "involvedObject.name=phish"))["items"]
        # Rollout transitions, not the Promoted condition's own change events (which can
        # carry the same reason, e.g. RolloutSucceeded, with "Promoted is True: ...").
        rollout_events = [e for e in events if not e["message"].startswith(
            ("Promoted is", "RolledBack is"))]
        count = {r: sum(e.get("count", 1) for e in rollout_events if e["reason"] == r)
                 for r in ("RolloutStarted", "CanaryStep", "CanaryStepPassed", "Promoting",
                           "RolloutSucceeded")}
        # Each transition happened once although the operator died three times.
        assert count == {"RolloutStarted": 1, "CanaryStep": 2, "CanaryStepPassed": 1,
                         "Promoting": 1, "RolloutSucceeded": 1}, count
    finally:
        if op.proc is not None and op.proc.poll() is None:
            op.kill()
