"""The rollout CLI against the real control plane: actions land as annotations on the pipeline,
`get` renders what is in status, and kubectl finds it as the `scorefleet` plugin.

The status here is produced by the pure rollout decisions (a canary at step 2 with a failed
interval) and written through the status subresource, so the CRD's status schema is checked
too; the operator itself is not running in these tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scorefleet.api.spec import PipelineSpec
from scorefleet.api.status import PipelineStatus
from scorefleet.operator.decide.analysis import CanaryWindow, TrackWindow
from scorefleet.operator.decide.revision import desired_revision
from scorefleet.operator.decide.rollout import (
    ACTION_ANNOTATION,
    RolloutInputs,
    RolloutState,
    analysis_window,
    decide_rollout,
)
from scorefleet.operator.kube import Kube
from scorefleet.rollout_cli import main

pytestmark = pytest.mark.cluster

V1 = {"name": "phishing", "version": "v1", "uri": "file:///m/v1.onnx", "threshold": 0.5}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def canary_status(spec: PipelineSpec) -> dict[str, Any]:
    """Status of a canary that reached step 2 and then measured one slow interval."""
    stable = desired_revision(PipelineSpec.model_validate({"model": V1}), "img")
    desired = desired_revision(spec, "img")
    state = None
    t = T0
    for k in range(40):
        t = T0 + timedelta(seconds=30 * k)
        slow = state is not None and state.canary is not None and state.canary.step == 1
        window = None
        if analysis_window(state, spec, t) is not None:
            window = CanaryWindow(stable=TrackWindow(5000, 0, 10.0),
                                  candidate=TrackWindow(1500, 0, 15.0 if slow else 10.0))
        d = decide_rollout(RolloutInputs(spec=spec, desired=desired, stable=stable,
                                         state=state, now=t, measurement=window, ready=True))
        state = d.state
        if state is not None and state.analysis.failures:
            break
    assert state is not None and state.analysis.failures == 1
    m = stable.model
    status = PipelineStatus.model_validate({
        "phase": "Progressing",
        "stable": {"name": m.name, "version": m.version, "uri": m.uri, "threshold": 0.5},
        "candidate": {"name": "phishing", "version": "v2", "uri": "file:///m/v2.onnx",
                      "threshold": 0.5},
        "replicas": {"stable": {"desired": 4, "ready": 4},
                     "candidate": {"desired": 1, "ready": 1}},
    }).model_copy(update=RolloutState.status_fields(state))
    return status.wire()


@pytest.fixture
def canary(kube: Kube, namespace: str) -> tuple[str, str]:
    body = {"apiVersion": "scorefleet.io/v1alpha1", "kind": "ScoringPipeline",
            "metadata": {"name": "phish"},
            "spec": {"model": {**V1, "version": "v2", "uri": "file:///m/v2.onnx"}}}
    created = kube._call("POST", f"/apis/scorefleet.io/v1alpha1/namespaces/{namespace}/"
                                 "scoringpipelines", body=body)
    assert created is not None
    spec = PipelineSpec.model_validate(created["spec"])
    kube.patch_pipeline_status(namespace, "phish", canary_status(spec))
    return namespace, "phish"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "220")  # rich wraps tables to the terminal width


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_get_renders_the_status_the_api_server_stored(
        canary: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    ns, name = canary
    code, out = cli(capsys, "-n", ns, "get", name)
    assert code == 0, out
    assert "step 2/3 at 25%" in out
    assert "p99LatencyRatio" in out and "1.5" in out and "1.2" in out and "Failed" in out
    assert "1/2 failed" in out
    code, out = cli(capsys, "-n", ns, "get")
    assert code == 0 and "phish" in out and "Canary" in out


@pytest.mark.parametrize(("args", "verb"), [
    (["promote"], "promote"), (["promote", "--full"], "promote-full"), (["pause"], "pause"),
    (["abort"], "abort")])
def test_actions_are_written_as_the_annotation(
        kube: Kube, canary: tuple[str, str], capsys: pytest.CaptureFixture[str],
        args: list[str], verb: str) -> None:
    ns, name = canary
    code, out = cli(capsys, "-n", ns, args[0], name, *args[1:])
    assert code == 0, out
    body = kube.get_pipeline(ns, name)
    assert body is not None
    value = body["metadata"]["annotations"][ACTION_ANNOTATION]
    assert value.split(" ")[0] == verb
    assert datetime.strptime(value.split(" ")[1], "%Y-%m-%dT%H:%M:%S.%fZ")
    # Asking again writes a new request id, so the operator acts again.
    cli(capsys, "-n", ns, args[0], name, *args[1:])
    again = kube.get_pipeline(ns, name)
    assert again is not None and again["metadata"]["annotations"][ACTION_ANNOTATION] != value


def test_actions_that_do_not_apply_are_refused_with_the_reason(
        kube: Kube, canary: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    ns, name = canary
    code, out = cli(capsys, "-n", ns, "retry", name)
    assert code == 1
    assert "retry does not apply" in out and "the rollout is Canary" in out
    code, out = cli(capsys, "-n", ns, "resume", name)
    assert code == 1 and "is not paused" in out
    body = kube.get_pipeline(ns, name)
    assert body is not None and ACTION_ANNOTATION not in (body["metadata"].get("annotations")
                                                          or {})
    code, out = cli(capsys, "-n", ns, "retry", name, "--force")
    assert code == 0


def test_missing_pipeline(canary: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = cli(capsys, "-n", canary[0], "get", "nope")
    assert code == 1 and f"scoringpipeline {canary[0]}/nope not found" in out


def test_kubectl_finds_the_plugin(control_plane: Any, canary: tuple[str, str]) -> None:
    ns, name = canary
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "kubectl-scorefleet").exists(), "pip install -e . makes the plugin"
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
           "COLUMNS": "200"}
    proc = subprocess.run(["kubectl", "scorefleet", "-n", ns, "get", name], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "p99LatencyRatio" in proc.stdout
    proc = subprocess.run(["kubectl", "scorefleet", "--help"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert "Usage: kubectl scorefleet" in proc.stdout


def test_watch_refreshes_from_status(canary: tuple[str, str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ns, name = canary
    code, out = cli(capsys, "-n", ns, "watch", name, "--count", "2", "--interval", "0.1")
    assert code == 0, out
    assert "step 2/3 at 25%" in out and "p99LatencyRatio" in out
