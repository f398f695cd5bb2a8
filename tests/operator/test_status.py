"""Status and transitions are decided from observations alone; the clock is injected."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import model_revision
from scorefleet.api.status import PipelineStatus, TrackMetrics
from scorefleet.operator.decide.conditions import Transition, Verdict
from scorefleet.operator.decide.observed import DeploymentState, Observed, TrackObservation
from scorefleet.operator.decide.rollout_plan import decide_pipeline_rollout
from scorefleet.operator.decide.status import (
    SUB_DECISIONS,
    StatusInputs,
    StatusPart,
    decide_invalid_status,
    decide_status,
    merge,
)
from scorefleet.operator.decide.tracks import TrackDecision, plan_tracks
from scorefleet.operator.decide.validity import InvalidSpec
from tests.operator.conftest import make_pipeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)
V1 = {"name": "phishing", "version": "v1", "uri": "file:///models/v1.onnx", "threshold": 0.8}
V2 = {**V1, "version": "v2", "uri": "file:///models/v2.onnx"}


def dep(ready: int, desired: int = 2, generation: int = 1, observed: int = 1,
        stuck: bool = False, model: dict[str, Any] | None = None, total: int | None = None,
        ) -> DeploymentState:
    p = make_pipeline({"model": model or V1})
    return DeploymentState(generation=generation, observed_generation=observed, desired=desired,
                           updated=ready, ready=ready, available=ready, deadline_exceeded=stuck,
                           total=ready if total is None else total,
                           model_revision=model_revision(p.spec.model))


def seen(state: DeploymentState | None, metrics: TrackMetrics | None = None,
         apply_error: str | None = None) -> Observed:
    tracks = {} if state is None else {"stable": TrackObservation(state, metrics)}
    return Observed(tracks=MappingProxyType(tracks), apply_error=apply_error)


def decide(p: ScoringPipeline, observed: Observed, now: datetime = T0,
           ) -> tuple[PipelineStatus, list[Transition]]:
    return decide_status(StatusInputs(p, plan_tracks(p), observed, now))


def conditions(status: PipelineStatus) -> dict[str, Any]:
    return {c.type: c for c in status.conditions}


def test_new_pipeline_is_pending_until_scorers_are_ready() -> None:
    status, events = decide(make_pipeline(), seen(None))
    assert status.phase == "Pending"
    conds = conditions(status)
    assert conds["Ready"].status == "False"
    assert conds["Ready"].reason == "ScorersNotReady"
    assert conds["Progressing"].status == "True"
    assert conds["Degraded"].status == "False"
    assert (conds["Promoted"].status, conds["Promoted"].reason) == ("False", "FirstModelLoading")
    # Nothing is served yet, so nothing is recorded as the stable model.
    assert status.stable is None
    assert {e.reason for e in events} == {"ScorersNotReady", "ScorersUpdating", "PhasePending"}


def test_ready_when_all_replicas_serve_the_model() -> None:
    first, _ = decide(make_pipeline(), seen(dep(0)))
    p = make_pipeline(status=first.wire())
    status, events = decide(p, seen(dep(2)), T0 + timedelta(seconds=9))
    assert status.phase == "Ready"
    assert status.ready_replicas == 2
    assert status.replicas.stable is not None and status.replicas.stable.ready == 2
    ready = conditions(status)["Ready"]
    assert ready.status == "True" and ready.message == "2/2 stable scorers serve phishing v1"
    assert ready.last_transition_time == "2026-01-01T00:00:09Z"
    # The first model served becomes the stable model once its pods proved it.
    assert status.stable is not None and status.stable.version == "v1"
    assert [e.reason for e in events] == ["ScorersReady", "RolledOut", "StableIsDesired",
                                          "PhaseReady"]
    assert all(e.type == "Normal" for e in events)


def test_pods_of_another_model_revision_are_not_serving() -> None:
    """A Deployment whose template names another model (an apply that failed, or a template
    not yet updated) proves nothing about the intended model."""
    status, _ = decide(make_pipeline(), seen(dep(2, model=V2)))
    assert status.phase == "Pending"
    assert status.stable is None
    assert "not phishing v1" in conditions(status)["Ready"].message


def test_old_pods_still_around_are_not_a_rollout() -> None:
    """With maxUnavailable 0 the old pods stay available while new ones start: available
    alone would report the new model as served by the old pods."""
    state = replace(dep(2, total=4), ready=4, available=4)
    assert not state.rolled_out
    status, _ = decide(make_pipeline(), seen(state))
    assert status.phase == "Pending" and status.stable is None
    assert "2 old pods remain" in conditions(status)["Ready"].message


def test_unchanged_observation_announces_nothing_and_keeps_times() -> None:
    ready, _ = decide(make_pipeline(), seen(dep(2)))
    again, events = decide(make_pipeline(status=ready.wire()), seen(dep(2)),
                           T0 + timedelta(hours=1))
    assert events == []
    assert again == ready


def test_spec_change_makes_a_ready_pipeline_progress() -> None:
    ready, _ = decide(make_pipeline(), seen(dep(2)))
    p = make_pipeline(status=ready.wire(), generation=2)
    status, events = decide(p, seen(dep(2, generation=2, observed=1)))
    assert status.phase == "Progressing"
    assert status.observed_generation == 2
    warning = next(e for e in events if e.reason == "ScorersNotReady")
    assert warning.type == "Warning"
    assert status.stable is not None and status.stable.version == "v1"  # still what runs


def test_new_model_is_a_candidate_not_a_hot_swap() -> None:
    """The stable track keeps its model; the new one becomes a rollout's candidate
    (decide/rollout_plan.py; the rollout itself is tested in test_rollout*.py)."""
    ready, _ = decide(make_pipeline(), seen(dep(2)))
    p = make_pipeline({"model": V2}, status=ready.wire(), generation=2)
    observed = seen(dep(2, generation=2, observed=2))
    outcome = decide_pipeline_rollout(p, observed, "scorer:1", None, T0)
    assert outcome is not None
    tracks = TrackDecision(tracks=outcome.tracks, stable_established=True)
    assert tracks.stable.model.version == "v1"  # the stable track keeps its model
    status, _ = decide_status(StatusInputs(p, tracks, observed, T0, outcome))
    assert status.stable is not None and status.stable.version == "v1"
    assert status.candidate is not None and status.candidate.version == "v2"
    assert status.phase == "Progressing"
    promoted = conditions(status)["Promoted"]
    assert (promoted.status, promoted.reason) == ("False", "CanaryInProgress")
    assert "RolloutStarted" in [t.reason for t in outcome.transitions]
    # Going back to the stable model cancels the rollout and clears the candidate.
    back = make_pipeline(status=status.wire(), generation=3)
    outcome = decide_pipeline_rollout(back, observed, "scorer:1", None, T0)
    assert outcome is not None and outcome.decision.state is None
    status, _ = decide_status(StatusInputs(
        back, TrackDecision(tracks=outcome.tracks, stable_established=True), observed, T0,
        outcome))
    assert status.candidate is None
    assert conditions(status)["Promoted"].reason == "StableIsDesired"


def test_before_anything_served_the_stable_track_follows_the_spec() -> None:
    pending, _ = decide(make_pipeline(), seen(dep(0)))
    fixed = make_pipeline({"model": V2}, status=pending.wire(), generation=2)
    assert plan_tracks(fixed).stable.model.version == "v2"
    status, _ = decide(fixed, seen(dep(2, model=V2, generation=2, observed=2)))
    assert status.stable is not None and status.stable.version == "v2"


def test_apply_error_degrades_with_the_api_message() -> None:
    status, events = decide(make_pipeline(),
                            seen(None, apply_error="Deployment x: forbidden"))
    assert status.phase == "Degraded"
    assert status.message == "Deployment x: forbidden"
    assert any(e.type == "Warning" and e.reason == "ApplyFailed" for e in events)


def test_stuck_rollout_degrades() -> None:
    status, _ = decide(make_pipeline(), seen(dep(1, stuck=True)))
    assert status.phase == "Degraded"
    assert conditions(status)["Degraded"].reason == "ProgressDeadlineExceeded"


def test_metrics_are_replaced_when_measured_and_kept_otherwise() -> None:
    measured = TrackMetrics(qps=950.0, p99_latency_ms=7.5, error_rate=0.0)
    first, _ = decide(make_pipeline(), seen(dep(2), metrics=measured))
    assert first.metrics is not None and first.metrics.stable == measured
    assert first.metrics.measured_at == "2026-01-01T00:00:00Z"
    # An event-driven reconcile measures nothing: the last measurement stays, no rewrite.
    later, events = decide(make_pipeline(status=first.wire()), seen(dep(2)),
                           T0 + timedelta(minutes=5))
    assert later == first and events == []


def test_measured_rates_and_latencies_are_rounded_for_reading_error_rates_are_not() -> None:
    raw = TrackMetrics(qps=49.873333333, p99_latency_ms=0.9812876041437497,
                       error_rate=0.000123456)
    status, _ = decide(make_pipeline(), seen(dep(2), metrics=raw))
    assert status.metrics is not None
    assert status.metrics.stable == TrackMetrics(qps=49.87, p99_latency_ms=0.98,
                                                 error_rate=0.000123456)
    assert raw.qps == 49.873333333  # the measurement decisions use is left as measured
    none = TrackMetrics(qps=0.0, p99_latency_ms=None, error_rate=None)
    status, _ = decide(make_pipeline(), seen(dep(2), metrics=none))
    assert status.metrics is not None and status.metrics.stable == none


def test_invalid_spec_degrades_naming_the_field_and_keeps_the_rest() -> None:
    ready, _ = decide(make_pipeline(), seen(dep(2)))
    bad = InvalidSpec("spec.scorer.drainDelay", "Input should be less than or equal to 300")
    status, events = decide_invalid_status(ready, 2, bad, T0 + timedelta(minutes=1))
    assert status.phase == "Degraded"
    assert status.observed_generation == 2
    assert status.message.startswith("spec.scorer.drainDelay: ")
    assert conditions(status)["Degraded"].reason == "InvalidSpec"
    assert conditions(status)["Ready"] == conditions(ready)["Ready"]  # scorers still run
    assert status.stable == ready.stable
    assert [e.reason for e in events] == ["InvalidSpec", "PhaseDegraded"]
    # Reported once: the same invalid spec again changes nothing.
    again, events = decide_invalid_status(status, 2, bad, T0 + timedelta(minutes=2))
    assert again == status and events == []


def test_sub_decisions_own_disjoint_fields_and_conditions() -> None:
    inputs = StatusInputs(make_pipeline(), plan_tracks(make_pipeline()), seen(dep(2)), T0)
    fields, verdicts = merge([part(inputs) for part in SUB_DECISIONS])
    assert {"stable", "replicas", "ready_replicas", "candidate"} <= set(fields)
    assert set(fields) <= set(PipelineStatus.model_fields)
    assert [v.type for v in verdicts] == ["Ready", "Progressing", "Degraded", "Promoted"]
    with pytest.raises(ValueError, match="status field stable decided by two"):
        merge([StatusPart(fields={"stable": None}), StatusPart(fields={"stable": None})])
    with pytest.raises(ValueError, match="condition Ready decided by two"):
        merge([StatusPart(conditions=(Verdict("Ready", "True", "A"),)),
               StatusPart(conditions=(Verdict("Ready", "True", "B"),))])
