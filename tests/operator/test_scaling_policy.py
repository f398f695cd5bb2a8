"""The autoscaling policy, pure: each rule, with an injected clock and hand-made measurements."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scorefleet.api.spec import ScalingSpec, SLOSpec
from scorefleet.operator.decide.capacity import LearnedCapacity
from scorefleet.operator.decide.queueing import ReplicaModel
from scorefleet.operator.decide.scaling import (
    AutoscalerState,
    Recommendation,
    ScalingPlan,
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

SLO = SLOSpec()  # p99 25 ms
TRUE = ReplicaModel(8575.0, 2.7)  # the measured scorer (queueing.py)
NOW = 10_000.0


def spec(**kw: Any) -> ScalingSpec:
    return ScalingSpec.model_validate({"minReplicas": 2, "maxReplicas": 60, **kw})


def learned(desired: int, **kw: Any) -> TrackScalingState:
    """A track that has run steadily with `desired` replicas and knows its capacity."""
    base: dict[str, Any] = dict(
        desired=desired, reason="WithinTarget", message="", decided_at=NOW - 15,
        capacity=LearnedCapacity(8575.0, 2.7, samples=50, source="learned"),
        last_change_at=NOW - 3600, steady_since=NOW - 3600)
    return TrackScalingState(**{**base, **kw})


def sample(qps: float, replicas: int, at: float = NOW, **kw: Any) -> MetricsSample:
    """What a fleet of `replicas` true scorers would report at `qps`."""
    return MetricsSample(measured_at=at, qps=qps, p99_ms=kw.pop("p99_ms", TRUE.p99_ms(
        qps / replicas)), qps_short=kw.pop("qps_short", qps), queue_depth=kw.pop(
        "queue_depth", 0.0), **kw)


def decide(obs: Observation, replicas: int, ready: int | None = None,
           state: AutoscalerState | None = None, rollout: RolloutView | None = None,
           s: ScalingSpec | None = None, now: float = NOW) -> ScalingPlan:
    st = state if state is not None else AutoscalerState({"stable": learned(replicas)})
    return decide_scaling(s or spec(), SLO, {"stable": TrackView(
        replicas, replicas if ready is None else ready, obs)}, rollout or RolloutView(), st, now)


def test_steady_load_within_target_holds() -> None:
    d = decide(sample(30_000, 6), 6).decisions["stable"]
    assert (d.desired, d.reason) == (6, "WithinTarget")
    assert d.p99_ms is not None and d.p99_ms < 25
    assert "SLO 25 ms" in d.message


def test_a_3x_step_is_sized_in_one_decision_within_step_limits() -> None:
    # 15k -> 45k qps on 3 replicas: the short window and the backlog already show it.
    plan = decide(sample(3 * 8000, 3, qps_short=45_000, queue_depth=6000), 3)
    d = plan.decisions["stable"]
    assert d.reason == "PanicScaleUp"
    assert d.desired == 7  # needs ~9-10, but the default scaleUp allows +4 pods (or +100 %)
    d2 = decide(sample(45_000, 9, qps_short=45_000), 9).decisions["stable"]
    assert d2.desired == 9


def test_scale_up_step_limits_follow_the_spec() -> None:
    s = spec(scaleUp={"maxStepPercent": 50, "maxStepPods": 1})
    d = decide(sample(60_000, 10, qps_short=60_000), 10, s=s).decisions["stable"]
    assert d.desired == 15  # max(50 % of 10, 1 pod)


def test_p99_breach_the_model_does_not_explain_panics_and_corrects_the_model_at_once() -> None:
    obs = sample(20_000, 6, p99_ms=80.0)  # model says ~6 ms at 3.3k/replica
    d = decide(obs, 6).decisions["stable"]
    # Half more at once, and the model learns at once that 3.3k per replica is too much: what
    # it plans per replica at the target is now at most that.
    assert (d.desired, d.reason) == (9, "PanicScaleUp")
    assert d.capacity_qps is not None and d.capacity_qps <= 20_000 / 6 + 1e-6
    # A breach during a burst (the stable window within the SLO) panics by half, no lesson.
    burst = decide(sample(20_000, 6, p99_ms=20.0, p99_short_ms=80.0), 6).decisions["stable"]
    assert (burst.desired, burst.reason) == (9, "PanicScaleUp")
    assert burst.capacity_qps is not None and burst.capacity_qps > 20_000 / 6


def test_no_panic_while_pods_are_still_starting() -> None:
    obs = sample(20_000, 6, p99_ms=80.0)
    d = decide(obs, 9, ready=6).decisions["stable"]
    assert d.desired == 9


@pytest.mark.parametrize("obs, reason", [
    (NoData("no series for track stable"), "NoMetrics"),
    (Stale(NOW - 600, "Prometheus unreachable"), "StaleMetrics"),
    (sample(1000, 8, at=NOW - 600), "StaleMetrics"),
])
def test_missing_or_stale_metrics_hold_and_say_why(obs: Observation, reason: str) -> None:
    d = decide(obs, 8).decisions["stable"]
    assert (d.desired, d.reason) == (8, reason)
    assert "holding 8 replicas" in d.message


def test_missing_metrics_still_honour_the_bounds() -> None:
    d = decide(NoData("none"), 1).decisions["stable"]
    assert d.desired == 2
    d = decide(NoData("none"), 70).decisions["stable"]
    assert d.desired == 60


def test_partial_metrics_scale_up_but_never_down() -> None:
    low = Partial(sample(1000, 8), missing=("pods 5/8",))
    state = AutoscalerState({"stable": learned(8, recommendations=())})
    d = decide(low, 8, state=state, now=NOW).decisions["stable"]
    assert (d.desired, d.reason) == (8, "PartialMetrics")
    high = Partial(sample(60_000, 8, qps_short=60_000), missing=("p99",))
    assert decide(high, 8).decisions["stable"].desired > 8


def test_scale_down_waits_for_the_stabilization_window_then_steps() -> None:
    state: AutoscalerState | None = AutoscalerState({"stable": learned(20)})
    replicas, t, seen = 20, NOW, []
    while t < NOW + 600:
        plan = decide(sample(10_000, replicas, at=t), replicas, state=state, now=t)
        d = plan.decisions["stable"]
        seen.append((t - NOW, d.desired, d.reason))
        replicas, state, t = d.desired, plan.state, t + 15
    first_down = next(s for s in seen if s[1] < 20)
    assert all(r == "StabilizingScaleDown" for _, n, r in seen if n == 20)
    assert first_down[0] >= 300  # default scaleDown window 5m
    assert first_down[1] == 18  # max(10 % of 20, 2 pods)
    assert seen[-1][1] < 10  # it gets there


def test_hysteresis_keeps_a_count_that_still_has_margin() -> None:
    # 6 replicas at 27k: 5 would still meet the 23.75 ms target, not the 21.25 ms down target.
    old = (Recommendation(NOW - 400, 6),)  # outside the window: nothing holds it but margin
    state = AutoscalerState({"stable": learned(6, recommendations=old)})
    d = decide(sample(27_000, 6), 6, state=state).decisions["stable"]
    assert (d.desired, d.reason) == (6, "WithinTarget")
    assert "wanted 6" in d.message
    d = decide(sample(24_500, 6), 6, state=state).decisions["stable"]
    assert d.desired == 5


def test_no_scale_down_while_p99_breaches() -> None:
    d = decide(sample(2_000, 9, p99_ms=40.0), 9, ready=6).decisions["stable"]
    assert (d.desired, d.reason) == (9, "SLOBreached")


def test_never_scales_down_during_a_rollout() -> None:
    rollout = RolloutView(active=True, candidate_weight=25)
    d = decide(sample(1_000, 20), 20, rollout=rollout).decisions["stable"]
    assert (d.desired, d.reason) == (20, "RolloutInProgress")


def _canary(weight: int, next_weight: int | None = None,
            promoting: bool = False) -> ScalingPlan:
    stable_qps, cand_qps = 40_000 * (100 - weight) / 100, 40_000 * weight / 100
    views = {"stable": TrackView(8, 8, sample(stable_qps, 8)),
             "candidate": TrackView(2, 2, sample(cand_qps, 2))}
    state = AutoscalerState({"stable": learned(8)})
    rollout = RolloutView(active=True, candidate_weight=weight,
                          next_candidate_weight=next_weight, promoting=promoting)
    return decide_scaling(spec(), SLO, views, rollout, state, NOW)


def test_candidate_is_sized_by_its_traffic_weight_and_the_next_step() -> None:
    at_25 = _canary(25).decisions["candidate"]
    assert at_25.demand_qps == pytest.approx(10_000)
    assert at_25.desired == 2  # 10k qps: two replicas keep p99 under target
    before_50 = _canary(25, next_weight=50).decisions["candidate"]
    assert before_50.demand_qps == pytest.approx(20_000)
    assert before_50.desired == 4


def test_candidate_without_its_own_metrics_is_sized_from_the_stable_track() -> None:
    views = {"stable": TrackView(8, 8, sample(30_000, 8)),
             "candidate": TrackView(2, 0, NoData("no requests yet"))}
    rollout = RolloutView(active=True, candidate_weight=25)
    plan = decide_scaling(spec(), SLO, views, rollout,
                          AutoscalerState({"stable": learned(8)}), NOW)
    d = plan.decisions["candidate"]
    assert d.demand_qps == pytest.approx(10_000)
    assert plan.state.tracks["candidate"].capacity.throughput_qps == pytest.approx(8575.0)


def test_shadow_candidate_is_sized_by_the_sample_rate() -> None:
    views = {"stable": TrackView(8, 8, sample(40_000, 8)),
             "candidate": TrackView(2, 2, NoData("not yet scraped"))}
    rollout = RolloutView(active=True, strategy="Shadow", shadow_sample_rate=0.5)
    plan = decide_scaling(spec(), SLO, views, rollout,
                          AutoscalerState({"stable": learned(8)}), NOW)
    assert plan.decisions["candidate"].demand_qps == pytest.approx(20_000)
    assert plan.decisions["candidate"].desired == 4


def test_stable_is_made_ready_for_full_load_before_promotion() -> None:
    plan = _canary(50, promoting=True)
    stable = plan.decisions["stable"]
    assert stable.demand_qps == pytest.approx(40_000)
    assert stable.desired >= 8
    assert plan.promotion_ready is True  # 40k / ~5.4k per replica at 22.5 ms = 8: all ready
    views = {"stable": TrackView(4, 4, sample(20_000, 4)),
             "candidate": TrackView(4, 4, sample(20_000, 4))}
    rollout = RolloutView(active=True, candidate_weight=50, promoting=True)
    plan = decide_scaling(spec(), SLO, views, rollout,
                          AutoscalerState({"stable": learned(4)}), NOW)
    assert plan.decisions["stable"].desired == 8
    assert plan.promotion_ready is False
    assert "4 ready of 8 needed" in plan.promotion_message
    assert _canary(25).promotion_ready is None


def test_target_qps_per_replica_sizes_by_the_hint() -> None:
    s = spec(targetQPSPerReplica=2000)
    plan = decide_scaling(s, SLO, {"stable": TrackView(5, 5, sample(10_000, 5))},
                          RolloutView(), None, NOW)
    d = plan.decisions["stable"]
    assert d.capacity_qps == pytest.approx(2000.0)
    assert d.desired == 5
    assert plan.state.tracks["stable"].capacity.source == "hint"


def test_a_backlog_raises_demand() -> None:
    quiet = decide(sample(20_000, 6), 6).decisions["stable"]
    backlog = decide(sample(20_000, 6, queue_depth=600_000), 6).decisions["stable"]
    assert backlog.demand_qps is not None and quiet.demand_qps is not None
    assert backlog.demand_qps == pytest.approx(quiet.demand_qps + 20_000)  # drained in 30 s
    assert quiet.desired == 6 < backlog.desired


def test_state_round_trips_through_json_and_a_restart_decides_the_same() -> None:
    state: AutoscalerState | None = None
    replicas = 4
    for i in range(30):
        t = NOW + 15 * i
        plan = decide(sample(30_000 if i < 15 else 12_000, replicas, at=t), replicas,
                      state=state or AutoscalerState(), now=t)
        replicas, state = plan.decisions["stable"].desired, plan.state
    assert state is not None
    restored = AutoscalerState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    t = NOW + 15 * 30
    a = decide(sample(12_000, replicas, at=t), replicas, state=state, now=t)
    b = decide(sample(12_000, replicas, at=t), replicas, state=restored, now=t)
    assert a == b


def test_tracks_that_are_gone_leave_the_state() -> None:
    state = AutoscalerState({"stable": learned(6), "candidate": learned(2)})
    plan = decide(sample(30_000, 6), 6, state=state)
    assert set(plan.state.tracks) == {"stable"}


def test_capacity_is_learned_only_when_the_fleet_is_steady() -> None:
    fresh = AutoscalerState()
    moving = decide(sample(30_000, 6), 6, ready=4, state=fresh).state.tracks["stable"]
    assert moving.capacity.samples == 0
    steady = AutoscalerState({"stable": learned(6, capacity=LearnedCapacity(2000.0, 2.5))})
    after = decide(sample(30_000, 6), 6, state=steady).state.tracks["stable"]
    assert after.capacity.samples == 1 and after.capacity.throughput_qps > 2000.0


def test_panic_reads_the_short_window_and_cools_down_after_a_scale_up() -> None:
    remembered = sample(20_000, 6, p99_ms=80.0, p99_short_ms=12.0)  # the overload is over
    assert decide(remembered, 6).decisions["stable"].reason != "PanicScaleUp"
    now_bad = sample(20_000, 6, p99_ms=80.0, p99_short_ms=90.0)
    assert decide(now_bad, 6).decisions["stable"].reason == "PanicScaleUp"
    just_grew = AutoscalerState({"stable": learned(6, last_change_at=NOW - 20,
                                                   last_direction=1)})
    d = decide(now_bad, 6, state=just_grew).decisions["stable"]
    # Its new pods are not measured yet: no panic, and the breach is not learned from either.
    assert (d.desired, d.reason) == (6, "SLOBreached")
    assert d.capacity_qps is not None and d.capacity_qps > 3000
    cooled = AutoscalerState({"stable": learned(6, last_change_at=NOW - 61,
                                                last_direction=1)})
    assert decide(now_bad, 6, state=cooled).decisions["stable"].desired >= 9


# The real run of 2026-11-29 on a 100m-CPU pod (docs/autoscaling.md): clients' p99 over a
# 50 ms SLO at 130 qps while the scorer's own histogram read 1-2 ms; the operator scaled up on
# the panic path, then back down 2 -> 1 under the same load.
SLO50 = SLOSpec(p99_latency="50ms")
SMALL = ScalingSpec.model_validate({"minReplicas": 1, "maxReplicas": 4,
                                    "scaleDown": {"stabilizationWindow": "30s"}})


def pod_sample(qps: float, at: float, **kw: Any) -> MetricsSample:
    """What the throttled pods' own series say: a p99 of 1.5 ms whatever the load."""
    return MetricsSample(measured_at=at, qps=qps, p99_ms=1.5, qps_short=kw.pop("qps_short", qps),
                         p99_short_ms=1.5, in_flight=1.0, queue_depth=0.0, **kw)


