"""Deciding a pipeline's status from what was observed: a pure function, clock injected.

    Pending --(stable scorers available)--> Ready --(spec change rolls pods)--> Progressing
       ^                                      |  ^                                  |
       |                                      |  +-------(rolled out)---------------+
       +-- children applied, none ready yet   +--(apply fails / rollout stuck)--> Degraded

Conditions follow Kubernetes conventions: `Ready`, `Progressing`, `Degraded`, each with a
CamelCase reason and a message carrying the measured numbers. A condition's
lastTransitionTime only moves when its status does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import ModelRef
from scorefleet.api.status import (
    Condition,
    ConditionStatus,
    MeasuredMetrics,
    ModelIdentity,
    Phase,
    PipelineStatus,
    ReplicaStatus,
    TrackMetrics,
    TrackReplicas,
)


@dataclass(frozen=True)
class DeploymentState:
    """The parts of a Deployment's spec and status that decide readiness."""

    generation: int
    observed_generation: int
    desired: int
    updated: int
    ready: int
    available: int
    deadline_exceeded: bool

    @property
    def rolled_out(self) -> bool:
        return (self.observed_generation >= self.generation
                and self.updated >= self.desired and self.available >= self.desired)


@dataclass(frozen=True)
class Observed:
    """Everything gathered for one reconcile of one pipeline."""

    stable: DeploymentState | None
    apply_error: str | None = None
    # Measured from Prometheus on this reconcile; None = not measured now (keep the last).
    stable_metrics: TrackMetrics | None = None


@dataclass(frozen=True)
class Transition:
    """A change worth a log line and a Kubernetes Event."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def model_identity(model: ModelRef) -> ModelIdentity:
    return ModelIdentity(name=model.name, version=model.version, uri=model.uri,
                         sha256=model.sha256, threshold=model.threshold)


def _condition(type_: str, status: ConditionStatus, reason: str, message: str,
               generation: int, previous: dict[str, Condition], now: datetime) -> Condition:
    old = previous.get(type_)
    since = old.last_transition_time if old is not None and old.status == status else None
    return Condition(
        type=type_, status=status, reason=reason, message=message,
        last_transition_time=since or timestamp(now),
        observed_generation=generation,
    )


def _conditions(observed: Observed, desired: int, generation: int,
                previous: dict[str, Condition], now: datetime) -> list[Condition]:
    dep = observed.stable
    ready_count = dep.ready if dep else 0
    ready: tuple[ConditionStatus, str, str]
    progressing: tuple[ConditionStatus, str, str]
    degraded: tuple[ConditionStatus, str, str]
    if dep is not None and dep.rolled_out:
        ready = ("True", "ScorersReady", f"{dep.available}/{desired} stable scorers available")
        progressing = ("False", "RolledOut", f"stable track at generation {dep.generation}")
    else:
        ready = ("False", "ScorersNotReady",
                 f"{ready_count}/{desired} stable scorers ready"
                 + ("" if dep else "; stable Deployment not created yet"))
        progressing = ("True", "ScorersUpdating",
                       f"{dep.updated if dep else 0}/{desired} stable scorers updated")
    if observed.apply_error:
        degraded = ("True", "ApplyFailed", observed.apply_error)
    elif dep is not None and dep.deadline_exceeded:
        degraded = ("True", "ProgressDeadlineExceeded",
                    f"stable Deployment made no progress: {ready_count}/{desired} ready")
    else:
        degraded = ("False", "AsExpected", "")
    return [_condition(type_, status, reason, message, generation, previous, now)
            for type_, (status, reason, message) in (("Ready", ready),
                                                      ("Progressing", progressing),
                                                      ("Degraded", degraded))]


def _phase(conditions: dict[str, Condition], previous_phase: Phase) -> Phase:
    if conditions["Degraded"].status == "True":
        return "Degraded"
    if conditions["Ready"].status == "True":
        return "Ready"
    return "Pending" if previous_phase == "Pending" else "Progressing"


def decide_status(pipeline: ScoringPipeline, observed: Observed, desired_replicas: int,
                  now: datetime) -> tuple[PipelineStatus, list[Transition]]:
    """The status to write and the transitions to announce."""
    old = pipeline.status
    previous = {c.type: c for c in old.conditions}
    generation = pipeline.metadata.generation
    conditions = _conditions(observed, desired_replicas, generation, previous, now)
    by_type = {c.type: c for c in conditions}
    phase = _phase(by_type, old.phase)
    dep = observed.stable
    ready = dep.ready if dep else 0
    status = old.model_copy(update={
        "observed_generation": generation,
        "phase": phase,
        "message": next((c.message for c in conditions
                         if c.type == "Degraded" and c.status == "True"),
                        by_type["Ready"].message),
        "stable": model_identity(pipeline.spec.model),
        "replicas": ReplicaStatus(stable=TrackReplicas(desired=desired_replicas, ready=ready)),
        "ready_replicas": ready,
        "conditions": conditions,
        "metrics": old.metrics if observed.stable_metrics is None else MeasuredMetrics(
            measured_at=timestamp(now), stable=observed.stable_metrics),
    })
    return status, transitions(old, status)


def transitions(old: PipelineStatus, new: PipelineStatus) -> list[Transition]:
    """One Transition per condition whose status or reason changed, and one per phase change."""
    out: list[Transition] = []
    before = {c.type: c for c in old.conditions}
    for cond in new.conditions:
        prev = before.get(cond.type)
        if prev is not None and (prev.status, prev.reason) == (cond.status, cond.reason):
            continue
        if prev is None and cond.status == "False" and cond.type != "Ready":
            continue  # a new pipeline that is not degraded: nothing worth announcing
        lost_ready = cond.type == "Ready" and cond.status == "False" and (
            prev is not None and prev.status == "True")
        degraded = cond.type == "Degraded" and cond.status == "True"
        message = f"{cond.type} is {cond.status}" + (f": {cond.message}" if cond.message else "")
        out.append(Transition("Warning" if degraded or lost_ready else "Normal",
                              cond.reason, message))
    if old.phase != new.phase or not old.conditions:
        change = f"{old.phase} -> {new.phase}" if old.conditions else f"{new.phase} (new)"
        out.append(Transition("Warning" if new.phase in ("Degraded", "Failed") else "Normal",
                              f"Phase{new.phase}", f"phase {change}"))
    return out
