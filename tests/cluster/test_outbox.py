"""Events at least once and never twice when the operator dies around its status write
(scorefleet/operator/outbox.py), on the real API server: a pass dies after writing its status,
another dies halfway through creating the Events, the next creates exactly the missing ones."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pytest

from scorefleet.operator.kube import Kube, Obj
from scorefleet.operator.reconcile import reconcile
from tests.conftest import eventually, kubectl

pytestmark = pytest.mark.cluster

PIPELINE = """
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata: {name: phish}
spec:
  model: {name: phishing, version: v1, uri: "file:///models/phishing-v1.onnx"}
  scaling: {minReplicas: 1, maxReplicas: 2}
"""
LOG = logging.getLogger("test")


class Died(BaseException):
    """The operator process ends here (BaseException: no handler on the way catches it)."""


class DiesCreatingEvents(Kube):
    """Creates `events` Events, then dies at the next one."""

    def __init__(self, events: int) -> None:
        super().__init__()
        self.left = events

    def create_event(self, involved: Obj, name: str, type_: str, reason: str,
                     message: str) -> None:
        if self.left == 0:
            raise Died
        self.left -= 1
        super().create_event(involved, name, type_, reason, message)


def pipeline(namespace: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", "sp", "phish", "-n", namespace, "-o", "json")))


def events(namespace: str) -> list[dict[str, Any]]:
    return list(json.loads(kubectl("get", "events", "-n", namespace, "-o", "json",
                                   "--field-selector", "involvedObject.name=phish,"
                                   "involvedObject.kind=ScoringPipeline"))["items"])


def test_events_of_a_pass_killed_around_its_status_write_are_created_once(
        control_plane: Any, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=PIPELINE)
    # Dies right after the status write: the transitions are in status, no Event exists.
    with pytest.raises(Died):
        reconcile(DiesCreatingEvents(0), namespace, "phish", LOG)
    pending = pipeline(namespace)["status"]["pendingEvents"]
    assert {e["reason"] for e in pending} >= {"ChildCreated", "PhasePending"}
    assert events(namespace) == []
    # The next pass dies after creating two of them (its own transitions queued behind).
    with pytest.raises(Died):
        reconcile(DiesCreatingEvents(2), namespace, "phish", LOG)
    assert len(events(namespace)) == 2
    queued = pipeline(namespace)["status"]["pendingEvents"]
    assert [e["name"] for e in queued[:len(pending)]] == [e["name"] for e in pending]
    # The next one creates the rest (AlreadyExists for the two) and empties the outbox.
    kube = Kube()
    reconcile(kube, namespace, "phish", LOG)
    assert "pendingEvents" not in pipeline(namespace)["status"]
    created = events(namespace)
    assert Counter(e["metadata"]["name"] for e in created) == Counter(
        e["name"] for e in queued), "each recorded transition is exactly one Event"
    # Four children, each announced once although three passes handled the announcement.
    assert Counter(e["message"] for e in created if e["reason"] == "ChildCreated") == {
        "ConfigMap/phish-stable created": 1, "Deployment/phish-stable created": 1,
        "Service/phish created": 1, "Service/phish-headless created": 1}
    # Once Ready, a quiet pass creates nothing more.
    eventually("Ready", lambda: reconcile(kube, namespace, "phish", LOG) and pipeline(
        namespace)["status"]["phase"] == "Ready", timeout=60, interval=0.5)
    before = len(events(namespace))
    result = reconcile(kube, namespace, "phish", LOG)
    assert result is not None and not result.transitions and not result.status_written
    assert len(events(namespace)) == before
