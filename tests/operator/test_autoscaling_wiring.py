"""The autoscaler inside a reconcile (decide/autoscaling.py): readings judged into a sample or a
reason, the decision persisted in status and restored from it, and the replicas a reconcile
that does not measure keeps. Pure: pipelines, Deployments and readings are built by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.status import (
    AutoscalingStatus,
    CanaryStatus,
    RolloutPhase,
    RolloutStatus,
)
from scorefleet.operator.decide.autoscaling import (
    AutoscalingOutcome,
    decide_autoscaling,
    held_replicas,
    rollout_view,
    state_from_status,
)
from scorefleet.operator.decide.observed import DeploymentState
from scorefleet.operator.decide.rollout import RolloutState
from scorefleet.operator.decide.scaling_inputs import (
    MetricsSample,
    NoData,
    Partial,
    ScalingReadings,
    Stale,
    observation,
)
from scorefleet.operator.reconcile import _observed_scale, _only_replicas
from tests.operator.conftest import make_pipeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCALING = {"minReplicas": 2, "maxReplicas": 20, "targetQPSPerReplica": 100}


def dep(replicas: int, ready: int | None = None) -> DeploymentState:
    r = replicas if ready is None else ready
    return DeploymentState(generation=1, observed_generation=1, desired=replicas, updated=r,
                           ready=r, available=r, deadline_exceeded=False, total=r)


def load(qps: float, at: datetime, p99: float = 5.0, pods: int = 20) -> ScalingReadings:
    return ScalingReadings(qps=qps, qps_short=qps, p99_ms=p99 if qps else None,
                           p99_short_ms=p99 if qps else None, in_flight=1.0, queue_depth=0.0,
                           error_rate=0.0, pods=pods, scraped_at=at.timestamp() - 2)


def pipeline(status: dict[str, Any] | None = None, **scaling: Any) -> ScoringPipeline:
    return make_pipeline({"scaling": {**SCALING, **scaling}}, status=status)


def persisted(p: ScoringPipeline, outcome: AutoscalingOutcome) -> ScoringPipeline:
    """The pipeline as the next reconcile reads it: the decision written into its status."""
    assert outcome.status is not None
    return pipeline({**p.status.wire(), "autoscaling": outcome.status.wire()},
                    **p.spec.scaling.wire())


# -- readings -> observation ---------------------------------------------------------------------
NOW = T0.timestamp()


def test_prometheus_down_is_stale_at_the_last_sample_or_no_data() -> None:
    down = ScalingReadings(error="http://prom:9090 (ConnectionError)")
    assert observation(down, 3, NOW - 20, 90, NOW) == Stale(
        NOW - 20, "Prometheus unavailable: http://prom:9090 (ConnectionError)")
    assert isinstance(observation(down, 3, None, 90, NOW), NoData)


def test_no_series_is_no_data_never_zero() -> None:
    obs = observation(ScalingReadings(), 3, None, 90, NOW)
    assert isinstance(obs, NoData) and "no scorer series" in obs.reason


def test_old_scrape_is_stale() -> None:
    obs = observation(load(50, T0 - timedelta(seconds=200)), 3, None, 90, NOW)
    assert isinstance(obs, Stale) and obs.measured_at == NOW - 202


def test_missing_pods_p99_or_gauges_are_partial_and_named() -> None:
    obs = observation(load(50, T0, pods=2), 3, None, 90, NOW)
    assert isinstance(obs, Partial) and obs.missing == ("pods 2/3 scraped",)
    r = ScalingReadings(qps=50, pods=3, scraped_at=NOW)
    obs = observation(r, 3, None, 90, NOW)
    assert isinstance(obs, Partial)
    assert obs.missing == ("p99", "in-flight", "queue depth")


def test_complete_readings_are_a_sample() -> None:
    obs = observation(load(50, T0, pods=3), 3, None, 90, NOW)
    assert isinstance(obs, MetricsSample) and obs.qps == 50 and obs.measured_at == NOW - 2


def test_pods_that_never_served_a_request_measure_zero_but_a_missing_rate_is_unknown() -> None:
    fresh = ScalingReadings(in_flight=0.0, queue_depth=0.0, pods=3, scraped_at=NOW,
                            request_series=0)
    obs = observation(fresh, 3, None, 90, NOW)
    assert isinstance(obs, MetricsSample) and obs.qps == 0.0
    # counters exist but no rate (Prometheus just restarted): unknown, never zero
    obs = observation(ScalingReadings(in_flight=0.0, queue_depth=0.0, pods=3, scraped_at=NOW,
                                      request_series=6), 3, None, 90, NOW)
    assert isinstance(obs, NoData) and "no complete rate window" in obs.reason


def test_an_idle_track_has_no_p99_and_that_is_not_partial() -> None:
    assert isinstance(observation(load(0, T0, pods=3), 3, None, 90, NOW), MetricsSample)


# -- held replicas -------------------------------------------------------------------------------
def test_a_reconcile_that_does_not_measure_keeps_the_last_decision() -> None:
    p = pipeline()
    up = decide_autoscaling(p, dep(2), load(900, T0), None, T0)
    assert up.stable_replicas > 2 and up.decision is not None and up.decision.reason == "ScaleUp"
    again = decide_autoscaling(persisted(p, up), dep(up.stable_replicas), None, None,
                               T0 + timedelta(seconds=5))
    assert again.stable_replicas == up.stable_replicas  # not minReplicas
    assert again.status is None and again.transitions == ()  # nothing re-decided or announced


def test_held_replicas_fall_back_to_min_and_respect_bounds() -> None:
    assert held_replicas(pipeline().spec, None) == 2  # never decided: minReplicas
    p = pipeline()
    out = decide_autoscaling(p, dep(2), load(900, T0), None, T0)
    assert out.status is not None
    assert held_replicas(p.spec, out.status) == 6
    assert held_replicas(pipeline(minReplicas=15).spec, out.status) == 15
    assert held_replicas(pipeline(maxReplicas=4).spec, out.status) == 4


# -- decisions, persisted and restored ---------------------------------------------------------
def test_scale_up_is_one_event_with_the_numbers_and_status_says_why() -> None:
    out = decide_autoscaling(pipeline(), dep(2), load(900, T0), None, T0)
    assert [t.reason for t in out.transitions] == ["ScaleUp"]
    assert "2 -> 6" in out.transitions[0].message and "demand 900 qps" in out.transitions[0].message
    assert out.status is not None and out.status.stable is not None
    s = out.status.stable
    assert (s.current, s.desired, s.reason, s.demand_qps) == (2, 6, "ScaleUp", 900.0)
    assert s.measurement.startswith("Sample: 900.0 qps")
    assert out.verdict is not None and out.verdict.status == "True"


def test_state_round_trips_through_status() -> None:
    p = pipeline()
    out = decide_autoscaling(p, dep(2), load(900, T0), None, T0)
    assert out.status is not None
    wire = out.status.wire()
    restored = state_from_status(AutoscalingStatus.model_validate(wire))
    assert restored is not None
    t = restored.tracks["stable"]
    assert (t.desired, t.reason, t.decided_at) == (6, "ScaleUp", T0.timestamp())
    assert [(r.at, r.replicas) for r in t.recommendations] == [
        (T0.timestamp(), 2), (T0.timestamp(), 9)]  # wanted 9, stepped to 6 (+4)


def test_a_restart_does_not_scale_down_before_the_window_passed() -> None:
    """Load vanishes just as the operator restarts: the restored history keeps the replicas
    for the scale-down stabilization window (5m), then they go down."""
    p = pipeline()
    t = T0
    out = decide_autoscaling(p, dep(2), load(900, t), None, t)
    p = persisted(p, out)
    for _ in range(4):  # a few loops at the high load
        t += timedelta(seconds=15)
        out = decide_autoscaling(p, dep(out.stable_replicas), load(900, t), None, t)
        p = persisted(p, out)
    high = out.stable_replicas
    # restart: a new process knows only the status
    t += timedelta(seconds=15)
    out = decide_autoscaling(p, dep(high), load(10, t), None, t)
    assert out.stable_replicas == high and out.decision is not None
    assert out.decision.reason == "StabilizingScaleDown"
    for _ in range(25):  # 6+ minutes later it has come down
        p = persisted(p, out)
        t += timedelta(seconds=15)
        out = decide_autoscaling(p, dep(out.stable_replicas), load(10, t), None, t)
    assert out.stable_replicas == 2


@pytest.mark.parametrize("phase", ["Canary", "Shadow", "Promoting"])
def test_no_scale_down_during_a_rollout(phase: RolloutPhase) -> None:
    p = pipeline(scaleDown={"stabilizationWindow": "0s"})
    state = RolloutState(
        rollout=RolloutStatus(revision="abc", strategy="Canary" if phase != "Shadow" else
                              "Shadow", phase=phase, started_at="2026-01-01T00:00:00Z"),
        canary=CanaryStatus(step=0, weight=20) if phase != "Shadow" else None)
    out = decide_autoscaling(p, dep(8), load(10, T0), state, T0)
    assert out.stable_replicas == 8 and out.decision is not None
    assert out.decision.reason == "RolloutInProgress"
    # the same without a rollout goes down (the test can fail)
    assert decide_autoscaling(p, dep(8), load(10, T0), None, T0).stable_replicas < 8


def test_rollout_view_takes_weights_and_promotion() -> None:
    p = make_pipeline({"rollout": {"canary": {"steps": [{"weight": 10}, {"weight": 50}]}}})
    state = RolloutState(
        rollout=RolloutStatus(revision="abc", strategy="Canary", phase="Canary",
                              started_at="2026-01-01T00:00:00Z"),
        canary=CanaryStatus(step=0, weight=10))
    v = rollout_view(p.spec, state)
    assert (v.active, v.candidate_weight, v.next_candidate_weight, v.promoting) == (
        True, 10, 50, False)
    assert not rollout_view(p.spec, None).active


def test_missing_metrics_hold_with_the_reason_and_a_warning_once() -> None:
    p = pipeline()
    out = decide_autoscaling(p, dep(2), load(900, T0), None, T0)
    p = persisted(p, out)
    t = T0 + timedelta(seconds=15)
    held = decide_autoscaling(p, dep(6), ScalingReadings(error="http://prom (ConnectionError)"),
                              None, t)
    assert held.stable_replicas == 6 and held.decision is not None
    assert held.decision.reason == "StaleMetrics" and held.transitions == ()
    assert held.verdict is not None and held.verdict.status == "False" and held.verdict.warning
    assert held.status is not None and held.status.stable is not None
    assert "Prometheus unavailable" in held.status.stable.message
    # staleness counts from the last real sample, not from the last failed pass
    assert held.status.stable.last_sample_at == out.status.stable.last_sample_at  # type: ignore


def test_first_decision_before_the_deployment_exists_is_min_and_silent() -> None:
    out = decide_autoscaling(pipeline(), None, ScalingReadings(), None, T0)
    assert out.stable_replicas == 2 and out.transitions == ()


# -- act helpers ---------------------------------------------------------------------------------
def _deployment(replicas: int, image: str = "s:1", generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "d", "labels": {"a": "b"}, "generation": generation},
            "spec": {"replicas": replicas, "template": {"spec": {"image": image}}},
            "status": {"observedGeneration": 1}}


def test_replica_only_changes_are_recognised() -> None:
    assert _only_replicas(_deployment(4), _deployment(2))
    assert not _only_replicas(_deployment(4, "s:2"), _deployment(2))
    assert not _only_replicas(_deployment(2), _deployment(2))


def test_a_scale_counts_as_observed_when_the_live_generation_was() -> None:
    applied = _deployment(4, generation=2)
    assert _observed_scale(applied, _deployment(2))["status"]["observedGeneration"] == 2
    lagging = {**_deployment(2, generation=3)}
    assert _observed_scale(applied, lagging)["status"]["observedGeneration"] == 1
