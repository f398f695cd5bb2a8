"""Rollouts end to end on the real control plane: the operator process, kwok scorer pods, and
the SRE's CLI. No Prometheus is configured here, so every analysis interval measures no data:
the rollout is Inconclusive and pauses (never promotes by itself), and the SRE's actions drive
it. kwok pods run no scorer, so readiness here proves the Deployment rolled out the template
naming the model, not that a model loaded; real-pod scenarios need the real node.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from scorefleet.rollout_cli import main as cli
from tests.conftest import eventually, kubectl
from tests.operator_process import OperatorProcess

pytestmark = pytest.mark.cluster

PIPELINE = """
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata:
  name: phish
spec:
  model: {name: phishing, version: v1, uri: "file:///models/phishing-v1.onnx"}
  scaling: {minReplicas: 2, maxReplicas: 4}
  rollout:
    canary:
      steps: [{weight: 10, pause: 10s}, {weight: 50, manualGate: true}]
    analysis: {interval: 3s, inconclusiveLimit: 2}
"""


@pytest.fixture(scope="module")
def operator(control_plane: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator process, without Prometheus (kwok pods serve nothing to measure)."""
    settings = {"SCOREFLEET_RESYNC_SECONDS": "2", "SCOREFLEET_PROMETHEUS_URL": None}
    with OperatorProcess(tmp_path_factory.mktemp("operator"), settings, verbose=True) as op:
        op.wait_watching()
        yield op


def pipeline(namespace: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(kubectl("get", "scoringpipeline", "phish", "-n",
                                              namespace, "-o", "json"))
    return body


def deployment(namespace: str, track: str) -> dict[str, Any] | None:
    out = kubectl("get", "deployment", f"phish-{track}", "-n", namespace, "-o", "json",
                  "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def rollout(namespace: str) -> dict[str, Any]:
    return dict(pipeline(namespace).get("status", {}).get("rollout") or {})


def condition(namespace: str, type_: str) -> dict[str, Any]:
    return next((c for c in pipeline(namespace)["status"].get("conditions", [])
                 if c["type"] == type_), {})


def set_model(namespace: str, version: str) -> None:
    kubectl("patch", "scoringpipeline", "phish", "-n", namespace, "--type=merge", "-p",
            json.dumps({"spec": {"model": {"version": version,
                                           "uri": f"file:///models/phishing-{version}.onnx"}}}))


def start(namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=PIPELINE)
    eventually("v1 stable and Ready", lambda: pipeline(namespace).get("status", {})
               .get("phase") == "Ready", timeout=120)


def test_canary_pauses_without_data_and_the_sre_promotes_it(
        operator: OperatorProcess, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    start(namespace)
    set_model(namespace, "v2")
    eventually("candidate track", lambda: deployment(namespace, "candidate"), timeout=60)
    candidate = deployment(namespace, "candidate")
    assert candidate is not None and candidate["spec"]["replicas"] == 1  # 10% beside 2
    stable = deployment(namespace, "stable")
    assert stable is not None and stable["spec"]["replicas"] == 2
    # No data, never a pass: two inconclusive intervals pause the rollout at step 1.
    eventually("paused, inconclusive", lambda: rollout(namespace).get("pauseReason")
               == "Inconclusive", timeout=90)
    sp = pipeline(namespace)
    assert sp["status"]["phase"] == "Paused"
    assert sp["status"]["canary"]["step"] == 0
    assert sp["status"]["stable"]["version"] == "v1"
    assert condition(namespace, "Promoted")["reason"] == "RolloutPaused"
    checks = {c["metric"]: c for c in sp["status"]["analysis"]["checks"]}
    assert checks["requestCount"]["result"] == "Inconclusive"
    assert checks["requestCount"]["threshold"] == 200

    # The SRE promotes everything at once with the CLI (an annotation the operator reads).
    assert cli(["-n", namespace, "promote", "phish", "--full"]) == 0
    eventually("promoted", lambda: condition(namespace, "Promoted").get("status") == "True",
               timeout=120)
    # kubectl wait works on the condition.
    kubectl("wait", "-n", namespace, "--for=condition=Promoted", "scoringpipeline/phish",
            "--timeout=30s")
    sp = pipeline(namespace)
    assert sp["status"]["stable"]["version"] == "v2"
    assert sp["status"]["rollout"]["phase"] == "Succeeded"
    eventually("candidate removed", lambda: deployment(namespace, "candidate") is None)
    stable = deployment(namespace, "stable")
    assert stable is not None
    assert "version: v2" in json.loads(kubectl(
        "get", "configmap", "phish-stable", "-n", namespace, "-o", "json"))["data"][
        "config.yaml"]
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json",
                                "--field-selector", "involvedObject.name=phish"))["items"]
    reasons = [e["reason"] for e in events]
    assert {"RolloutStarted", "AnalysisInconclusive", "RolloutPaused", "Promoting",
            "RolloutSucceeded"} <= set(reasons)


def test_abort_scales_the_candidate_to_zero_and_a_new_change_supersedes(
        operator: OperatorProcess, namespace: str) -> None:
    start(namespace)
    set_model(namespace, "v2")
    eventually("canary running", lambda: rollout(namespace).get("phase") == "Canary",
               timeout=60)
    eventually("candidate up", lambda: (deployment(namespace, "candidate") or {})
               .get("status", {}).get("readyReplicas") == 1, timeout=60)
    assert cli(["-n", namespace, "abort", "phish"]) == 0
    kubectl("wait", "-n", namespace, "--for=condition=RolledBack", "scoringpipeline/phish",
            "--timeout=60s")
    sp = pipeline(namespace)
    assert sp["status"]["phase"] == "Failed"
    assert sp["status"]["rollout"]["phase"] == "Aborted"
    assert sp["status"]["stable"]["version"] == "v1"
    candidate = deployment(namespace, "candidate")
    assert candidate is not None and candidate["spec"]["replicas"] == 0
    # A newer Git change is not blocked by the aborted rollout.
    set_model(namespace, "v3")
    eventually("v3 rollout", lambda: rollout(namespace).get("phase") == "Canary"
               and rollout(namespace).get("attempt") == 1
               and pipeline(namespace)["status"].get("candidate", {}).get("version") == "v3",
               timeout=60)
    assert condition(namespace, "RolledBack")["status"] == "False"
    # Going back to the stable model cancels the rollout rather than rolling anything out.
    set_model(namespace, "v1")
    eventually("cancelled", lambda: not rollout(namespace) and deployment(
        namespace, "candidate") is None, timeout=60)
    assert pipeline(namespace)["status"]["phase"] == "Ready"
