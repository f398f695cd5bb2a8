"""Status and transitions are decided from observations alone; the clock is injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scorefleet.operator.status_decision import (
    DeploymentState,
    Observed,
    decide_status,
)
from tests.operator.conftest import make_pipeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def dep(ready: int, desired: int = 2, generation: int = 1, observed: int = 1,
        stuck: bool = False) -> DeploymentState:
    return DeploymentState(generation=generation, observed_generation=observed, desired=desired,
                           updated=ready, ready=ready, available=ready, deadline_exceeded=stuck)


def test_new_pipeline_is_pending_until_scorers_are_ready() -> None:
    status, events = decide_status(make_pipeline(), Observed(stable=None), 2, T0)
    assert status.phase == "Pending"
    conds = {c.type: c for c in status.conditions}
    assert conds["Ready"].status == "False"
    assert conds["Ready"].reason == "ScorersNotReady"
    assert conds["Progressing"].status == "True"
    assert conds["Degraded"].status == "False"
    assert status.stable is not None and status.stable.version == "v1"
    assert {e.reason for e in events} == {"ScorersNotReady", "ScorersUpdating", "PhasePending"}


def test_ready_when_all_replicas_available() -> None:
    first, _ = decide_status(make_pipeline(), Observed(stable=dep(0)), 2, T0)
    p = make_pipeline(status=first.wire())
    status, events = decide_status(p, Observed(stable=dep(2)), 2, T0 + timedelta(seconds=9))
    assert status.phase == "Ready"
    assert status.ready_replicas == 2
    assert status.replicas.stable is not None and status.replicas.stable.ready == 2
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.status == "True" and ready.message == "2/2 stable scorers available"
    assert ready.last_transition_time == "2026-01-01T00:00:09Z"
    assert [e.reason for e in events] == ["ScorersReady", "RolledOut", "PhaseReady"]
    assert all(e.type == "Normal" for e in events)


def test_unchanged_observation_announces_nothing_and_keeps_times() -> None:
    ready, _ = decide_status(make_pipeline(), Observed(stable=dep(2)), 2, T0)
    again, events = decide_status(make_pipeline(status=ready.wire()), Observed(stable=dep(2)), 2,
                                  T0 + timedelta(hours=1))
    assert events == []
    assert again == ready


def test_spec_change_makes_a_ready_pipeline_progress() -> None:
    ready, _ = decide_status(make_pipeline(), Observed(stable=dep(2)), 2, T0)
    p = make_pipeline(status=ready.wire(), generation=2)
    status, events = decide_status(p, Observed(stable=dep(2, generation=2, observed=1)), 2, T0)
    assert status.phase == "Progressing"
    assert status.observed_generation == 2
    warning = next(e for e in events if e.reason == "ScorersNotReady")
    assert warning.type == "Warning"


def test_apply_error_degrades_with_the_api_message() -> None:
    status, events = decide_status(
        make_pipeline(), Observed(stable=None, apply_error="Deployment x: forbidden"), 2, T0)
    assert status.phase == "Degraded"
    assert status.message == "Deployment x: forbidden"
    assert any(e.type == "Warning" and e.reason == "ApplyFailed" for e in events)


def test_stuck_rollout_degrades() -> None:
    status, _ = decide_status(make_pipeline(), Observed(stable=dep(1, stuck=True)), 2, T0)
    assert status.phase == "Degraded"
    assert next(c for c in status.conditions if c.type == "Degraded").reason == (
        "ProgressDeadlineExceeded")


def test_metrics_are_replaced_when_measured_and_kept_otherwise() -> None:
    from scorefleet.api.status import TrackMetrics

    measured = TrackMetrics(qps=950.0, p99_latency_ms=7.5, error_rate=0.0)
    first, _ = decide_status(make_pipeline(), Observed(stable=dep(2), stable_metrics=measured),
                             2, T0)
    assert first.metrics is not None and first.metrics.stable == measured
    assert first.metrics.measured_at == "2026-01-01T00:00:00Z"
    # An event-driven reconcile measures nothing: the last measurement stays, no rewrite.
    later, events = decide_status(make_pipeline(status=first.wire()), Observed(stable=dep(2)),
                                  2, T0 + timedelta(minutes=5))
    assert later == first and events == []
