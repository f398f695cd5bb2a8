"""Invariants of the autoscaling policy over generated inputs (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from scorefleet.api.spec import ScalingSpec, SLOSpec
from scorefleet.operator.decide.capacity import LearnedCapacity
from scorefleet.operator.decide.scaling import (
    AutoscalerState,
    Recommendation,
    TrackScalingState,
    decide_scaling,
)
from scorefleet.operator.decide.scaling_inputs import (
    MetricsSample,
    NoData,
    Observation,
    Partial,
    RolloutView,
    Stale,
    TrackView,
)

NOW = 50_000.0
SLO = SLOSpec()


@st.composite
def specs(draw: st.DrawFn) -> ScalingSpec:
    lo = draw(st.integers(1, 20))
    hi = draw(st.integers(lo, 80))
    hint = draw(st.one_of(st.none(), st.floats(50, 20_000)))
    behave = {"maxStepPercent": draw(st.integers(1, 300)), "maxStepPods": draw(st.integers(1, 8))}
    return ScalingSpec.model_validate({
        "minReplicas": lo, "maxReplicas": hi, "targetQPSPerReplica": hint,
        "scaleUp": {**behave, "stabilizationWindow": draw(st.sampled_from(["0s", "30s"]))},
        "scaleDown": {**behave, "stabilizationWindow": draw(st.sampled_from(["0s", "5m"]))}})


def samples(qps: st.SearchStrategy[float] | None = None) -> st.SearchStrategy[MetricsSample]:
    return st.builds(
        MetricsSample, measured_at=st.floats(NOW - 60, NOW), qps=qps or st.floats(0, 200_000),
        p99_ms=st.one_of(st.none(), st.floats(0.1, 5_000)),
        qps_short=st.one_of(st.none(), st.floats(0, 200_000)),
        queue_depth=st.one_of(st.none(), st.floats(0, 1e6)))


observations: st.SearchStrategy[Observation] = st.one_of(
    samples(), st.builds(NoData, st.just("none")),
    st.builds(Stale, st.floats(0, NOW)),
    st.builds(Partial, samples(), st.just(("p99",))))


@st.composite
def states(draw: st.DrawFn) -> AutoscalerState:
    if draw(st.booleans()):
        return AutoscalerState()
    recs = tuple(Recommendation(NOW - draw(st.floats(1, 600)), draw(st.integers(0, 100)))
                 for _ in range(draw(st.integers(0, 5))))
    cap = LearnedCapacity(draw(st.floats(10, 50_000)), draw(st.floats(0.1, 20)))
    return AutoscalerState({"stable": TrackScalingState(
        desired=draw(st.integers(0, 100)), reason="WithinTarget", message="",
        decided_at=NOW - 15, capacity=cap, recommendations=tuple(sorted(recs, key=lambda r: r.at)),
        last_change_at=draw(st.one_of(st.none(), st.floats(0, NOW))),
        steady_since=draw(st.one_of(st.none(), st.floats(0, NOW))))})


rollouts = st.one_of(
    st.just(RolloutView()),
    st.builds(RolloutView, active=st.just(True), candidate_weight=st.integers(0, 100),
              promoting=st.booleans()))


def clamp(n: int, s: ScalingSpec) -> int:
    return min(max(n, s.min_replicas), s.max_replicas)


@settings(max_examples=300, deadline=None)
@given(specs(), st.integers(0, 120), st.integers(0, 120), observations, rollouts, states())
def test_desired_is_always_within_bounds_and_never_drops_in_a_rollout(
        spec: ScalingSpec, replicas: int, ready: int, obs: Observation,
        rollout: RolloutView, state: AutoscalerState) -> None:
    ready = min(ready, replicas)
    plan = decide_scaling(spec, SLO, {"stable": TrackView(replicas, ready, obs)}, rollout,
                          state, NOW)
    d = plan.decisions["stable"]
    assert spec.min_replicas <= d.desired <= spec.max_replicas
    if rollout.active:
        assert d.desired >= clamp(replicas, spec), d
    if isinstance(obs, NoData | Stale):
        assert d.desired == clamp(replicas, spec)
    if isinstance(obs, Partial):
        assert d.desired >= clamp(replicas, spec)
    # The spec's step limits (bounds win over them, as in HPA).
    up = max(math.ceil(replicas * (spec.scale_up.max_step_percent or 100) / 100),
             spec.scale_up.max_step_pods or 4)
    assert d.desired <= max(replicas + up, spec.min_replicas)
    # The state it returns is what the next call reads back after a restart.
    assert AutoscalerState.from_dict(plan.state.to_dict()) == plan.state


@settings(max_examples=300, deadline=None)
@given(specs(), st.integers(1, 60), st.floats(0, 300_000), st.floats(0, 300_000), states())
def test_more_load_never_means_fewer_replicas(spec: ScalingSpec, replicas: int, qps_a: float,
                                              qps_b: float, state: AutoscalerState) -> None:
    lo, hi = sorted((qps_a, qps_b))

    def desired(qps: float) -> int:
        obs = MetricsSample(measured_at=NOW, qps=qps, p99_ms=10.0, qps_short=qps,
                            queue_depth=0.0)
        return decide_scaling(spec, SLO, {"stable": TrackView(replicas, replicas, obs)},
                              RolloutView(), state, NOW).decisions["stable"].desired

    assert desired(lo) <= desired(hi)


@settings(max_examples=200, deadline=None)
@given(specs(), st.integers(1, 60), st.floats(0, 100_000), st.floats(0.1, 24.9),
       st.floats(25.1, 1_000))
def test_a_p99_breach_never_lowers_the_decision(spec: ScalingSpec, replicas: int, qps: float,
                                                fine: float, breach: float) -> None:
    def desired(p99: float) -> int:
        obs = MetricsSample(measured_at=NOW, qps=qps, p99_ms=p99, qps_short=qps)
        return decide_scaling(spec, SLO, {"stable": TrackView(replicas, replicas, obs)},
                              RolloutView(), None, NOW).decisions["stable"].desired

    assert desired(breach) >= max(desired(fine), clamp(replicas, spec))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 100), st.integers(0, 100), st.floats(0, 200_000))
def test_candidate_demand_is_monotone_in_its_weight(replicas: int, w: int, qps: float) -> None:
    spec = ScalingSpec.model_validate({"minReplicas": 1, "maxReplicas": 1000})

    def cand_demand(weight: int) -> float:
        views = {"stable": TrackView(replicas, replicas, MetricsSample(NOW, qps, 10.0)),
                 "candidate": TrackView(1, 1, NoData("none"))}
        rollout = RolloutView(active=True, candidate_weight=min(weight, 99))
        d = decide_scaling(spec, SLO, views, rollout, None, NOW).decisions["candidate"]
        return d.demand_qps or 0.0

    assert cand_demand(w) <= cand_demand(min(w + 10, 99)) + 1e-6


def _known(replicas: int, old_rec: int) -> AutoscalerState:
    """A track with learned capacity whose only recommendation has left every window."""
    return AutoscalerState({"stable": TrackScalingState(
        desired=replicas, reason="WithinTarget", message="", decided_at=NOW - 15,
        capacity=LearnedCapacity(8575.0, 2.7, samples=20, source="learned"),
        recommendations=(Recommendation(NOW - 3600, old_rec),),
        last_change_at=NOW - 3600, steady_since=NOW - 3600)})


@settings(max_examples=200, deadline=None)
@given(st.integers(3, 60), st.floats(0, 1.0), st.integers(0, 100), st.booleans())
def test_rollout_blocks_the_scale_down_that_would_otherwise_happen(
        replicas: int, load_share: float, weight: int, promoting: bool) -> None:
    spec = ScalingSpec.model_validate({"minReplicas": 1, "maxReplicas": 100})
    qps = load_share * replicas * 1000  # at most 1k qps per replica: far under capacity
    obs = MetricsSample(measured_at=NOW, qps=qps, p99_ms=5.0, qps_short=qps, queue_depth=0.0)
    views = {"stable": TrackView(replicas, replicas, obs)}
    free = decide_scaling(spec, SLO, views, RolloutView(), _known(replicas, 1), NOW)
    held = decide_scaling(spec, SLO, views, RolloutView(active=True, candidate_weight=weight,
                                                        promoting=promoting),
                          _known(replicas, 1), NOW)
    assert free.decisions["stable"].desired < replicas  # the premise: it would go down
    assert held.decisions["stable"].desired >= replicas


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.floats(1.05, 5.0))
def test_load_beyond_capacity_scales_up(replicas: int, overload: float) -> None:
    spec = ScalingSpec.model_validate({"minReplicas": 1, "maxReplicas": 1000})
    per_replica = 8575.0 * 0.65 * overload  # the p99 target is at ~0.64 of saturation
    qps = replicas * per_replica
    obs = MetricsSample(measured_at=NOW, qps=qps, p99_ms=None, qps_short=qps)
    d = decide_scaling(spec, SLO, {"stable": TrackView(replicas, replicas, obs)},
                       RolloutView(), _known(replicas, replicas), NOW).decisions["stable"]
    assert d.desired > replicas
    assert d.reason in ("ScaleUp", "PanicScaleUp")
