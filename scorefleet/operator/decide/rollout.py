"""The rollout state machine: pure, persisted entirely in status, resumable at any point.

    spec revision != stable revision (decide/revision.py)
        |
        +-- strategy Shadow / ShadowThenCanary, and only the model differs ----> Shadow
        +-- otherwise (Canary, or a new image the stable pods cannot shadow) ---> Canary step 0
                                                                                      |
    Shadow: candidate scores a sample of the stable pods' own requests (no traffic).  |
       waits for the shadow to be loaded, then one verdict per interval;              |
       done when duration has passed, minSamples pairs were compared and the last     |
       interval was Successful (or `promote`) ----> ShadowThenCanary: Canary step 0 --+
                                              \\---> Shadow: Promoting                  |
                                                                                       v
    Canary step i (weight w_i): waits until the split is in effect, then one verdict per
       interval; a step is done after >= 1 Successful interval with the last one Successful,
       and then: its judged intervals cover `pause` | at a manual gate, `promote` |
       neither: at once (one interval analysed). Last step done, or `promote --full`:
                                                                                       v
    Promoting: the stable track runs the candidate revision at full replicas, the split
       unchanged; once the stable track serves it at full capacity ----------> Succeeded
       (the stable revision is now the candidate's; the candidate track is removed)

    Shadow | Canary | Promoting --(failureLimit Failed intervals, or candidate unhealthy)--> Failed
    Shadow | Canary | Promoting --(abort)--> Aborted
    Failed | Aborted --(retry)--> started again, attempt + 1; any --(newer revision)--> superseded
    paused (`pause`, or inconclusiveLimit Inconclusive intervals in a row): intervals are still
       judged (a failing candidate is still rolled back) but nothing advances until `resume`.

Failed, Aborted and Succeeded are terminal: traffic is on the stable track and stays there (no
flapping); only a new revision or `retry` starts again.

Everything the machine needs is in the persisted RolloutState, and every step is a function of
(state, inputs, now). Each reconcile does at most one of: start a rollout, start the current
step (its traffic is in effect), judge one interval and move at most one step. An operator killed
between any two reconciles therefore resumes exactly there: a step is entered only by the
reconcile that persists it, and its clock starts only when its traffic was seen in effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from scorefleet.api.common import duration_seconds
from scorefleet.api.spec import CanaryStep, PipelineSpec
from scorefleet.api.status import (
    AnalysisStatus,
    CanaryStatus,
    PipelineStatus,
    RolloutPhase,
    RolloutStatus,
    ShadowStatus,
)
from scorefleet.operator.decide.analysis import (
    CanaryWindow,
    Outcome,
    ShadowWindow,
    Verdict,
    judge_canary,
    judge_shadow,
    tally,
)
from scorefleet.operator.decide.revision import Revision, decide_revision

ACTION_ANNOTATION = "scorefleet.io/rollout-action"
Verb = Literal["promote", "promote-full", "pause", "resume", "abort", "retry"]
VERBS: tuple[Verb, ...] = ("promote", "promote-full", "pause", "resume", "abort", "retry")
ACTIVE: tuple[RolloutPhase, ...] = ("Shadow", "Canary", "Promoting")
TERMINAL: tuple[RolloutPhase, ...] = ("Succeeded", "Failed", "Aborted")


# -- state and actions -------------------------------------------------------------------------
@dataclass(frozen=True)
class RolloutState:
    """What is persisted: status.rollout, status.canary, status.shadow, status.analysis."""

    rollout: RolloutStatus
    canary: CanaryStatus | None = None
    shadow: ShadowStatus | None = None
    analysis: AnalysisStatus = field(default_factory=AnalysisStatus)

    @classmethod
    def from_status(cls, status: PipelineStatus) -> RolloutState | None:
        if status.rollout is None:
            return None
        return cls(rollout=status.rollout, canary=status.canary, shadow=status.shadow,
                   analysis=status.analysis or AnalysisStatus())

    @staticmethod
    def status_fields(state: RolloutState | None) -> dict[str, object]:
        """The PipelineStatus fields this state owns (all None when no rollout is on record)."""
        if state is None:
            return {"rollout": None, "canary": None, "shadow": None, "analysis": None}
        return {"rollout": state.rollout, "canary": state.canary, "shadow": state.shadow,
                "analysis": state.analysis}


@dataclass(frozen=True)
class Action:
    verb: Verb
    raw: str


class InvalidAction(ValueError):
    pass


def parse_action(value: str) -> Action:
    """`<verb>[ <request id>]`: the CLI writes a fresh id each time; Git-only teams change the
    id (any text) to ask again. Only a value different from the last handled one is new."""
    verb = value.strip().split(" ", 1)[0] if value.strip() else ""
    if verb not in VERBS:
        raise InvalidAction(f"annotation {ACTION_ANNOTATION}={value!r}: unknown action "
                            f"{verb!r}; expected one of {', '.join(VERBS)}")
    return Action(verb=verb, raw=value)


# -- plan --------------------------------------------------------------------------------------
CandidateTrack = Literal["absent", "zero", "serving"]


@dataclass(frozen=True)
class TrafficPlan:
    """What the tracks and the router should do now."""

    candidate_weight: int = 0  # percent of live requests for the candidate track
    candidate_track: CandidateTrack = "absent"
    shadow: bool = False  # the stable pods also score a sample with the candidate's model
    stable_runs_candidate: bool = False  # Promoting: the stable track runs the candidate


STABLE_ONLY = TrafficPlan()


def traffic_for(state: RolloutState | None) -> TrafficPlan:
    """The plan a persisted state stands for (the gather step judges `ready` against it)."""
    if state is None:
        return STABLE_ONLY
    phase = state.rollout.phase
    if phase == "Shadow":
        return TrafficPlan(shadow=True)
    if phase in ("Canary", "Promoting"):
        weight = state.canary.weight if state.canary else 0
        return TrafficPlan(candidate_weight=weight,
                           candidate_track="serving" if weight or phase == "Canary" else "absent",
                           stable_runs_candidate=phase == "Promoting")
    if phase in ("Failed", "Aborted"):
        # Kept at zero replicas, not deleted: a retry starts fast and the pods' events stay.
        return TrafficPlan(candidate_track="zero")
    return STABLE_ONLY


@dataclass(frozen=True)
class RolloutEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class RolloutInputs:
    spec: PipelineSpec
    desired: Revision
    stable: Revision | None
    state: RolloutState | None
    now: datetime
    # Value of the action annotation (None = unset); acted on once per distinct value.
    action: str | None = None
    # Measurements of the interval analysis_window() asked for; None = not measured now.
    measurement: CanaryWindow | ShadowWindow | None = None
    # The persisted state's plan is in effect: Shadow: the stable pods loaded the shadow;
    # Canary: the candidate track's replicas are available and the route is applied;
    # Promoting: the stable track serves the candidate revision with all its replicas.
    ready: bool = False
    # Why the candidate cannot serve (pods failing, model not loading), if it cannot.
    candidate_failure: str | None = None


@dataclass(frozen=True)
class RolloutDecision:
    state: RolloutState | None
    plan: TrafficPlan
    events: tuple[RolloutEvent, ...] = ()
    # The stable revision changed (a promotion completed): persist it.
    promoted: Revision | None = None
    verdict: Verdict | None = None


# -- time --------------------------------------------------------------------------------------
def stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _since(text: str | None, now: datetime) -> float:
    return (now - parse_time(text)).total_seconds() if text else 0.0


def analysis_window(state: RolloutState | None, spec: PipelineSpec,
                    now: datetime) -> datetime | None:
    """Start of the interval to measure now (it ends now), or None when none is due."""
    if state is None or state.rollout.phase not in ("Shadow", "Canary"):
        return None
    start = state.analysis.last_run_at
    if start is None:
        return None  # the phase or step has not started: its traffic is not in effect yet
    due = _since(start, now) >= duration_seconds(spec.rollout.analysis.interval)
    return parse_time(start) if due else None


# -- the machine -------------------------------------------------------------------------------
class _Run:
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


def decide_rollout(i: RolloutInputs) -> RolloutDecision:
    """The next rollout state, the traffic plan and the transitions to announce."""
    state = i.state
    new_action = i.action if i.action and (state is None or
                                           i.action != state.rollout.handled_action) else None
    action: Action | None = None
    invalid: str | None = None
    if new_action is not None:
        try:
            action = parse_action(new_action)
        except InvalidAction as exc:
            invalid = str(exc)

    rev = decide_revision(i.desired, i.stable, state.rollout if state else None,
                          retry=action is not None and action.verb == "retry")
    if rev.outcome == "NoRollout":
        return RolloutDecision(state, traffic_for(state) if state else STABLE_ONLY)
    if rev.outcome == "Reverted":
        return RolloutDecision(None, STABLE_ONLY, (RolloutEvent("Normal", "RolloutCancelled",
                                                                rev.message),))
    if rev.starts:
        attempt = state.rollout.attempt + 1 if rev.outcome == "Retry" and state else 1
        started = _start(i, attempt, handled=i.action)
        reason = {"Start": "RolloutStarted", "Supersede": "RolloutSuperseded",
                  "Retry": "RolloutRetried"}[rev.outcome]
        first = started.rollout.phase
        events = (RolloutEvent("Normal", reason, f"{rev.message}; {first.lower()} first"),)
        return RolloutDecision(started, traffic_for(started), events)

    assert state is not None  # Continue always has a state
    run = _Run(i, state)
    if new_action is not None:
        run.set(handled_action=new_action)
        if invalid is not None:
            run.emit("Warning", "ActionInvalid", invalid)
        elif action is not None:
            _act(run, action)
    if run.r.phase in ACTIVE and i.candidate_failure:
        run.finish("Failed", "CandidateUnhealthy",
                   f"rolled back: candidate cannot serve: {i.candidate_failure}")
    if run.moved:
        pass
    elif run.r.phase == "Shadow":
        _shadow(run)
    elif run.r.phase == "Canary":
        _canary(run)
    elif run.r.phase == "Promoting" and i.ready:
        run.promoted = i.desired
        run.finish("Succeeded", "RolloutSucceeded",
                   f"{i.desired.describe()} promoted: the stable track serves it at full "
                   "capacity; candidate track removed")
    return run.decision()


def _first_phase(i: RolloutInputs) -> RolloutPhase:
    wants_shadow = i.spec.rollout.strategy in ("Shadow", "ShadowThenCanary")
    # In-pod shadow scores with a second model in the same scorer process: a new image or
    # scorer setting cannot be tried that way, so such revisions go through the canary steps.
    can_shadow = i.stable is not None and i.desired.same_scorer(i.stable)
    return "Shadow" if wants_shadow and can_shadow else "Canary"


def _start(i: RolloutInputs, attempt: int, handled: str | None) -> RolloutState:
    phase = _first_phase(i)
    rollout = RolloutStatus(
        revision=i.desired.hash, strategy=i.spec.rollout.strategy, phase=phase, attempt=attempt,
        started_at=stamp(i.now), handled_action=handled,
        message=f"{phase.lower()} of {i.desired.describe()} starting")
    if phase == "Shadow":
        return RolloutState(rollout=rollout, shadow=ShadowStatus())
    return RolloutState(rollout=rollout, canary=_step(i.spec, 0))


def _step(spec: PipelineSpec, index: int) -> CanaryStatus:
    return CanaryStatus(step=index, weight=spec.rollout.canary.steps[index].weight)


# -- actions -----------------------------------------------------------------------------------
def _act(run: _Run, action: Action) -> None:
    phase, verb = run.r.phase, action.verb
    if phase in TERMINAL or (phase == "Promoting" and verb not in ("abort",)):
        why = ("retry applies to a Failed or Aborted rollout" if verb == "retry"
               else f"the rollout is {phase}")
        run.emit("Warning", "ActionIgnored", f"{verb}: ignored, {why}")
        return
    if verb == "abort":
        run.finish("Aborted", "RolloutAborted",
                   f"aborted by {ACTION_ANNOTATION}: traffic back on the stable track")
    elif verb == "pause":
        run.set(paused=True, pause_reason="Manual", message="paused by hand")
        run.emit("Normal", "RolloutPaused", f"paused by hand in {_where(run)}")
    elif verb == "resume":
        if not run.r.paused:
            run.emit("Normal", "ActionIgnored", "resume: ignored, the rollout is not paused")
            return
        run.state = replace(run.state, analysis=run.state.analysis.model_copy(
            update={"inconclusive": 0}))
        run.set(paused=False, pause_reason=None, message=f"resumed in {_where(run)}")
        run.emit("Normal", "RolloutResumed", f"resumed in {_where(run)}")
    elif verb == "promote":
        run.set(paused=False, pause_reason=None)
        _advance(run, "promoted by hand")
    elif verb == "promote-full":
        run.set(paused=False, pause_reason=None)
        _promote(run, "promoted by hand (--full), remaining steps skipped")
    else:  # retry on an active rollout
        run.emit("Normal", "ActionIgnored",
                 "retry: ignored, applies to a Failed or Aborted rollout")


def _where(run: _Run) -> str:
    c = run.state.canary
    if run.r.phase == "Canary" and c is not None:
        steps = len(run.i.spec.rollout.canary.steps)
        return f"canary step {c.step + 1}/{steps} at {c.weight}%"
    return run.r.phase.lower()


# -- progress ----------------------------------------------------------------------------------
def _judge(run: _Run) -> Outcome | None:
    """Judge the due interval, if one is due and was measured; None = nothing judged."""
    i, spec = run.i, run.i.spec.rollout
    start = analysis_window(run.state, i.spec, i.now)
    if start is None or i.measurement is None:
        return None
    m = i.measurement
    if isinstance(m, ShadowWindow) and run.r.phase == "Shadow":
        verdict = judge_shadow(spec.shadow, spec.analysis.min_request_count, m)
    elif isinstance(m, CanaryWindow) and run.r.phase == "Canary":
        verdict = judge_canary(spec.analysis, i.spec.slo, m)
    else:
        return None  # a measurement of another phase's kind: not this interval's
    analysis, outcome = tally(run.state.analysis, verdict, spec.analysis, stamp(i.now))
    run.state = replace(run.state, analysis=analysis)
    run.verdict = verdict
    if verdict.result is None:
        run.emit("Normal", "AnalysisSkipped", f"{_where(run)}: {verdict.summary()}")
    elif verdict.result == "Failed":
        run.emit("Warning", "AnalysisFailed",
                 f"{_where(run)}: interval failed ({analysis.failures}/"
                 f"{spec.analysis.failure_limit}): {verdict.summary()}")
    elif verdict.result == "Inconclusive":
        run.emit("Normal", "AnalysisInconclusive",
                 f"{_where(run)}: inconclusive ({analysis.inconclusive}/"
                 f"{spec.analysis.inconclusive_limit} in a row): {verdict.summary()}")
    if outcome == "Fail":
        run.finish("Failed", "RolledBack",
                   f"rolled back in {_where(run)} after {analysis.failures} failed intervals: "
                   f"{verdict.summary()}")
    elif outcome == "Pause" and not run.r.paused:
        run.set(paused=True, pause_reason="Inconclusive",
                message=f"paused: {analysis.inconclusive} inconclusive intervals in a row "
                        f"({verdict.summary()}); resume once traffic flows")
        run.emit("Warning", "RolloutPaused", run.r.message)
    return outcome


def _shadow(run: _Run) -> None:
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
    _judge(run)
    if run.r.phase != "Shadow":
        return
    if run.verdict is not None:
        v = run.verdict
        shadow = shadow.model_copy(update={
            "samples": max(shadow.samples, v.samples) if v.result else shadow.samples,
            "agreement": v.agreement if v.agreement is not None else shadow.agreement,
            "score_drift": v.score_drift if v.score_drift is not None else shadow.score_drift,
            "checks": list(v.checks)})
        run.state = replace(run.state, shadow=shadow)
    # Up to the end of the last judged interval, as for canary pauses.
    judged = run.state.analysis.last_run_at
    elapsed = _since(shadow.started_at, parse_time(judged)) if judged else 0.0
    duration = duration_seconds(spec.duration)
    done = (elapsed >= duration and shadow.samples >= spec.min_samples
            and run.state.analysis.last_result == "Successful")
    if run.r.paused:
        return
    if done:
        _advance(run, f"shadow passed: {shadow.samples} pairs over {elapsed:.0f}s, "
                      f"agreement {shadow.agreement}, drift {shadow.score_drift}")
    else:
        run.set(message=f"shadow: {shadow.samples}/{spec.min_samples} pairs, "
                        f"{elapsed:.0f}/{duration:.0f}s")


def _canary(run: _Run) -> None:
    i = run.i
    canary = run.state.canary or _step(i.spec, 0)
    steps = i.spec.rollout.canary.steps
    if canary.step >= len(steps):  # the spec lost steps mid-rollout: the rest is done
        _promote(run, f"step {canary.step + 1} no longer exists in spec.rollout.canary.steps")
        return
    step = steps[canary.step]
    if canary.step_started_at is None:
        if not i.ready:
            run.set(message=f"{_where(run)}: waiting for the candidate's traffic to be in "
                            "effect")
            return
        canary = canary.model_copy(update={"step_started_at": stamp(i.now)})
        run.state = replace(run.state, canary=canary, analysis=run.state.analysis.model_copy(
            update={"last_run_at": stamp(i.now)}))
        run.set(message=f"{_where(run)}: analysing")
        run.emit("Normal", "CanaryStep", f"{_where(run)}: traffic in effect, analysing")
        return
    _judge(run)
    if run.r.phase != "Canary":
        return
    if run.verdict is not None and run.verdict.result == "Successful":
        canary = canary.model_copy(update={"step_successes": canary.step_successes + 1})
        run.state = replace(run.state, canary=canary)
    if run.r.paused:
        return
    if canary.step_successes < 1 or run.state.analysis.last_result != "Successful":
        run.set(message=f"{_where(run)}: analysing ({canary.step_successes} successful "
                        "intervals in this step)")
        return
    if step.manual_gate:
        if not canary.awaiting_promotion:
            run.state = replace(run.state, canary=canary.model_copy(
                update={"awaiting_promotion": True}))
            run.set(message=f"{_where(run)}: analysis passed; waiting for promote")
            run.emit("Normal", "AwaitingPromotion", run.r.message)
        return
    left = _pause_left(step, canary, run.state.analysis.last_run_at)
    if left > 0:
        run.set(message=f"{_where(run)}: pausing, {left:.0f}s more to analyse")
        return
    _advance(run, f"step passed ({canary.step_successes} successful intervals)")


def _pause_left(step: CanaryStep, canary: CanaryStatus, judged_until: str | None) -> float:
    """Pause still to analyse. Counted to the end of the last judged interval, not to now: a
    step ends right after a Successful interval, so no traffic since then goes unjudged."""
    if step.pause is None:
        return 0.0
    if judged_until is None:
        return duration_seconds(step.pause)
    return duration_seconds(step.pause) - _since(canary.step_started_at, parse_time(judged_until))


def _advance(run: _Run, why: str) -> None:
    """Leave the current step or phase for the next one."""
    run.moved = True
    spec = run.i.spec.rollout
    analysis = run.state.analysis.model_copy(update={"last_run_at": None, "inconclusive": 0,
                                                     "last_result": None})
    if run.r.phase == "Shadow":
        if run.r.strategy == "ShadowThenCanary":
            run.state = replace(run.state, canary=_step(run.i.spec, 0), analysis=analysis)
            run.set(phase="Canary", message=f"{why}; canary step 1 next")
            run.emit("Normal", "ShadowPassed", run.r.message)
        else:
            _promote(run, why)
        return
    canary = run.state.canary or _step(run.i.spec, 0)
    if canary.step + 1 < len(spec.canary.steps):
        before = _where(run)
        run.state = replace(run.state, canary=_step(run.i.spec, canary.step + 1),
                            analysis=analysis)
        run.set(message=f"{before} {why}; next {_where(run)}")
        run.emit("Normal", "CanaryStepPassed", run.r.message)
    else:
        _promote(run, why)


def _promote(run: _Run, why: str) -> None:
    run.moved = True
    where = _where(run)
    run.set(phase="Promoting", paused=False, pause_reason=None,
            message=f"{where}: {why}; promoting: the stable track takes the candidate "
                    "revision at full capacity before the switch")
    if run.state.canary is not None:
        run.state = replace(run.state, canary=run.state.canary.model_copy(
            update={"awaiting_promotion": False}))
    run.emit("Normal", "Promoting", run.r.message)
