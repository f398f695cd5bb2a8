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

This module starts rollouts and applies the SRE's actions; the state, inputs and plan it works
on are in rollout_state.py, and progress within a phase (judging, steps, promotion) in
rollout_steps.py.
"""


from __future__ import annotations

from dataclasses import replace

from scorefleet.api.status import RolloutPhase, RolloutStatus, ShadowStatus
from scorefleet.operator.decide.revision import decide_revision
from scorefleet.operator.decide.rollout_state import (
    ACTION_ANNOTATION,
    ACTIVE,
    STABLE_ONLY,
    TERMINAL,
    VERBS,
    Action,
    CandidateTrack,
    InvalidAction,
    RolloutDecision,
    RolloutEvent,
    RolloutInputs,
    RolloutState,
    TrafficPlan,
    Verb,
    analysis_window,
    parse_action,
    parse_time,
    stamp,
    traffic_for,
)
from scorefleet.operator.decide.rollout_steps import (
    Run,
    advance,
    canary_phase,
    promote,
    shadow_phase,
    step_status,
    where,
)

__all__ = ["ACTION_ANNOTATION", "ACTIVE", "TERMINAL", "VERBS", "Action", "CandidateTrack",
           "InvalidAction", "RolloutDecision", "RolloutEvent", "RolloutInputs", "RolloutState",
           "TrafficPlan", "Verb", "analysis_window", "decide_rollout", "parse_action",
           "parse_time", "stamp", "traffic_for"]


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
    run = Run(i, state)
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
        shadow_phase(run)
    elif run.r.phase == "Canary":
        canary_phase(run)
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
    return RolloutState(rollout=rollout, canary=step_status(i.spec, 0))


# -- actions -----------------------------------------------------------------------------------
def _act(run: Run, action: Action) -> None:
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
        run.emit("Normal", "RolloutPaused", f"paused by hand in {where(run)}")
    elif verb == "resume":
        if not run.r.paused:
            run.emit("Normal", "ActionIgnored", "resume: ignored, the rollout is not paused")
            return
        run.state = replace(run.state, analysis=run.state.analysis.model_copy(
            update={"inconclusive": 0}))
        run.set(paused=False, pause_reason=None, message=f"resumed in {where(run)}")
        run.emit("Normal", "RolloutResumed", f"resumed in {where(run)}")
    elif verb == "promote":
        run.set(paused=False, pause_reason=None)
        advance(run, "promoted by hand")
    elif verb == "promote-full":
        run.set(paused=False, pause_reason=None)
        promote(run, "promoted by hand (--full), remaining steps skipped")
    else:  # retry on an active rollout
        run.emit("Normal", "ActionIgnored",
                 "retry: ignored, applies to a Failed or Aborted rollout")
