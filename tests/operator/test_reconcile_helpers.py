"""Pure helpers of the reconcile loop."""

from __future__ import annotations

from scorefleet.operator import naming as n
from scorefleet.operator.decide.observed import deployment_state
from scorefleet.operator.gather import deployments_by_track
from scorefleet.operator.reconcile import _with_removals, same_object


def test_same_object_ignores_what_is_not_ours() -> None:
    live = {"metadata": {"labels": {"a": "1"}, "resourceVersion": "9", "managedFields": [1]},
            "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    preview = {"metadata": {"labels": {"a": "1"}, "resourceVersion": "10"},
               "spec": {"replicas": 2}, "status": {}}
    assert same_object(preview, live)
    assert not same_object({**preview, "spec": {"replicas": 3}}, live)
    assert not same_object({**preview, "metadata": {"labels": {"a": "2"}}}, live)


def test_merge_patch_nulls_vanished_keys_at_depth() -> None:
    old = {"phase": "Ready", "canary": {"weight": 5}, "replicas": {"stable": {}, "candidate": {}}}
    new = {"phase": "Ready", "replicas": {"stable": {}}}
    assert _with_removals(old, new) == {"phase": "Ready", "canary": None,
                                        "replicas": {"stable": {}, "candidate": None}}


def test_deployment_state_reads_status() -> None:
    obj = {"metadata": {"generation": 4},
           "spec": {"replicas": 3, "template": {"metadata": {"annotations": {
               n.ANNOTATION_MODEL_REVISION: "abc"}}}},
           "status": {"observedGeneration": 4, "replicas": 4, "updatedReplicas": 3,
                      "readyReplicas": 2,
                      "availableReplicas": 2, "conditions": [
                          {"type": "Progressing", "status": "False",
                           "reason": "ProgressDeadlineExceeded"}]}}
    state = deployment_state(obj)
    assert state is not None
    assert (state.desired, state.ready, state.deadline_exceeded) == (3, 2, True)
    assert (state.total, state.model_revision) == (4, "abc")
    assert not state.rolled_out
    assert deployment_state(None) is None


def test_deployments_are_observed_per_track_by_label() -> None:
    def deployment(track: str) -> dict:  # type: ignore[type-arg]
        return {"metadata": {"name": f"p-{track}", "labels": {n.LABEL_TRACK: track}},
                "spec": {"replicas": 1}, "status": {}}

    children = {("Deployment", "p-stable"): deployment("stable"),
                ("Deployment", "p-candidate"): deployment("candidate"),
                ("ConfigMap", "p-stable"): {"metadata": {"labels": {n.LABEL_TRACK: "stable"}}}}
    assert set(deployments_by_track(children)) == {"stable", "candidate"}


def test_observation_after_acting_takes_the_applied_deployments() -> None:
    from types import MappingProxyType

    from scorefleet.api.status import TrackMetrics
    from scorefleet.operator.decide.observed import DeploymentState, Observed, TrackObservation

    old = DeploymentState(1, 1, 2, 2, 2, 2, False, 2, "a")
    new = DeploymentState(2, 1, 2, 0, 2, 2, False, 2, "b")
    metrics = TrackMetrics(qps=1.0)
    before = Observed(MappingProxyType({"stable": TrackObservation(old, metrics),
                                        "candidate": TrackObservation(old)}))
    after = before.with_deployments({"stable": new}, "boom")
    assert after.track("stable") == TrackObservation(new, metrics)  # metrics kept
    assert after.track("candidate").deployment is None  # deleted while acting
    assert after.apply_error == "boom"


def test_routes_are_listed_while_used_and_after_a_switch_away_until_removed() -> None:
    from scorefleet.operator.gather import lists_routes

    grpc = {"spec": {"rollout": {"router": {"type": "GRPCRoute"}}}}
    replicas = {"spec": {"rollout": {"router": {"type": "Replicas"}}}}
    pipeline_svc = {"metadata": {"labels": n.pipeline_labels("phish")}}
    track_svc = {"metadata": {"labels": n.track_labels("phish", "stable")}}
    track_cm = {"metadata": {"labels": n.track_labels("phish", "stable")}}
    assert lists_routes(grpc, {})
    assert not lists_routes({"spec": {}}, {("Service", "phish"): pipeline_svc})
    assert not lists_routes(replicas, {("Service", "phish"): pipeline_svc,
                                       ("ConfigMap", "phish-stable"): track_cm})
    # Switched from GRPCRoute: its per-track Service is still there, so is the route.
    assert lists_routes(replicas, {("Service", "phish"): pipeline_svc,
                                   ("Service", "phish-stable"): track_svc})
