"""The operator against the real control plane: apply, Ready, update, repair, delete.

The operator runs as its own process (`python -m scorefleet.operator`, exactly as the image
runs it); kwok makes the scorer pods Running/Ready, since no kubelet or container runtime
exists here. Kopf's in-thread KopfRunner was tried first: its aiohttp sockets outlive the
thread and trip pytest's warnings-as-errors at interpreter exit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from scorefleet.operator.kube import Kube
from scorefleet.operator.reconcile import reconcile
from tests.conftest import eventually, kubectl
from tests.operator_process import OperatorProcess

pytestmark = pytest.mark.cluster

PIPELINE = """
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata:
  name: phish
spec:
  model:
    name: phishing
    version: v1
    uri: file:///models/phishing-v1.onnx
    threshold: 0.8
  scorer:
    batching: {maxBatchSize: 128}
  scaling: {minReplicas: 2, maxReplicas: 6}
"""


@pytest.fixture(scope="module")
def operator(control_plane: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator process. Stopping it must be clean: exit 0, no traceback."""
    with OperatorProcess(tmp_path_factory.mktemp("operator"), {}, verbose=True) as op:
        op.wait_watching()
        yield op


def get(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    out = kubectl("get", kind, name, "-n", namespace, "-o", "json", "--ignore-not-found",
                  "--show-managed-fields")
    return json.loads(out) if out.strip() else None


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def ready(namespace: str) -> dict[str, Any] | None:
    sp = get("scoringpipeline", "phish", namespace)
    if sp and sp.get("status", {}).get("phase") == "Ready":
        return sp
    return None


def test_pipeline_lifecycle(operator: OperatorProcess, namespace: str, kube: Kube) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=PIPELINE)

    # Children appear, owned by the pipeline, and the pipeline becomes Ready once kwok has
    # made both scorer pods Ready.
    sp = eventually("pipeline Ready", lambda: ready(namespace), timeout=90)
    uid = sp["metadata"]["uid"]
    for kind, name in [("deployment", "phish-stable"), ("configmap", "phish-stable"),
                       ("service", "phish"), ("service", "phish-headless")]:
        child = get(kind, name, namespace)
        assert child is not None, f"{kind}/{name} missing"
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["uid"], ref["controller"]) == (uid, True)
        managers = {m["manager"] for m in child["metadata"]["managedFields"]
                    if m["operation"] == "Apply"}
        assert managers == {"scorefleet-operator"}
    dep = get("deployment", "phish-stable", namespace)
    assert dep is not None and dep["spec"]["replicas"] == 2
    cm = get("configmap", "phish-stable", namespace)
    assert cm is not None and "maxBatchSize: 128" in cm["data"]["config.yaml"]
    assert sp["status"]["readyReplicas"] == 2
    assert sp["status"]["observedGeneration"] == 1
    # The stable model is recorded once its pods proved it: the template names its revision
    # and the readiness probe asks the scorer for exactly that model.
    assert sp["status"]["stable"]["version"] == "v1"
    assert condition(sp, "Promoted")["reason"] == "StableIsDesired"
    assert condition(sp, "Ready")["reason"] == "ScorersReady"
    assert condition(sp, "Degraded")["status"] == "False"
    # The operator never writes spec: the generation is still the one kubectl made.
    assert sp["metadata"]["generation"] == 1

    # Transitions were posted as Events on the pipeline.
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json",
                                "--field-selector", "involvedObject.name=phish"))["items"]
    reasons = {e["reason"] for e in events}
    assert {"ChildCreated", "PhasePending", "ScorersReady", "PhaseReady"} <= reasons

    # A second reconcile of an unchanged pipeline writes nothing.
    versions = {k: get(k, n, namespace)["metadata"]["resourceVersion"]  # type: ignore[index]
                for k, n in [("deployment", "phish-stable"), ("configmap", "phish-stable"),
                             ("service", "phish")]}
    result = reconcile(kube, namespace, "phish", logging.getLogger("test"))
    assert result is not None
    assert (result.applied, result.deleted, result.status_written) == ([], [], False)
    assert result.unchanged == 4
    assert {k: get(k, n, namespace)["metadata"]["resourceVersion"]  # type: ignore[index]
            for k, n in [("deployment", "phish-stable"), ("configmap", "phish-stable"),
                         ("service", "phish")]} == versions
    # The children it has confirmed at these resourceVersions need no dry run the next time
    # (a steady resync: 1 GET and 3 LISTs, no longer 4 more dry runs)...
    again = reconcile(kube, namespace, "phish", logging.getLogger("test"))
    assert again is not None and (again.unchanged, again.dry_runs, again.applied) == (4, 0, [])
    # ...while a child written since (here by hand) is compared through the API server again.
    kubectl("label", "service", "phish", "-n", namespace, "touched=yes")
    edited = reconcile(kube, namespace, "phish", logging.getLogger("test"))
    assert edited is not None and edited.dry_runs >= 1

    # An update propagates: more replicas, a new batch size.
    kubectl("patch", "scoringpipeline", "phish", "-n", namespace, "--type=merge", "-p",
            json.dumps({"spec": {"scaling": {"minReplicas": 3},
                                 "scorer": {"batching": {"maxBatchSize": 64}}}}))
    eventually("3 replicas", lambda: (get("deployment", "phish-stable", namespace) or {})
               .get("spec", {}).get("replicas") == 3)
    eventually("new config", lambda: "maxBatchSize: 64" in (
        get("configmap", "phish-stable", namespace) or {"data": {"config.yaml": ""}}
    )["data"]["config.yaml"])
    sp = eventually("Ready at generation 2", lambda: (
        s if (s := ready(namespace)) and s["status"]["observedGeneration"] == 2
        and s["status"]["readyReplicas"] == 3 else None), timeout=90)

    # A new model is not hot-swapped into the stable track: it becomes the candidate of a
    # canary rollout on its own track (tests/cluster/test_rollout_operator.py goes further).
    template = get("deployment", "phish-stable", namespace)["spec"]["template"]  # type: ignore[index]
    kubectl("patch", "scoringpipeline", "phish", "-n", namespace, "--type=merge", "-p",
            json.dumps({"spec": {"model": {"version": "v2",
                                           "uri": "file:///models/phishing-v2.onnx"}}}))
    sp = eventually("candidate recorded", lambda: (
        s if (s := get("scoringpipeline", "phish", namespace))
        and (s.get("status", {}).get("candidate") or {}).get("version") == "v2" else None))
    assert sp["status"]["stable"]["version"] == "v1"
    assert sp["status"]["phase"] == "Progressing"
    assert condition(sp, "Promoted")["reason"] == "CanaryInProgress"
    cm = get("configmap", "phish-stable", namespace)
    assert cm is not None and "version: v1" in cm["data"]["config.yaml"]
    assert "phishing-v2" not in cm["data"]["config.yaml"]
    assert get("deployment", "phish-stable", namespace)["spec"]["template"] == template  # type: ignore[index]
    assert eventually("candidate track", lambda: get("deployment", "phish-candidate",
                                                     namespace))
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json",
                                "--field-selector", "involvedObject.name=phish"))["items"]
    assert any(e["reason"] == "RolloutStarted" and "v2" in e["message"] for e in events)
    # Back to the stable model: nothing pending any more.
    kubectl("patch", "scoringpipeline", "phish", "-n", namespace, "--type=merge", "-p",
            json.dumps({"spec": {"model": {"version": "v1",
                                           "uri": "file:///models/phishing-v1.onnx"}}}))
    sp = eventually("candidate cleared", lambda: (
        s if (s := get("scoringpipeline", "phish", namespace))
        and condition(s, "Promoted")["reason"] == "StableIsDesired" else None))
    assert "candidate" not in sp["status"] and "rollout" not in sp["status"]
    eventually("candidate track removed",
               lambda: get("deployment", "phish-candidate", namespace) is None)

    # A hand edit is reverted and a deleted child comes back.
    kubectl("scale", "deployment", "phish-stable", "-n", namespace, "--replicas=7")
    kubectl("delete", "service", "phish-headless", "-n", namespace)
    eventually("replicas repaired", lambda: (get("deployment", "phish-stable", namespace) or {})
               .get("spec", {}).get("replicas") == 3)
    eventually("headless service recreated",
               lambda: get("service", "phish-headless", namespace) is not None)

    # Deleting the pipeline cascades to every child through garbage collection.
    kubectl("delete", "scoringpipeline", "phish", "-n", namespace, "--wait=true",
            "--timeout=60s")
    eventually("children garbage-collected", lambda: not json.loads(kubectl(
        "get", "deployments,configmaps,services", "-n", namespace, "-l",
        "scorefleet.io/pipeline=phish", "-o", "json"))["items"], timeout=60)
