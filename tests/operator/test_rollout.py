"""The rollout state machine, driven through simulated time by a small simulated world: the plan
a persisted state stands for is in effect by the next reconcile, and Prometheus measures the
traffic the plan sends to each track. Every reconcile round-trips the state through the status
JSON, as the operator does, unless a test compares against an in-memory run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorefleet.api.spec import PipelineSpec
from scorefleet.api.status import PipelineStatus
from scorefleet.operator.decide.analysis import CanaryWindow, ShadowWindow, TrackWindow
from scorefleet.operator.decide.revision import Revision, desired_revision
from scorefleet.operator.decide.rollout import (
    RolloutDecision,
    RolloutInputs,
    RolloutState,
    TrafficPlan,
    analysis_window,
    decide_rollout,
    parse_action,
    traffic_for,
)
from scorefleet.scorer.metrics import SCORE_BUCKETS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IMAGE = "scorer:1"
V1 = {"name": "phishing", "version": "v1", "uri": "file:///m/v1.onnx", "threshold": 0.5}
RESYNC = 30  # seconds between reconciles in these runs


def make_spec(version: str = "v2", **rollout: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"model": {**V1, "version": version},
                                        "rollout": rollout})


STABLE = desired_revision(make_spec("v1"), IMAGE)

# Paired scores for the shadow world: detection-like (mostly near 0).
_RNG = np.random.default_rng(11)
_BASE = 1.0 / (1.0 + np.exp(-_RNG.normal(-3.0, 1.5, 5000)))
_DRIFTED = 1.0 / (1.0 + (1.0 / _BASE - 1.0) / 3.0)


def _shares(scores: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    idx = np.searchsorted(np.asarray(SCORE_BUCKETS), scores, side="left")
    counts: np.ndarray[Any, Any] = np.bincount(idx, minlength=len(SCORE_BUCKETS) + 1)
    shares: np.ndarray[Any, Any] = counts / counts.sum()
    return shares


def _cumulative(shares: np.ndarray[Any, Any], n: float) -> list[tuple[float, float]]:
    running = np.cumsum(shares * n)
    return list(zip([*SCORE_BUCKETS, math.inf], [float(x) for x in running], strict=True))


@dataclass
class World:
    spec: PipelineSpec = field(default_factory=make_spec)
    desired: Revision | None = None
    stable: Revision | None = STABLE
    qps: float = 100.0
    bad_from: datetime | None = None  # candidate answers 5% errors from then on
    slow: bool = False  # candidate p99 1.5x the stable's
    drift: bool = False  # candidate scores drift (shadow)
    resets: bool = False  # every window sees a counter reset
    roundtrip: bool = True
    state: RolloutState | None = None
    log: list[tuple[datetime, RolloutDecision]] = field(default_factory=list)

    def reconcile(self, now: datetime, action: str | None = None, ready: bool = True,
                  failure: str | None = None) -> RolloutDecision:
        desired = self.desired or desired_revision(self.spec, IMAGE)
        start = analysis_window(self.state, self.spec, now)
        measured = self.measure(start, now) if start is not None else None
        d = decide_rollout(RolloutInputs(
            spec=self.spec, desired=desired, stable=self.stable, state=self.state, now=now,
            action=action, measurement=measured, ready=ready, candidate_failure=failure))
        self.state = persist(d.state) if self.roundtrip else d.state
        if d.promoted is not None:
            self.stable = d.promoted
        self.log.append((now, d))
        return d

    def measure(self, start: datetime, end: datetime) -> CanaryWindow | ShadowWindow:
        assert self.state is not None
        secs = (end - start).total_seconds()
        if self.state.rollout.phase == "Shadow":
            rate = self.spec.rollout.shadow.sample_rate
            began = self.state.shadow.started_at if self.state.shadow else None
            assert began is not None
            total = self.qps * rate * (end - _t(began)).total_seconds()
            cand_shares = _shares(_DRIFTED if self.drift else _BASE)
            agree = 0.9 if self.drift else 1.0
            return ShadowWindow(
                interval_pairs=self.qps * rate * secs,
                outcomes={"both_negative": total * agree,
                          "flip_to_positive": total - total * agree},
                stable_scores=_cumulative(_shares(_BASE), total),
                candidate_scores=_cumulative(cand_shares, total),
                resets=int(self.resets))
        weight = self.state.canary.weight if self.state.canary else 0
        total = self.qps * secs
        cand = total * weight / 100
        bad = 0.0
        if self.bad_from is not None:
            bad = max(0.0, (end - max(start, self.bad_from)).total_seconds()) / secs
        reset = int(self.resets)
        return CanaryWindow(
            stable=TrackWindow(requests=total - cand, errors=0.0, p99_ms=10.0, resets=reset),
            candidate=TrackWindow(requests=cand, errors=cand * 0.05 * bad,
                                  p99_ms=15.0 if self.slow else 10.5, resets=reset))

    def run(self, until: float, every: float = RESYNC, **kw: Any) -> RolloutDecision:
        """Reconcile every `every` s from the last reconcile until phase is terminal."""
        t = self.log[-1][0] if self.log else T0
        d = self.log[-1][1] if self.log else self.reconcile(t, **kw)
        while (t - T0).total_seconds() < until and (
                d.state is None or d.state.rollout.phase not in ("Succeeded", "Failed",
                                                                 "Aborted")):
            t += timedelta(seconds=every)
            d = self.reconcile(t, **kw)
        return d

    def weights(self) -> list[int]:
        """Candidate weights of the canary steps entered, in order (one entry per step)."""
        out: list[int] = []
        last: tuple[int, int] | None = None
        for _, d in self.log:
            s = d.state
            if s is not None and s.canary is not None and s.rollout.phase == "Canary":
                key = (s.rollout.attempt, s.canary.step)
                if key != last:
                    out.append(s.canary.weight)
                    last = key
        return out

    def reasons(self) -> list[str]:
        return [e.reason for _, d in self.log for e in d.events]


def _t(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def persist(state: RolloutState | None) -> RolloutState | None:
    """Write the state into a status, to JSON and back, as the operator and API server do."""
    status = PipelineStatus().model_copy(update=RolloutState.status_fields(state))
    return RolloutState.from_status(PipelineStatus.model_validate(status.wire()))


# -- canary ------------------------------------------------------------------------------------
def test_good_canary_walks_every_step_once_and_promotes() -> None:
    w = World()
    d = w.run(until=3600)
    assert d.state is not None and d.state.rollout.phase == "Succeeded"
    assert w.weights() == [5, 25, 50]
    assert w.stable == desired_revision(make_spec(), IMAGE)
    assert d.promoted is not None and d.plan == TrafficPlan()
    # Pauses 2m, 5m, 5m plus Promoting: not before 12 min, not much after.
    took = (w.log[-1][0] - T0).total_seconds()
    assert 12 * 60 <= took <= 16 * 60, took
    assert w.reasons()[0] == "RolloutStarted"
    assert w.reasons()[-2:] == ["Promoting", "RolloutSucceeded"]


def test_each_step_pause_is_honoured() -> None:
    w = World()
    w.run(until=3600)
    entered: dict[tuple[str, int], datetime] = {}
    for t, d in w.log:
        for e in d.events:
            if e.reason in ("CanaryStep", "Promoting", "CanaryStepPassed"):
                entered.setdefault((e.reason, d.state.canary.step if d.state and d.state.canary
                                    else -1), t)
    starts = sorted(t for (r, _), t in entered.items() if r == "CanaryStep")
    ends = sorted(t for (r, _), t in entered.items() if r in ("CanaryStepPassed", "Promoting"))
    for (begin, end), pause in zip(zip(starts, ends, strict=True), (120, 300, 300),
                                   strict=True):
        assert (end - begin).total_seconds() >= pause


def test_a_step_with_neither_pause_nor_gate_is_analysed_for_one_interval() -> None:
    w = World(spec=make_spec(canary={"steps": [{"weight": 10}, {"weight": 50}]}))
    w.run(until=3600)
    assert w.weights() == [10, 50]
    analysed = [d for _, d in w.log if d.verdict is not None]
    assert [v.verdict.result for v in analysed if v.verdict] == ["Successful", "Successful"]


def test_manual_gate_waits_for_promote() -> None:
    w = World(spec=make_spec(canary={"steps": [{"weight": 10, "manualGate": True},
                                               {"weight": 50}]}))
    d = w.run(until=1800)
    assert d.state is not None and d.state.canary is not None
    assert d.state.rollout.phase == "Canary" and d.state.canary.awaiting_promotion
    assert d.state.canary.weight == 10
    assert w.reasons().count("AwaitingPromotion") == 1
    d = w.reconcile(w.log[-1][0] + timedelta(seconds=30), action="promote 1")
    assert d.state is not None and d.state.canary is not None and d.state.canary.weight == 50
    d = w.run(until=3600)
    assert d.state is not None and d.state.rollout.phase == "Succeeded"


def test_promote_full_skips_the_remaining_steps() -> None:
    w = World()
    w.run(until=60)
    d = w.reconcile(w.log[-1][0] + timedelta(seconds=30), action="promote-full x")
    assert d.state is not None and d.state.rollout.phase == "Promoting"
    assert d.plan.stable_runs_candidate and d.plan.candidate_weight == 5
    # Promoting waits for the stable track to serve the candidate at full capacity.
    d = w.reconcile(w.log[-1][0] + timedelta(seconds=30), ready=False)
    assert d.state is not None and d.state.rollout.phase == "Promoting"
    d = w.reconcile(w.log[-1][0] + timedelta(seconds=30))
    assert d.state is not None and d.state.rollout.phase == "Succeeded"
    assert w.weights() == [5]


def test_error_spiking_candidate_is_rolled_back_with_numbers() -> None:
    w = World(bad_from=T0 + timedelta(seconds=200))
    d = w.run(until=3600)
    assert d.state is not None and d.state.rollout.phase == "Failed"
    assert d.plan == TrafficPlan(candidate_track="zero")
    assert "errorRate" in d.state.rollout.message and "> 0.001" in d.state.rollout.message
    assert d.state.analysis.failures == 2
    assert w.stable == STABLE
    assert "RolledBack" in w.reasons()


def test_candidate_slower_only_at_p99_is_rolled_back() -> None:
    w = World(slow=True)
    d = w.run(until=3600)
    assert d.state is not None and d.state.rollout.phase == "Failed"
    assert "p99LatencyRatio 1.5 > 1.2" in d.state.rollout.message
    assert w.weights() == [5]


@settings(max_examples=40, deadline=None)
@given(bad_at=st.integers(0, 700), interval=st.sampled_from([30, 60, 120]),
       limit=st.integers(1, 3))
def test_rollback_within_failure_limit_intervals_of_the_first_bad_one(
        bad_at: int, interval: int, limit: int) -> None:
    """With failureLimit 2 (the default), traffic is back on stable at most two analysis
    intervals after the start of the first interval measured bad. Each interval may run one
    reconcile period (10 s here) long: it is judged by the first reconcile after it ends.
    From the onset itself, one more interval: an interval with a sliver of bad traffic can
    still measure under the limit (5% errors for 2 s of 120 s is a 0.08% error rate)."""
    w = World(spec=make_spec(analysis={"interval": f"{interval}s", "failureLimit": limit}),
              bad_from=T0 + timedelta(seconds=bad_at))
    d = w.run(until=7200, every=10)
    assert d.state is not None
    period = interval + 10
    if d.state.rollout.phase == "Succeeded":  # promoted before it turned bad
        promoted_at = next(t for t, x in w.log if x.promoted is not None)
        assert promoted_at <= T0 + timedelta(seconds=bad_at + limit * period + period)
        return
    assert d.state.rollout.phase == "Failed"
    assert d.plan.candidate_weight == 0 and d.plan.candidate_track == "zero"
    rolled_back = w.log[-1][0]
    first_failed_end = next(t for t, x in w.log if x.verdict and x.verdict.result == "Failed")
    first_failed_start = first_failed_end - timedelta(seconds=period)
    assert (rolled_back - first_failed_start).total_seconds() <= limit * period
    assert (rolled_back - (T0 + timedelta(seconds=bad_at))).total_seconds() <= (
        (limit + 1) * period + 10)


def test_no_traffic_is_inconclusive_and_pauses_never_promotes() -> None:
    w = World(qps=0.0)
    d = w.run(until=3600)
    assert d.state is not None
    assert d.state.rollout.phase == "Canary" and d.state.rollout.paused
    assert d.state.rollout.pause_reason == "Inconclusive"
    assert w.weights() == [5]
    assert w.reasons().count("RolloutPaused") == 1
    assert d.state.analysis.inconclusive >= 3 and d.state.analysis.failures == 0
    # Traffic comes back and the SRE resumes: the rollout continues where it was.
    w.qps = 100.0
    d = w.reconcile(w.log[-1][0] + timedelta(seconds=30), action="resume 1")
    assert d.state is not None and not d.state.rollout.paused
    assert d.state.analysis.inconclusive == 0
    d = w.run(until=7200)
    assert d.state is not None and d.state.rollout.phase == "Succeeded"
    assert w.weights() == [5, 25, 50]


def test_counter_resets_never_decide() -> None:
    w = World(resets=True, bad_from=T0)
    d = w.run(until=1800)
    assert d.state is not None and d.state.rollout.phase == "Canary"
    assert d.state.analysis.failures == 0 and d.state.analysis.successes == 0
    assert "AnalysisSkipped" in w.reasons()
    # Unjudged intervals are no progress: after inconclusiveLimit of them the rollout pauses
    # (a candidate restarting every interval does not keep its traffic unjudged for ever).
    assert d.state.rollout.paused and d.state.rollout.pause_reason == "Inconclusive"
    assert w.weights() == [5]


def test_candidate_that_cannot_serve_is_rolled_back_at_once() -> None:
    w = World()
    w.reconcile(T0)
    d = w.reconcile(T0 + timedelta(seconds=30), ready=False,
                    failure="0/1 candidate pods ready: model load failed")
    assert d.state is not None and d.state.rollout.phase == "Failed"
    assert "model load failed" in d.state.rollout.message


def test_waits_for_traffic_before_the_step_clock_starts() -> None:
    w = World()
    w.reconcile(T0)
    for k in range(1, 10):
        d = w.reconcile(T0 + timedelta(seconds=30 * k), ready=False)
    assert d.state is not None and d.state.canary is not None
    assert d.state.canary.step_started_at is None
    assert analysis_window(d.state, w.spec, T0 + timedelta(hours=1)) is None


# -- SRE actions -------------------------------------------------------------------------------
def test_pause_holds_and_resume_continues() -> None:
    w = World()
    w.run(until=100)
    t = w.log[-1][0]
    d = w.reconcile(t + timedelta(seconds=30), action="pause a")
    assert d.state is not None and d.state.rollout.paused
    assert d.state.rollout.pause_reason == "Manual"
    for k in range(2, 40):  # 20 min paused: no step moves, the same annotation is not re-read
        d = w.reconcile(t + timedelta(seconds=30 * k), action="pause a")
    assert d.state is not None and d.state.canary is not None and d.state.canary.step == 0
    assert w.reasons().count("RolloutPaused") == 1
    d = w.reconcile(t + timedelta(seconds=30 * 41), action="resume b")
    d = w.run(until=7200, action="resume b")
    assert d.state is not None and d.state.rollout.phase == "Succeeded"


def test_abort_sends_traffic_back_and_stays_there() -> None:
    w = World()
    w.run(until=400)
    d = w.reconcile(w.log[-1][0] + timedelta(seconds=30), action="abort 1")
    assert d.state is not None and d.state.rollout.phase == "Aborted"
    assert d.plan == TrafficPlan(candidate_track="zero")
    d = w.run(until=3600, action="abort 1")
    assert d.state is not None and d.state.rollout.phase == "Aborted"  # no flapping


def test_retry_restarts_a_failed_candidate_without_a_spec_change() -> None:
    w = World(bad_from=T0)
    d = w.run(until=3600)
    assert d.state is not None and d.state.rollout.phase == "Failed"
    w.bad_from = None
    t = w.log[-1][0] + timedelta(seconds=30)
    d = w.reconcile(t, action="retry 1")
    assert d.state is not None and d.state.rollout.phase == "Canary"
    assert d.state.rollout.attempt == 2 and d.state.canary is not None
    assert d.state.canary.step == 0 and d.state.analysis.failures == 0
    d = w.run(until=7200, action="retry 1")  # the annotation stays; it is not re-applied
    assert d.state is not None and d.state.rollout.phase == "Succeeded"
    assert d.state.rollout.attempt == 2


def test_actions_that_do_not_apply_are_announced_and_ignored() -> None:
    w = World()
    w.reconcile(T0)
    d = w.reconcile(T0 + timedelta(seconds=30), action="retry 1")
    assert [e.reason for e in d.events][:1] == ["ActionIgnored"]
    d = w.reconcile(T0 + timedelta(seconds=60), action="bogus")
    assert d.events[0].reason == "ActionInvalid"
    assert "scorefleet.io/rollout-action='bogus'" in d.events[0].message
    d = w.reconcile(T0 + timedelta(seconds=90), action="bogus")
    assert not [e for e in d.events if e.reason == "ActionInvalid"]


def test_parse_action() -> None:
    assert parse_action("promote-full 2026-01-01T00:00:00Z").verb == "promote-full"
    assert parse_action("pause").verb == "pause"
    with pytest.raises(ValueError, match="expected one of promote, promote-full"):
        parse_action("")


# -- revisions during a rollout ----------------------------------------------------------------
def test_git_change_at_step_two_supersedes_the_running_rollout() -> None:
    w = World()
    while w.state is None or w.state.canary is None or w.state.canary.step < 1:
        w.run(until=(w.log[-1][0] - T0).total_seconds() + 30 if w.log else 0)
    w.spec = make_spec("v3")
    d = w.reconcile(w.log[-1][0] + timedelta(seconds=30))
    assert d.state is not None and d.state.canary is not None
    assert d.state.rollout.revision == desired_revision(make_spec("v3"), IMAGE).hash
    assert d.state.canary.step == 0 and d.state.rollout.phase == "Canary"
    assert d.events[0].reason == "RolloutSuperseded"
    d = w.run(until=7200)
    assert d.state is not None and d.state.rollout.phase == "Succeeded"
    assert w.stable is not None and w.stable.model.version == "v3"


def test_reverting_git_to_stable_cancels_the_rollout() -> None:
    w = World()
    w.run(until=300)
    w.spec = make_spec("v1")
    d = w.reconcile(w.log[-1][0] + timedelta(seconds=30))
    assert d.state is None and d.plan == TrafficPlan()
    assert d.events[0].reason == "RolloutCancelled"


def test_no_rollout_for_the_first_model_or_at_stable() -> None:
    assert World(stable=None).reconcile(T0).state is None
    assert World(spec=make_spec("v1")).reconcile(T0).state is None


# -- shadow ------------------------------------------------------------------------------------
SHADOW = {"duration": "10m", "minSamples": 20000, "sampleRate": 0.5}


def test_good_shadow_then_canary_promotes_and_shadow_takes_no_traffic() -> None:
    w = World(spec=make_spec(strategy="ShadowThenCanary", shadow=SHADOW))
    d = w.run(until=7200)
    assert d.state is not None and d.state.rollout.phase == "Succeeded"
    shadowing = [x for _, x in w.log if x.state and x.state.rollout.phase == "Shadow"]
    assert shadowing and all(x.plan == TrafficPlan(shadow=True) for x in shadowing)
    assert d.state.shadow is not None and d.state.shadow.samples >= 20000
    assert d.state.shadow.agreement == 1.0
    assert w.weights() == [5, 25, 50]
    assert "ShadowPassed" in w.reasons()


def test_shadow_alone_promotes_without_canary_steps() -> None:
    w = World(spec=make_spec(strategy="Shadow", shadow=SHADOW))
    d = w.run(until=7200)
    assert d.state is not None and d.state.rollout.phase == "Succeeded"
    assert w.weights() == []


def test_drifting_candidate_fails_in_shadow_before_taking_any_traffic() -> None:
    w = World(spec=make_spec(strategy="ShadowThenCanary", shadow=SHADOW), drift=True)
    d = w.run(until=7200)
    assert d.state is not None and d.state.rollout.phase == "Failed"
    assert all(x.plan.candidate_weight == 0 for _, x in w.log)
    assert "scoreDrift" in d.state.rollout.message or "agreement" in d.state.rollout.message
    assert d.state.shadow is not None and d.state.shadow.score_drift is not None
    assert d.state.shadow.score_drift > 0.1
    # status.shadow shows the interval that failed it, as status.analysis does.
    assert d.state.shadow.checks == d.state.analysis.checks
    assert d.verdict is not None and d.state.shadow.samples == d.verdict.samples


def test_new_image_cannot_be_shadowed_and_goes_through_the_canary() -> None:
    w = World(spec=make_spec("v1", strategy="Shadow"),
              desired=desired_revision(make_spec("v1"), "scorer:2"))
    d = w.reconcile(T0)
    assert d.state is not None and d.state.rollout.phase == "Canary"


# -- persistence: kill and resume --------------------------------------------------------------
Script = list[tuple[int, str | None, bool]]  # (seconds after previous, action, ready)


def scripted(spec: PipelineSpec, script: Script, roundtrip: bool,
             crash_at: frozenset[int] = frozenset(), **world: Any) -> list[Any]:
    """Run a script; at each index in `crash_at` the operator computes a decision, dies before
    writing it, restarts and reconciles again at the same instant from what was persisted."""
    w = World(spec=spec, roundtrip=roundtrip, **world)
    t = T0
    out = []
    for k, (gap, action, ready) in enumerate(script):
        t += timedelta(seconds=gap)
        if k in crash_at:
            saved, stable = w.state, w.stable
            w.reconcile(t, action=action, ready=ready)
            w.state, w.stable = persist(saved), stable  # the write never happened
            w.log.pop()
        d = w.reconcile(t, action=action, ready=ready)
        out.append((t, d.plan, d.events,
                    PipelineStatus().model_copy(update=RolloutState.status_fields(d.state))
                    .wire()))
    return out


actions = st.sampled_from([None] * 12 + ["pause 1", "resume 2", "promote 3", "abort 4",
                                         "retry 5", "promote-full 6", "pause 7", "resume 8"])
scripts = st.lists(st.tuples(st.integers(5, 400), actions, st.booleans() | st.just(True)),
                   min_size=5, max_size=60)
strategies = st.sampled_from(["Canary", "ShadowThenCanary", "Shadow"])
worlds = st.fixed_dictionaries({"qps": st.sampled_from([0.0, 3.0, 100.0]),
                                "slow": st.booleans(), "drift": st.booleans()})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=scripts, strategy=strategies, world=worlds, data=st.data())
def test_killed_at_any_point_resumes_exactly_where_it_was(
        script: Script, strategy: str, world: dict[str, Any], data: st.DataObject) -> None:
    """The uninterrupted run keeps its state in memory; the killed one keeps nothing but the
    status JSON, and dies (before writing) at arbitrary reconciles. Same story, same status."""
    spec = make_spec(strategy=strategy, shadow={"duration": "3m", "minSamples": 500},
                     analysis={"interval": "30s"})
    crashes = data.draw(st.frozensets(st.integers(0, len(script) - 1)))
    in_memory = scripted(spec, script, roundtrip=False, **world)
    killed = scripted(spec, script, roundtrip=True, crash_at=crashes, **world)
    assert killed == in_memory


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gaps=st.lists(st.integers(1, 900), min_size=10, max_size=80),
       ready=st.lists(st.booleans(), min_size=80, max_size=80))
def test_no_step_is_skipped_or_repeated_whatever_the_reconcile_schedule(
        gaps: list[int], ready: list[bool]) -> None:
    """Reconciles at arbitrary gaps (an operator down for up to 15 minutes) and plans taking
    arbitrarily long to take effect: every step is entered once, in order."""
    steps = [{"weight": 5, "pause": "2m"}, {"weight": 20}, {"weight": 40, "pause": "1m"},
             {"weight": 80}]
    w = World(spec=make_spec(canary={"steps": steps}, analysis={"interval": "1m"}))
    t = T0
    for gap, r in zip(gaps, ready, strict=False):
        t += timedelta(seconds=gap)
        w.reconcile(t, ready=r)
    entered = w.weights()
    assert entered == [5, 20, 40, 80][:len(entered)]
    for _, d in w.log:  # a step is only left after one Successful interval judged in it
        if any(e.reason == "CanaryStepPassed" for e in d.events):
            assert d.verdict is not None and d.verdict.result == "Successful"


def test_traffic_for_each_phase() -> None:
    assert traffic_for(None) == TrafficPlan()
    w = World()
    w.reconcile(T0)
    assert traffic_for(w.state) == TrafficPlan(candidate_weight=5, candidate_track="serving")
