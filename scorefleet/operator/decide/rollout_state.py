"""What the rollout state machine (decide/rollout.py) persists, takes and returns, and the
clock helpers it and the gather step share. Pure.

    RolloutState    status.rollout + .canary + .shadow + .analysis: all a restarted operator
                    needs to resume exactly where the last one stopped
    RolloutInputs   spec, desired and stable revisions, the action annotation, the measured
                    interval, whether the persisted plan is in effect, why the candidate fails
    RolloutDecision the next state, the TrafficPlan it stands for, events, a promotion
    TrafficPlan     what the tracks and the router do for a state (traffic_for)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from scorefleet.api.common import duration_seconds
from scorefleet.api.spec import PipelineSpec
from scorefleet.api.status import (
    AnalysisStatus,
    CanaryStatus,
    PipelineStatus,
    RolloutPhase,
    RolloutStatus,
    ShadowStatus,
)
from scorefleet.operator.decide.analysis import CanaryWindow, ShadowWindow, Verdict
from scorefleet.operator.decide.revision import Revision

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
        # A canary's candidate track is kept at zero replicas, not deleted: a retry starts fast
        # and the pods' events stay. A rollout that ended in shadow never had one to keep.
        return TrafficPlan(candidate_track="zero" if state.canary is not None else "absent")
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


def since(text: str | None, now: datetime) -> float:
    return (now - parse_time(text)).total_seconds() if text else 0.0


def analysis_window(state: RolloutState | None, spec: PipelineSpec,
                    now: datetime) -> datetime | None:
    """Start of the interval to measure now (it ends now), or None when none is due."""
    if state is None or state.rollout.phase not in ("Shadow", "Canary"):
        return None
    start = state.analysis.last_run_at
    if start is None:
        return None  # the phase or step has not started: its traffic is not in effect yet
    due = since(start, now) >= duration_seconds(spec.rollout.analysis.interval)
    return parse_time(start) if due else None