def run_small(samples: list[tuple[int, MetricsSample]], seconds: float = 15.0,
              ) -> list[ScalingPlan]:
    """Decide every `seconds` with each (ready replicas, sample), the Deployment asking for
    what the last decision said; start from no state."""
    state: AutoscalerState | None = None
    plans = []
    for i, (ready, obs) in enumerate(samples):
        asked = max(ready, state.tracks["stable"].desired) if state else ready
        plan = decide_scaling(SMALL, SLO50, {"stable": TrackView(asked, ready, obs)},
                              RolloutView(), state, NOW + i * seconds)
        plans.append(plan)
        state = plan.state
    return plans


def test_cpu_throttling_is_a_breach_even_when_the_servers_p99_reads_low() -> None:
    first, second = run_small([(1, pod_sample(130.0, NOW, throttled_fraction=0.46)),
                               (1, pod_sample(130.0, NOW + 15, throttled_fraction=0.5))])
    d = first.decisions["stable"]
    assert (d.desired, d.reason) == (2, "PanicScaleUp")
    assert "CPU-throttled in 46% of CFS periods (saturated above 25%)" in d.message
    # The breach lowered the estimate at once: what sizing plans per replica is under 130.
    cap = first.state.tracks["stable"].capacity
    assert cap.breach_qps == 130.0 and d.capacity_qps is not None and d.capacity_qps < 130.0
    assert second.state.tracks["stable"].capacity.breach_qps == 130.0  # cooling: no change
    calm = run_small([(1, pod_sample(130.0, NOW, throttled_fraction=0.06))])[0]
    assert calm.decisions["stable"].desired == 1  # a few throttled periods are not a breach
    starting = run_small([(1, pod_sample(0.0, NOW, throttled_fraction=0.92))])[0]
    assert starting.decisions["stable"].desired == 1  # start-up work, not requests waiting
    # A pod that was not ready at some scrape of the panic window: its start-up work is in the
    # throttled share, even though it serves now (a fresh pod taking its first requests).
    warming = run_small([(1, pod_sample(130.0, NOW, throttled_fraction=0.46, warming_up=True))])
    assert warming[0].decisions["stable"].desired == 1


