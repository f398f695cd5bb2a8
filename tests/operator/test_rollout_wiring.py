"""The rollout as the reconcile sees it, pure: observations -> decision -> tracks and route ->
status (fields, Promoted/RolledBack conditions, phase), round-tripped through the status JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import ModelRef, model_revision
from scorefleet.operator.decide.observed import DeploymentState, Observed, TrackObservation
from scorefleet.operator.decide.revision import desired_revision
from scorefleet.operator.decide.rollout import ACTION_ANNOTATION
from scorefleet.operator.decide.rollout_plan import RolloutOutcome, decide_pipeline_rollout
from scorefleet.operator.decide.status import StatusInputs, decide_status
from scorefleet.operator.decide.tracks import TrackDecision
from tests.operator.conftest import make_pipeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IMAGE = "scorer:1"
V1 = {"name": "phishing", "version": "v1", "uri": "file:///models/v1.onnx", "threshold": 0.8}
V2 = {**V1, "version": "v2", "uri": "file:///models/v2.onnx"}


def dep(model: dict[str, Any], replicas: int, ready: bool = True) -> DeploymentState:
    n = replicas if ready else 0
    return DeploymentState(generation=1, observed_generation=1, desired=replicas, updated=n,
                           ready=n, available=n, deadline_exceeded=False, total=n,
                           model_revision=model_revision(ModelRef.model_validate(model)))


def observed(**tracks: DeploymentState | None) -> Observed:
    return Observed(tracks={t: TrackObservation(deployment=d) for t, d in tracks.items()})


class Pipeline:
    """A pipeline whose status is what the previous reconcile wrote (through JSON)."""

    def __init__(self, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.annotations = annotations or {}
        self.status: dict[str, Any] = {}

    def body(self) -> ScoringPipeline:
        p = make_pipeline(self.spec, self.status)
        meta = p.metadata.model_copy(update={"annotations": self.annotations})
        return p.model_copy(update={"metadata": meta})

    def reconcile(self, seen: Observed, now: datetime) -> tuple[RolloutOutcome, Any, list[Any]]:
        p = self.body()
        outcome = decide_pipeline_rollout(p, seen, IMAGE, None, now)
        assert outcome is not None
        tracks = TrackDecision(tracks=outcome.tracks, stable_established=True)
        status, transitions = decide_status(StatusInputs(p, tracks, seen, now, outcome))
        self.status = status.wire()
        return outcome, status, [*outcome.transitions, *transitions]


def established(spec: dict[str, Any] | None = None) -> Pipeline:
    """v1 served by the stable track; the spec then asks for v2."""
    p = Pipeline({"model": V1, **(spec or {})})
    first = p.body()
    from scorefleet.operator.decide.tracks import plan_tracks

    tracks = plan_tracks(first)
    revision = desired_revision(first.spec, IMAGE)
    status, _ = decide_status(StatusInputs(first, tracks, observed(stable=dep(V1, 2)), T0,
                                           revision=revision))
    assert status.stable_revision == revision.record()
    assert status.stable is not None and status.phase == "Ready"
    p.status = status.wire()
    p.spec = {**p.spec, "model": V2}
    return p


def conditions(status: Any) -> dict[str, Any]:
    return {c.type: c for c in status.conditions}


def test_new_model_starts_a_canary_on_a_candidate_track() -> None:
    p = established()
    outcome, status, events = p.reconcile(observed(stable=dep(V1, 2)), T0)
    plans = {t.track: t for t in outcome.tracks}
    assert plans["stable"].model.version == "v1" and plans["stable"].replicas == 2
    assert plans["candidate"].model.version == "v2" and plans["candidate"].replicas == 1
    assert "33.3%" in outcome.route.note  # 5% asked; one pod beside two is a third
    assert status.rollout is not None and status.rollout.phase == "Canary"
    assert status.candidate is not None and status.candidate.version == "v2"
    assert status.stable is not None and status.stable.version == "v1"
    assert status.phase == "Progressing"
    c = conditions(status)
    assert (c["Promoted"].status, c["Promoted"].reason) == ("False", "CanaryInProgress")
    assert (c["RolledBack"].status, c["RolledBack"].reason) == ("False", "NotRolledBack")
    assert "RolloutStarted" in [e.reason for e in events]


def test_step_starts_once_the_candidate_serves_and_abort_rolls_back() -> None:
    p = established()
    p.reconcile(observed(stable=dep(V1, 2)), T0)
    _, status, _ = p.reconcile(observed(stable=dep(V1, 2), candidate=dep(V2, 1)),
                               T0 + timedelta(seconds=30))
    assert status.canary is not None and status.canary.step_started_at is not None
    assert status.replicas.candidate is not None and status.replicas.candidate.ready == 1
    assert status.ready_replicas == 3
    p.annotations = {ACTION_ANNOTATION: "abort 1"}
    outcome, status, events = p.reconcile(observed(stable=dep(V1, 2), candidate=dep(V2, 1)),
                                          T0 + timedelta(seconds=60))
    plans = {t.track: t for t in outcome.tracks}
    assert plans["candidate"].replicas == 0 and plans["stable"].replicas == 2
    assert status.phase == "Failed"
    c = conditions(status)
    assert (c["RolledBack"].status, c["RolledBack"].reason) == ("True", "RolloutAborted")
    assert c["Promoted"].status == "False"
    assert {"RolloutAborted"} <= {e.reason for e in events}


def test_promotion_waits_for_the_stable_track_at_full_capacity_then_removes_the_candidate(
        ) -> None:
    p = established()
    p.reconcile(observed(stable=dep(V1, 2)), T0)
    p.annotations = {ACTION_ANNOTATION: "promote-full 1"}
    outcome, status, _ = p.reconcile(observed(stable=dep(V1, 2), candidate=dep(V2, 1)),
                                     T0 + timedelta(seconds=30))
    assert status.rollout is not None and status.rollout.phase == "Promoting"
    plans = {t.track: t for t in outcome.tracks}
    assert plans["stable"].model.version == "v2" and plans["stable"].replicas == 2
    assert plans["candidate"].replicas == 1  # still taking its share until the switch
    # The stable Deployment is still rolling to v2: not promoted yet.
    outcome, status, _ = p.reconcile(observed(stable=dep(V2, 2, ready=False),
                                              candidate=dep(V2, 1)), T0 + timedelta(seconds=60))
    assert status.rollout is not None and status.rollout.phase == "Promoting"
    outcome, status, events = p.reconcile(observed(stable=dep(V2, 2), candidate=dep(V2, 1)),
                                          T0 + timedelta(seconds=90))
    assert status.rollout is not None and status.rollout.phase == "Succeeded"
    assert [t.track for t in outcome.tracks] == ["stable"]
    assert status.stable is not None and status.stable.version == "v2"
    assert status.stable_revision is not None
    assert status.candidate is None and status.phase == "Ready"
    c = conditions(status)
    assert (c["Promoted"].status, c["Promoted"].reason) == ("True", "RolloutSucceeded")
    # And it stays so: the next reconcile is quiet.
    _, again, events = p.reconcile(observed(stable=dep(V2, 2)), T0 + timedelta(seconds=120))
    assert again.rollout is not None and again.rollout.phase == "Succeeded"
    assert not [e for e in events if e.reason.startswith("Rollout")]


def test_a_new_image_runs_only_on_the_candidate() -> None:
    p = established()
    p.spec = {**p.spec, "model": V1, "scorer": {"image": "scorer:2"}}
    outcome, status, _ = p.reconcile(observed(stable=dep(V1, 2)), T0)
    plans = {t.track: t for t in outcome.tracks}
    assert plans["stable"].image == IMAGE and plans["candidate"].image == "scorer:2"
    assert status.rollout is not None and status.rollout.phase == "Canary"


def test_shadow_runs_inside_the_stable_pods() -> None:
    p = established({"rollout": {"strategy": "Shadow"}})
    outcome, status, _ = p.reconcile(observed(stable=dep(V1, 2)), T0)
    assert [t.track for t in outcome.tracks] == ["stable"]
    stable = outcome.tracks[0]
    assert stable.model.version == "v1" and stable.shadow is not None
    assert stable.shadow.version == "v2"
    assert status.rollout is not None and status.rollout.phase == "Shadow"


def test_grpcroute_mirrors_to_the_candidate_only_while_it_serves() -> None:
    router = {"type": "GRPCRoute", "grpcRoute": {"parentRefs": [{"name": "edge"}],
                                                 "mirrorPercent": 20}}
    p = established({"rollout": {"router": router}})

    def mirror(outcome: RolloutOutcome) -> list[int]:
        route = next(m for m in outcome.route.manifests if m["kind"] == "GRPCRoute")
        return [f["requestMirror"]["percent"] for f in route["spec"]["rules"][0].get(
            "filters", [])]

    outcome, _, _ = p.reconcile(observed(stable=dep(V1, 2)), T0)
    assert mirror(outcome) == [20]
    # 5% weighted plus 20% copied: the candidate is sized for a quarter of the load.
    assert outcome.route.candidate_replicas == 1 and "20% mirrored" in outcome.route.note
    p.annotations = {ACTION_ANNOTATION: "abort 1"}
    outcome, status, _ = p.reconcile(observed(stable=dep(V1, 2), candidate=dep(V2, 1)),
                                     T0 + timedelta(seconds=30))
    assert status.rollout is not None and status.rollout.phase == "Aborted"
    assert mirror(outcome) == [] and outcome.route.candidate_replicas == 0


def test_a_rollout_ended_in_shadow_leaves_no_candidate_track() -> None:
    p = established({"rollout": {"strategy": "ShadowThenCanary"}})
    p.reconcile(observed(stable=dep(V1, 2)), T0)
    p.annotations = {ACTION_ANNOTATION: "abort 1"}
    outcome, status, _ = p.reconcile(observed(stable=dep(V1, 2)), T0 + timedelta(seconds=30))
    assert status.rollout is not None and status.rollout.phase == "Aborted"
    assert [t.track for t in outcome.tracks] == ["stable"]
    assert outcome.tracks[0].shadow is None  # and the stable pods stop shadowing


def promoting() -> Pipeline:
    """A rollout in Promoting: the stable Deployment was told to run v2, the candidate still
    takes its share."""
    p = established()
    p.reconcile(observed(stable=dep(V1, 2)), T0)
    p.annotations = {ACTION_ANNOTATION: "promote-full 1"}
    _, status, _ = p.reconcile(observed(stable=dep(V1, 2), candidate=dep(V2, 1)),
                               T0 + timedelta(seconds=30))
    assert status.rollout is not None and status.rollout.phase == "Promoting"
    return p


def test_killed_after_the_promotion_acted_but_before_its_status_write_completes_once() -> None:
    """The pass that promoted deleted the candidate and was killed before writing its status:
    the restarted operator sees Promoting in status, no candidate, and the stable track
    already serving v2 at full replicas. It completes the promotion on that pass, without
    recreating the candidate, and announces it once."""
    p = promoting()
    persisted = p.status
    outcome, status, _ = p.reconcile(observed(stable=dep(V2, 2), candidate=dep(V2, 1)),
                                     T0 + timedelta(seconds=60))
    assert status.rollout is not None and status.rollout.phase == "Succeeded"
    assert [t.track for t in outcome.tracks] == ["stable"]
    p.status = persisted  # killed: the children were acted on, the status never written
    after_kill = observed(stable=dep(V2, 2))
    outcome, status, events = p.reconcile(after_kill, T0 + timedelta(seconds=90))
    assert [t.track for t in outcome.tracks] == ["stable"], "candidate recreated"
    assert outcome.tracks[0].model.version == "v2"
    assert status.rollout is not None and status.rollout.phase == "Succeeded"
    assert status.stable is not None and status.stable.version == "v2"
    assert status.candidate is None and status.phase == "Ready"
    assert [e.reason for e in outcome.transitions] == ["RolloutSucceeded"]
    for later in (120, 150):  # and nothing more happens
        outcome, status, events = p.reconcile(after_kill, T0 + timedelta(seconds=later))
        assert [t.track for t in outcome.tracks] == ["stable"]
        assert status.rollout is not None and status.rollout.phase == "Succeeded"
        assert not outcome.transitions and not events


def test_stable_model_changes_only_when_the_promotion_completes() -> None:
    """While Promoting, the stable track can serve v2 before the promotion is decided: here it
    is scaling up for the full load, 2 of 3 pods available (enough for Ready, not for the
    switch). status.stable stays v1 until the rollout succeeds. It used to record v2 at once,
    so the next pass read the stable revision as the rollout's own, saw no rollout to run and
    left it in Promoting for good (the candidate kept its share)."""
    p = promoting()
    scaling_up = DeploymentState(generation=2, observed_generation=2, desired=3, updated=3,
                                 ready=2, available=2, deadline_exceeded=False, total=3,
                                 model_revision=dep(V2, 3).model_revision)
    _, status, _ = p.reconcile(observed(stable=scaling_up, candidate=dep(V2, 1)),
                               T0 + timedelta(seconds=60))
    assert status.rollout is not None and status.rollout.phase == "Promoting"
    assert status.stable is not None and status.stable.version == "v1"
    outcome, status, events = p.reconcile(observed(stable=dep(V2, 2), candidate=dep(V2, 1)),
                                          T0 + timedelta(seconds=90))
    assert status.rollout is not None and status.rollout.phase == "Succeeded"
    assert status.stable is not None and status.stable.version == "v2"
    assert [t.track for t in outcome.tracks] == ["stable"]
    assert "RolloutSucceeded" in [e.reason for e in events]


def test_a_promotion_already_recorded_as_stable_still_finishes() -> None:
    """Status written by an operator before that fix: Promoting, with v2 already recorded as
    the stable model. The promotion finishes instead of reading as "no rollout"."""
    p = promoting()
    p.status = {**p.status, "stable": {**V2}}
    outcome, status, _ = p.reconcile(observed(stable=dep(V2, 2), candidate=dep(V2, 1)),
                                     T0 + timedelta(seconds=60))
    assert status.rollout is not None and status.rollout.phase == "Succeeded"
    assert [t.track for t in outcome.tracks] == ["stable"]
    assert [e.reason for e in outcome.transitions] == ["RolloutSucceeded"]
