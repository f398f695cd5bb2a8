"""Conditions and the transitions worth announcing, from one status to the next.

Conditions follow Kubernetes conventions (metav1.Condition): a type, a status, a CamelCase
reason and a message carrying the measured numbers. A condition's lastTransitionTime only
moves when its status does.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from scorefleet.api.status import Condition, ConditionStatus, PipelineStatus


@dataclass(frozen=True)
class Verdict:
    """One condition as a sub-decision decides it (timestamps are added by the composer)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    # A change to this verdict is announced as a Warning event.
    warning: bool = False


@dataclass(frozen=True)
class Transition:
    """A change worth a log line and a Kubernetes Event."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(verdict: Verdict, generation: int, previous: dict[str, Condition],
              now: datetime) -> Condition:
    old = previous.get(verdict.type)
    since = old.last_transition_time if old is not None and old.status == verdict.status else None
    return Condition(
        type=verdict.type, status=verdict.status, reason=verdict.reason,
        message=verdict.message, last_transition_time=since or timestamp(now),
        observed_generation=generation,
    )


def transitions(old: PipelineStatus, new: PipelineStatus,
                warnings: Collection[str] = ()) -> list[Transition]:
    """One Transition per condition whose status or reason changed, and one per phase change.

    `warnings` names the condition types whose new verdict asks to be a Warning; a Degraded
    condition turning True and a Ready condition turning False are Warnings anyway.
    """
    out: list[Transition] = []
    before = {c.type: c for c in old.conditions}
    for cond in new.conditions:
        prev = before.get(cond.type)
        if prev is not None and (prev.status, prev.reason) == (cond.status, cond.reason):
            continue
        if prev is None and cond.status == "False" and cond.type != "Ready" and (
                cond.type not in warnings):
            continue  # a new pipeline that is not degraded: nothing worth announcing
        lost_ready = cond.type == "Ready" and cond.status == "False" and (
            prev is not None and prev.status == "True")
        degraded = cond.type == "Degraded" and cond.status == "True"
        message = f"{cond.type} is {cond.status}" + (f": {cond.message}" if cond.message else "")
        warn = degraded or lost_ready or cond.type in warnings
        out.append(Transition("Warning" if warn else "Normal", cond.reason, message))
    if old.phase != new.phase or not old.conditions:
        change = f"{old.phase} -> {new.phase}" if old.conditions else f"{new.phase} (new)"
        out.append(Transition("Warning" if new.phase in ("Degraded", "Failed") else "Normal",
                              f"Phase{new.phase}", f"phase {change}"))
    return out