def test_after_a_breach_the_same_load_is_never_scaled_back_down() -> None:
    # Breach on one pod; then two pods share the same 130 qps for 20 minutes, each looking
    # idle to its own histogram and throttled in few periods. No CPU reading at all: the
    # breach alone must hold the count.
    samples = [(1, pod_sample(130.0, NOW + 15 * i, throttled_fraction=0.9)) for i in range(2)]
    samples += [(2, pod_sample(130.0, NOW + 15 * i, throttled_fraction=0.02))
                for i in range(2, 80)]
    plans = run_small(samples)
    assert plans[0].decisions["stable"].desired == 2
    assert [p.decisions["stable"].desired for p in plans[1:]] == [2] * 79
    assert plans[-1].state.tracks["stable"].capacity.breach_qps == 130.0


def test_cpu_against_the_limit_sizes_before_any_breach() -> None:
    # One pod at 40 qps using 60 % of its CPU limit: 0.8 / 0.6 x 40 = 53 qps per replica.
    load = run_small([(1, pod_sample(40.0, NOW, cpu_utilization=0.6))])[0].decisions["stable"]
    assert load.capacity_qps == pytest.approx(0.8 * 40 / 0.6)
    step = run_small([(1, pod_sample(40.0, NOW, cpu_utilization=0.6, qps_short=130.0))])[0]
    assert step.decisions["stable"].desired == 3  # 130 / 53: sized in one decision
    blind = run_small([(1, pod_sample(40.0, NOW, qps_short=130.0))])[0]
    assert blind.decisions["stable"].desired == 1  # the latency model alone sees no need
    # Two pods at 65 qps each, 50 % CPU: one pod would need 100 %: no scale-down.
    shared = run_small([(2, pod_sample(130.0, NOW + 15 * i, cpu_utilization=0.5))
                        for i in range(40)])
    assert {p.decisions["stable"].desired for p in shared} == {2}


def test_a_breach_during_a_jump_in_load_panics_but_teaches_no_capacity() -> None:
    # 15k -> 45k qps: the panic window sees the jump, the stable window not yet. The breach
    # is the fleet catching up, not what one replica can take.
    jump = sample(15_000, 3, qps_short=45_000, p99_short_ms=400.0)
    plan = decide(jump, 3)
    assert plan.decisions["stable"].reason == "PanicScaleUp"
    assert plan.state.tracks["stable"].capacity.breach_qps is None
    # Under a steady load with p99 over the SLO in both windows: a lesson (from the p99).
    steady = sample(12_000, 3, p99_ms=400.0, p99_short_ms=400.0)
    assert decide(steady, 3).state.tracks["stable"].capacity.throughput_qps < 8575.0
    # A burst inside the windows (the stable window's p99 within the SLO) is not.
    burst = sample(12_000, 3, p99_ms=20.0, p99_short_ms=400.0)
    assert decide(burst, 3).state.tracks["stable"].capacity.throughput_qps == 8575.0
