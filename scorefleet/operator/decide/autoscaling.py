"""The autoscaler inside a reconcile: which replica count the stable track gets now. Pure.

    measuring pass (periodic, every autoscale period):
        readings (Prometheus) --observation()--> sample | NoData | Stale | Partial
        status.autoscaling (persisted state) --+
        Deployment replicas / ready -----------+--> decide_scaling (scaling.py) --> replicas,
        rollout state (after this pass) -------+    status.autoscaling, ScalingActive, Events
    any other reconcile (a spec edit, a child event, a restart):
        status.autoscaling.stable.desired (the last decision), within the spec's bounds

The operator owns the Deployments' replicas; the spec holds only the bounds. A reconcile that
does not measure never re-decides: it keeps the last decision, so an edit, a child event or an
operator restart cannot reset a scaled fleet to minReplicas. Only the stable track is sized
here: the router derives the candidate's replicas from the stable track's by the canary weight
(with the Replicas router the pod ratio *is* the weight), and the stable track keeps the
replicas it needs for the full load through a rollout, never scaled down while one is active.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.spec import PipelineSpec
from scorefleet.api.status import (
    AutoscalingStatus,
    CapacityStatus,
    ScalingRecommendation,
    TrackAutoscaling,
)
from scorefleet.operator.decide.capacity import LearnedCapacity
from scorefleet.operator.decide.conditions import Transition, Verdict, timestamp
from scorefleet.operator.decide.observed import DeploymentState
from scorefleet.operator.decide.rollout import ACTIVE, RolloutState
from scorefleet.operator.decide.scaling import (
    STABLE,
    AutoscalerState,
    Recommendation,
    ScalingTuning,
    TrackDecision,
    TrackScalingState,
    decide_scaling,
)
from scorefleet.operator.decide.scaling_inputs import (
    NoData,
    RolloutView,
    ScalingReadings,
    Stale,
    TrackView,
    describe,
    observation,
)
from scorefleet.operator.decide.stream_lag import StreamBound, StreamInput, bound_replicas
from scorefleet.operator.decide.stream_latency import LatencyAsk, end_to_end_ask, usable_sample

# Reasons that mean "could not decide from measurements": the ScalingActive condition is False.
HOLD_REASONS = ("NoMetrics", "StaleMetrics")


@dataclass(frozen=True)
class AutoscalingOutcome:
    """What a reconcile takes from the autoscaler."""

    stable_replicas: int
    # Set on measuring passes only; other reconciles leave status.autoscaling as it is.
    status: AutoscalingStatus | None = None
    verdict: Verdict | None = None
    transitions: tuple[Transition, ...] = ()
    decision: TrackDecision | None = None


def held_replicas(spec: PipelineSpec, last: AutoscalingStatus | None) -> int:
    """The replicas a reconcile that does not decide keeps: the last decision, else
    minReplicas (what the operator ran before it autoscaled); always within the spec's bounds
    (a bounds edit applies at once). Never the Deployment's own count: a hand edit of it is
    drift, repaired like any other."""
    lo, hi = spec.scaling.min_replicas, spec.scaling.max_replicas
    n = last.stable.desired if last is not None and last.stable is not None else lo
    return min(max(n, lo), hi)


def rollout_view(spec: PipelineSpec, state: RolloutState | None) -> RolloutView:
    """What sizing needs from the rollout: is one active, its weights, is it promoting."""
    if state is None or state.rollout.phase not in ACTIVE:
        return RolloutView()
    phase = state.rollout.phase
    if phase == "Shadow":
        return RolloutView(active=True, strategy="Shadow",
                           shadow_sample_rate=spec.rollout.shadow.sample_rate)
    weight = state.canary.weight if state.canary else 0
    steps = spec.rollout.canary.steps
    step = state.canary.step if state.canary else 0
    upcoming = steps[step + 1].weight if phase == "Canary" and step + 1 < len(steps) else None
    return RolloutView(active=True, strategy="Canary", candidate_weight=weight,
                       next_candidate_weight=upcoming, promoting=phase == "Promoting")


def decide_autoscaling(pipeline: ScoringPipeline, deployment: DeploymentState | None,
                       readings: ScalingReadings | None, rollout: RolloutState | None,
                       now: datetime, tuning: ScalingTuning | None = None,
                       stream: StreamInput | None = None) -> AutoscalingOutcome:
    """The stable track's replicas; with `readings` (a measuring pass), a fresh decision.

    `stream` (stream pipelines, the lag just read): the lag and the end-to-end p99
    (decide/stream_latency.py) raise the SLO's answer, the partitions cap it
    (decide/stream_lag.bound_replicas), all within the spec's bounds.
    """
    spec = pipeline.spec
    last = pipeline.status.autoscaling
    held = held_replicas(spec, last)
    if readings is None:
        return AutoscalingOutcome(stable_replicas=held)
    tuning = tuning or ScalingTuning()
    at = now.timestamp()
    state = state_from_status(last)
    prev = state.tracks.get(STABLE) if state else None
    # Replicas the Deployment asks for now; a Deployment not created yet has none.
    current = deployment.desired if deployment is not None else 0
    ready = deployment.ready if deployment is not None else 0
    obs = observation(readings, ready, prev.last_sample_at if prev else None,
                      tuning.stale_after_seconds, at)
    plan = decide_scaling(spec.scaling, spec.slo,
                          {STABLE: TrackView(replicas=current, ready=ready, metrics=obs)},
                          rollout_view(spec, rollout), state, at, tuning)
    decision = plan.decisions[STABLE]
    new = plan.state.tracks[STABLE]
    if isinstance(obs, Stale | NoData) and prev is not None:
        # Nothing new was sampled: keep the last sample's time, so staleness keeps counting
        # from the last real measurement rather than restarting at every pass.
        new = replace(new, last_sample_at=prev.last_sample_at,
                      last_queue_depth=prev.last_queue_depth)
    # ScalingActive speaks of the SLO's measurements: a lag that moves the fleet while
    # Prometheus has nothing does not make them valid (nor flip the condition every pass).
    verdict = _verdict(decision)
    bound = e2e = None
    if spec.source is not None:
        cooling = (prev is not None and prev.last_direction > 0
                   and prev.last_change_at is not None
                   and at - prev.last_change_at < tuning.panic_cooldown_seconds)
        e2e = end_to_end_ask(usable_sample(obs, at, tuning.stale_after_seconds),
                             spec.slo.end_to_end_seconds() * 1000.0, current, ready, cooling,
                             tuning.panic_step)
    if stream is not None:
        bound = bound_replicas(decision.desired, stream.lag, stream.partitions,
                               stream.consumers_per_replica,
                               e2e.floor if e2e is not None else 0,
                               e2e.reason if e2e is not None else "")
        decision, new = _bounded(decision, new, bound, spec, prev)
    track = _track_status(decision, new, describe(obs), bound, e2e)
    transitions: list[Transition] = []
    if deployment is not None and decision.changed:
        transitions.append(Transition("Normal", decision.reason, decision.message))
    return AutoscalingOutcome(
        stable_replicas=decision.desired,
        status=AutoscalingStatus(stable=track),
        verdict=verdict,
        transitions=tuple(transitions),
        decision=decision)


def _bounded(decision: TrackDecision, state: TrackScalingState, bound: StreamBound,
             spec: PipelineSpec, prev: TrackScalingState | None,
             ) -> tuple[TrackDecision, TrackScalingState]:
    """The decision after the stream's bound, kept within min/maxReplicas (the spec's bounds
    are a promise; the status says when the partitions would have allowed fewer). Only a bound
    that changes the count changes the reason: then the Event names the lag or the partitions."""
    lo, hi = spec.scaling.min_replicas, spec.scaling.max_replicas
    replicas = min(max(bound.replicas, lo), hi)
    # The lag's floor is a recommendation like the SLO's: kept in the stabilization history,
    # so a drained backlog scales down only after the scale-down window, as HPA treats
    # KEDA's lag metric (without it the next pass would drop at once to the SLO's count).
    if bound.floor > 0:
        floor = min(max(min(bound.floor, bound.ceiling), lo), hi)
        state = replace(state, recommendations=_with_floor(state.recommendations,
                                                           state.decided_at, floor))
    if replicas == decision.desired:
        return decision, state
    reason = bound.cause or "StreamLag"
    message = f"{bound.reason} (latency SLO and QPS: {decision.desired})"
    bounded = replace(state, desired=replicas, reason=reason, message=message)
    if replicas != decision.current:
        # Recorded as decide_scaling records a change: cooldowns count from it.
        bounded = replace(bounded, last_change_at=state.decided_at, steady_since=None,
                          last_direction=1 if replicas > decision.current else -1)
    elif decision.desired != decision.current:
        # The bound undid the SLO's change: nothing moved, so the last change stands.
        bounded = replace(bounded, last_change_at=prev.last_change_at if prev else None,
                          last_direction=prev.last_direction if prev else 0)
    return replace(decision, desired=replicas, reason=reason, message=message), bounded


def _with_floor(recs: tuple[Recommendation, ...], at: float, floor: int,
                ) -> tuple[Recommendation, ...]:
    """The history with this pass's recommendation at least `floor` (added when the SLO
    made none: it held for lack of metrics)."""
    if recs and recs[-1].at == at:
        return (*recs[:-1], Recommendation(at, max(recs[-1].replicas, floor)))
    return (*recs, Recommendation(at, floor))


def _verdict(decision: TrackDecision) -> Verdict:
    """ScalingActive, as HPA names it: False while the autoscaler holds for lack of metrics
    (a Warning when it turns so, once), True while it decides from measurements."""
    if decision.reason in HOLD_REASONS:
        return Verdict("ScalingActive", "False", decision.reason, decision.message,
                       warning=True)
    return Verdict("ScalingActive", "True", "ValidMetrics",
                   "the autoscaler decides from Prometheus measurements")


# -- status <-> state ----------------------------------------------------------------------------
def _time(at: float | None) -> str | None:
    return None if at is None else timestamp(datetime.fromtimestamp(at, UTC))


def _epoch(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


def _track_status(decision: TrackDecision, state: TrackScalingState,
                  measurement: str, bound: StreamBound | None = None,
                  e2e: LatencyAsk | None = None) -> TrackAutoscaling:
    cap = state.capacity
    return TrackAutoscaling(
        end_to_end_p99_ms=_round(e2e.p99_ms) if e2e is not None else None,
        slo_end_to_end_p99_ms=e2e.slo_ms if e2e is not None else None,
        stream_bound=bound.reason[:1024] if bound is not None else None,
        partition_limited=bound.partition_limited if bound is not None else None,
        current=decision.current, desired=decision.desired, reason=decision.reason,
        message=decision.message[:4096], measurement=measurement[:1024],
        demand_qps=_round(decision.demand_qps), target_qps_per_replica=_round(
            decision.capacity_qps),
        p99_latency_ms=_round(decision.p99_ms), slo_p99_latency_ms=decision.slo_p99_ms,
        decided_at=_time(state.decided_at) or "", last_change_at=_time(state.last_change_at),
        last_direction=state.last_direction, steady_since=_time(state.steady_since),
        capacity=CapacityStatus(throughput_qps=round(cap.throughput_qps, 3),
                                base_ms=round(cap.base_ms, 3), samples=cap.samples,
                                source=cap.source, updated_at=_time(cap.updated_at),
                                breach_qps=None if cap.breach_qps is None
                                else round(cap.breach_qps, 3)),
        recommendations=[ScalingRecommendation(at=_time(r.at) or "", replicas=r.replicas)
                         for r in state.recommendations],
        last_queue_depth=state.last_queue_depth, last_sample_at=_time(state.last_sample_at))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def state_from_status(status: AutoscalingStatus | None) -> AutoscalerState | None:
    """The policy's state as the last measuring pass persisted it (None: never decided)."""
    if status is None:
        return None
    tracks: dict[str, TrackScalingState] = {}
    for name, t in (("stable", status.stable), ("candidate", status.candidate)):
        if t is not None:
            tracks[name] = _track_state(t)
    return AutoscalerState(tracks) if tracks else None


def _track_state(t: TrackAutoscaling) -> TrackScalingState:
    cap = t.capacity
    recs: Sequence[Any] = t.recommendations
    return TrackScalingState(
        desired=t.desired, reason=t.reason, message=t.message,
        decided_at=_epoch(t.decided_at) or 0.0,
        capacity=LearnedCapacity(throughput_qps=cap.throughput_qps, base_ms=cap.base_ms,
                                 samples=cap.samples, source=cap.source,
                                 updated_at=_epoch(cap.updated_at), breach_qps=cap.breach_qps),
        last_change_at=_epoch(t.last_change_at), last_direction=t.last_direction,
        steady_since=_epoch(t.steady_since),
        recommendations=tuple(Recommendation(_epoch(r.at) or 0.0, r.replicas) for r in recs),
        last_queue_depth=t.last_queue_depth, last_sample_at=_epoch(t.last_sample_at))
