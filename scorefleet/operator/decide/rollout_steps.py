"""Progress within a rollout phase, one reconcile at a time: the decision being built (`Run`),
judging the due interval, the shadow and canary phases, moving to the next step, promoting.
Pure; decide/rollout.py draws the machine and owns starts and actions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from scorefleet.api.common import duration_seconds
from scorefleet.api.spec import CanaryStep, PipelineSpec
from scorefleet.api.status import CanaryStatus, RolloutPhase, RolloutStatus, ShadowStatus
from scorefleet.operator.decide.analysis import (
    CanaryWindow,
    Outcome,
    ShadowWindow,
    Verdict,
    judge_canary,
    judge_shadow,
    tally,
)
from scorefleet.operator.decide.revision import Revision
from scorefleet.operator.decide.rollout_state import (
    RolloutDecision,
    RolloutEvent,
    RolloutInputs,
    RolloutState,
    analysis_window,
    parse_time,
    since,
    stamp,
    traffic_for,
)


class Run:
    """One decision being built: the state so far and the events it caused."""

    def __init__(self, i: RolloutInputs, state: RolloutState) -> None:
        self.i = i
        self.state = state
        self.events: list[RolloutEvent] = []
        self.promoted: Revision | None = None
        self.verdict: Verdict | None = None
        # A step or phase was entered: this reconcile's observations (`ready`) describe the
        # previous plan, so nothing else may happen until the next reconcile sees the new one.
        self.moved = False

    @property
    def r(self) -> RolloutStatus:
        return self.state.rollout

    def set(self, **changes: object) -> None:
        self.state = replace(self.state, rollout=self.r.model_copy(update=changes))

    def emit(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(RolloutEvent(type_, reason, message))

    def finish(self, phase: RolloutPhase, reason: str, message: str) -> None:
        self.moved = True
        self.set(phase=phase, finished_at=stamp(self.i.now), paused=False, pause_reason=None,
                 message=message)
        self.emit("Normal" if phase == "Succeeded" else "Warning", reason, message)

    def decision(self) -> RolloutDecision:
        return RolloutDecision(self.state, traffic_for(self.state), tuple(self.events),
                               self.promoted, self.verdict)


def step_status(spec: PipelineSpec, index: int) -> CanaryStatus:
    """Canary step `index` as entered: its weight, its clock not started."""
    return CanaryStatus(step=index, weight=spec.rollout.canary.steps[index].weight)


def where(run: Run) -> str:
    c = run.state.canary
    if run.r.phase == "Canary" and c is not None:
        steps = len(run.i.spec.rollout.canary.steps)
        return f"canary step {c.step + 1}/{steps} at {c.weight}%"
    return run.r.phase.lower()


# -- progress ----------------------------------------------------------------------------------
def judge(run: Run) -> Outcome | None:
    """Judge the due interval, if one is due and was measured; None = nothing judged."""
    i, spec = run.i, run.i.spec.rollout
    start = analysis_window(run.state, i.spec, i.now)
    if start is None or i.measurement is None:
        return None
    m = i.measurement
    if isinstance(m, ShadowWindow) and run.r.phase == "Shadow":
        verdict = judge_shadow(spec.shadow, spec.analysis.min_request_count, m)
    elif isinstance(m, CanaryWindow) and run.r.phase == "Canary":
        verdict = judge_canary(spec.analysis, i.spec.slo, m, stream=i.spec.source is not None)
    else:
        return None  # a measurement of another phase's kind: not this interval's
    analysis, outcome = tally(run.state.analysis, verdict, spec.analysis, stamp(i.now))
    run.state = replace(run.state, analysis=analysis)
    run.verdict = verdict
    if verdict.result is None:
        run.emit("Normal", "AnalysisSkipped", f"{where(run)}: {verdict.summary()}")
    elif verdict.result == "Failed":
        run.emit("Warning", "AnalysisFailed",
                 f"{where(run)}: interval failed ({analysis.failures}/"
                 f"{spec.analysis.failure_limit}): {verdict.summary()}")
    elif verdict.result == "Inconclusive":
        run.emit("Normal", "AnalysisInconclusive",
                 f"{where(run)}: inconclusive ({analysis.inconclusive}/"
                 f"{spec.analysis.inconclusive_limit} in a row): {verdict.summary()}")
    if outcome == "Fail":
        run.finish("Failed", "RolledBack",
                   f"rolled back in {where(run)} after {analysis.failures} failed intervals: "
                   f"{verdict.summary()}")
    elif outcome == "Pause" and not run.r.paused:
        run.set(paused=True, pause_reason="Inconclusive",
                message=f"paused: {analysis.inconclusive} inconclusive intervals in a row "
                        f"({verdict.summary()}); resume once traffic flows")
        run.emit("Warning", "RolloutPaused", run.r.message)
    return outcome


def shadow_phase(run: Run) -> None:
    i, spec = run.i, run.i.spec.rollout.shadow
    shadow = run.state.shadow or ShadowStatus()
    if shadow.started_at is None:
        if not i.ready:
            run.set(message="waiting for the stable scorers to load the shadow model")
            return
        shadow = shadow.model_copy(update={"started_at": stamp(i.now)})
        run.state = replace(run.state, shadow=shadow, analysis=run.state.analysis.model_copy(
            update={"last_run_at": stamp(i.now)}))
        run.set(message=f"shadow of {i.desired.describe()} scoring beside the stable model")
        run.emit("Normal", "ShadowStarted", run.r.message)
        return
    judge(run)
    # Before the phase check: the interval that fails the shadow is the one status.shadow
    # must show, beside the rollback's message (it showed the interval before).
    if run.verdict is not None:
        v = run.verdict
        shadow = shadow.model_copy(update={
            "samples": max(shadow.samples, v.samples) if v.result else shadow.samples,
            "agreement": v.agreement if v.agreement is not None else shadow.agreement,
            "score_drift": v.score_drift if v.score_drift is not None else shadow.score_drift,
            "checks": list(v.checks)})
        run.state = replace(run.state, shadow=shadow)
    if run.r.phase != "Shadow":
        return
    # Up to the end of the last judged interval, as for canary pauses.
    judged = run.state.analysis.last_run_at
    elapsed = since(shadow.started_at, parse_time(judged)) if judged else 0.0
    duration = duration_seconds(spec.duration)
    done = (elapsed >= duration and shadow.samples >= spec.min_samples
            and run.state.analysis.last_result == "Successful")
    if run.r.paused:
        return
    if done:
        advance(run, f"shadow passed: {shadow.samples} pairs over {elapsed:.0f}s, "
                      f"agreement {shadow.agreement}, drift {shadow.score_drift}")
    else:
        run.set(message=f"shadow: {shadow.samples}/{spec.min_samples} pairs, "
                        f"{elapsed:.0f}/{duration:.0f}s")


def canary_phase(run: Run) -> None:
    i = run.i
    canary = run.state.canary or step_status(i.spec, 0)
    steps = i.spec.rollout.canary.steps
    if canary.step >= len(steps):  # the spec lost steps mid-rollout: the rest is done
        promote(run, f"step {canary.step + 1} no longer exists in spec.rollout.canary.steps")
        return
    step = steps[canary.step]
    if canary.step_started_at is None:
        if not i.ready:
            run.set(message=f"{where(run)}: waiting for the candidate's traffic to be in "
                            "effect")
            return
        canary = canary.model_copy(update={"step_started_at": stamp(i.now)})
        run.state = replace(run.state, canary=canary, analysis=run.state.analysis.model_copy(
            update={"last_run_at": stamp(i.now)}))
        run.set(message=f"{where(run)}: analysing")
        run.emit("Normal", "CanaryStep", f"{where(run)}: traffic in effect, analysing")
        return
    judge(run)
    if run.r.phase != "Canary":
        return
    if run.verdict is not None and run.verdict.result == "Successful":
        canary = canary.model_copy(update={"step_successes": canary.step_successes + 1})
        run.state = replace(run.state, canary=canary)
    if run.r.paused:
        return
    if canary.step_successes < 1 or run.state.analysis.last_result != "Successful":
        run.set(message=f"{where(run)}: analysing ({canary.step_successes} successful "
                        "intervals in this step)")
        return
    if step.manual_gate:
        if not canary.awaiting_promotion:
            run.state = replace(run.state, canary=canary.model_copy(
                update={"awaiting_promotion": True}))
            run.set(message=f"{where(run)}: analysis passed; waiting for promote")
            run.emit("Normal", "AwaitingPromotion", run.r.message)
        return
    left = pause_left(step, canary, run.state.analysis.last_run_at)
    if left > 0:
        run.set(message=f"{where(run)}: pausing, {left:.0f}s more to analyse")
        return
    advance(run, f"step passed ({canary.step_successes} successful intervals)")


def pause_left(step: CanaryStep, canary: CanaryStatus, judged_until: str | None) -> float:
    """Pause still to analyse. Counted to the end of the last judged interval, not to now: a
    step ends right after a Successful interval, so no traffic since then goes unjudged."""
    if step.pause is None:
        return 0.0
    if judged_until is None:
        return duration_seconds(step.pause)
    return duration_seconds(step.pause) - since(canary.step_started_at, parse_time(judged_until))


def advance(run: Run, why: str) -> None:
    """Leave the current step or phase for the next one."""
    run.moved = True
    spec = run.i.spec.rollout
    analysis = run.state.analysis.model_copy(update={"last_run_at": None, "inconclusive": 0,
                                                     "last_result": None})
    if run.r.phase == "Shadow":
        if run.r.strategy == "ShadowThenCanary":
            run.state = replace(run.state, canary=step_status(run.i.spec, 0), analysis=analysis)
            run.set(phase="Canary", message=f"{why}; canary step 1 next")
            run.emit("Normal", "ShadowPassed", run.r.message)
        else:
            promote(run, why)
        return
    canary = run.state.canary or step_status(run.i.spec, 0)
    if canary.step + 1 < len(spec.canary.steps):
        before = where(run)
        run.state = replace(run.state, canary=step_status(run.i.spec, canary.step + 1),
                            analysis=analysis)
        run.set(message=f"{before} {why}; next {where(run)}")
        run.emit("Normal", "CanaryStepPassed", run.r.message)
    else:
        promote(run, why)


def promote(run: Run, why: str) -> None:
    run.moved = True
    here = where(run)
    run.set(phase="Promoting", paused=False, pause_reason=None,
            message=f"{here}: {why}; promoting: the stable track takes the candidate "
                    "revision at full capacity before the switch")
    if run.state.canary is not None:
        run.state = replace(run.state, canary=run.state.canary.model_copy(
            update={"awaiting_promotion": False}))
    run.emit("Normal", "Promoting", run.r.message)
