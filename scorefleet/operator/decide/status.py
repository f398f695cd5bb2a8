"""A pipeline's status, composed from sub-decisions that each own their fields; one writer.

    Pending --(stable scorers serve their model)--> Ready --(spec change rolls pods)--> Progressing
       ^                                              |  ^                                  |
       |                                              |  +-------(rolled out)---------------+
       +-- children applied, none ready yet           +--(apply fails / rollout stuck /
                                                          invalid spec)--> Degraded

Each sub-decision is a pure function of `StatusInputs` returning a `StatusPart`: the status
fields it owns and the conditions (`Verdict`s) it decides. `decide_status` runs them all,
refuses two parts claiming one field or condition type, and alone derives what depends on all
of them: observedGeneration, phase, message, condition timestamps and the transitions to
announce. A new behaviour (rollout, scaling) adds its own part here rather than editing
another's.

| part        | fields                                  | conditions           |
|-------------|-----------------------------------------|----------------------|
| serving     | stable, replicas, readyReplicas         | Ready, Progressing   |
| health      | -                                       | Degraded             |
| candidate   | candidate, stableRevision, rollout,     | Promoted, RolledBack |
|             | canary, shadow, analysis (rollout_plan) |                      |
| metrics     | metrics                                 | -                    |
| autoscaling | autoscaling (decide/autoscaling.py)     | ScalingActive        |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.status import (
    Condition,
    MeasuredMetrics,
    Phase,
    PipelineStatus,
    ReplicaStatus,
    RolloutStatus,
    TrackMetrics,
    TrackReplicas,
)
from scorefleet.operator.decide.autoscaling import AutoscalingOutcome
from scorefleet.operator.decide.conditions import (
    Transition,
    Verdict,
    condition,
    timestamp,
    transitions,
)
from scorefleet.operator.decide.observed import Observed
from scorefleet.operator.decide.revision import Revision
from scorefleet.operator.decide.rollout_plan import RolloutOutcome
from scorefleet.operator.decide.rollout_plan import status_fields as rollout_status_fields
from scorefleet.operator.decide.rollout_plan import verdicts as rollout_verdicts
from scorefleet.operator.decide.serving import TrackServing, track_serving
from scorefleet.operator.decide.tracks import TrackDecision, model_identity
from scorefleet.operator.decide.validity import InvalidSpec


@dataclass(frozen=True)
class StatusInputs:
    pipeline: ScoringPipeline
    tracks: TrackDecision
    observed: Observed
    now: datetime
    # The rollout decided on this reconcile; None while the first model is being deployed.
    rollout: RolloutOutcome | None = None
    # The spec's revision (decide/revision.py), recorded once the first model is served.
    revision: Revision | None = None

    # The autoscaler's decision on this reconcile (decide/autoscaling.py).
    autoscaling: AutoscalingOutcome | None = None

    @property
    def stable(self) -> TrackServing:
        # Serving while scaling up with at least minReplicas available: capacity being added
        # is not an outage (decide/serving.py).
        return track_serving(self.tracks.stable, self.observed.track("stable"),
                             floor=self.pipeline.spec.scaling.min_replicas)


@dataclass(frozen=True)
class StatusPart:
    """What one sub-decision decides: the PipelineStatus fields it owns, and its conditions."""

    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    conditions: tuple[Verdict, ...] = ()


SubDecision = Callable[[StatusInputs], StatusPart]


def serving_part(i: StatusInputs) -> StatusPart:
    """The stable track: is it serving its model, and how many scorers are ready."""
    s = i.stable
    plan = i.tracks.stable
    if s.serving:
        ready = Verdict("Ready", "True", "ScorersReady", s.message)
        dep = i.observed.track("stable").deployment
        generation = dep.generation if dep else 0
        progressing = Verdict("Progressing", "False", "RolledOut",
                              f"stable track at generation {generation}")
    else:
        ready = Verdict("Ready", "False", "ScorersNotReady", s.message)
        progressing = Verdict("Progressing", "True", "ScorersUpdating",
                              f"{s.updated}/{s.desired} stable scorers updated")
    # The stable model is recorded only once its pods proved they serve it, and changes only
    # by a promotion: while Promoting the stable pods run the candidate before the rollout
    # decides it is done, and recording it then would make the stable revision equal the
    # rollout's own, which reads as "no rollout" and left the rollout in Promoting for good.
    promoting = i.rollout is not None and i.rollout.decision.plan.stable_runs_candidate
    stable = (model_identity(plan.model) if s.serving and not promoting
              else i.pipeline.status.stable)
    candidate_plan = i.tracks.plan("candidate")
    candidate = None
    if candidate_plan is not None:
        c = track_serving(candidate_plan, i.observed.track("candidate"))
        candidate = TrackReplicas(desired=c.desired, ready=c.ready)
    return StatusPart(
        fields={"stable": stable,
                "replicas": ReplicaStatus(stable=TrackReplicas(desired=s.desired,
                                                               ready=s.ready),
                                          candidate=candidate),
                "ready_replicas": s.ready + (candidate.ready if candidate else 0)},
        conditions=(ready, progressing))


def health_part(i: StatusInputs) -> StatusPart:
    dep = i.observed.track("stable").deployment
    if i.observed.apply_error:
        degraded = Verdict("Degraded", "True", "ApplyFailed", i.observed.apply_error, True)
    elif dep is not None and dep.deadline_exceeded:
        degraded = Verdict("Degraded", "True", "ProgressDeadlineExceeded",
                           f"stable Deployment made no progress: "
                           f"{dep.ready}/{i.tracks.stable.replicas} ready", True)
    else:
        degraded = Verdict("Degraded", "False", "AsExpected")
    return StatusPart(conditions=(degraded,))


def candidate_part(i: StatusInputs) -> StatusPart:
    """The rollout's fields and conditions (decide/rollout_plan.py); before a first model is
    established, whether it is loading."""
    if i.rollout is not None:
        return StatusPart(fields=rollout_status_fields(i.rollout),
                          conditions=rollout_verdicts(i.rollout))
    return _first_model_part(i)


def _first_model_part(i: StatusInputs) -> StatusPart:
    """The first model: loading until the stable scorers serve it; then its revision (the
    scorer part beside the model) is recorded at once, so a change right after it is a
    rollout against what really runs."""
    stable = i.tracks.stable.model
    if not i.stable.serving:
        promoted = Verdict("Promoted", "False", "FirstModelLoading",
                           f"{stable.name} {stable.version} becomes the stable model once the "
                           "stable scorers serve it")
        return StatusPart(fields={"candidate": None}, conditions=(promoted,))
    promoted = Verdict("Promoted", "True", "StableIsDesired",
                       f"the stable track serves spec.model {stable.name} {stable.version}")
    fields: dict[str, object] = {"candidate": None}
    if i.revision is not None:
        fields["stable_revision"] = i.revision.record()
    return StatusPart(fields=fields, conditions=(promoted,))


def autoscaling_part(i: StatusInputs) -> StatusPart:
    """status.autoscaling and ScalingActive, on measuring passes only (others keep both)."""
    a = i.autoscaling
    if a is None or a.status is None or a.verdict is None:
        return StatusPart()
    return StatusPart(fields={"autoscaling": a.status}, conditions=(a.verdict,))


def _shown(m: TrackMetrics | None) -> TrackMetrics | None:
    """Rates and milliseconds to 2 decimals for people (`kubectl get` printed 49.87333333);
    decisions use Prometheus's values, never these. errorRate stays exact: it is read against
    thresholds like 0.001."""
    if m is None:
        return None
    return TrackMetrics(qps=None if m.qps is None else round(m.qps, 2),
                        p99_latency_ms=None if m.p99_latency_ms is None
                        else round(m.p99_latency_ms, 2),
                        error_rate=m.error_rate)


def metrics_part(i: StatusInputs) -> StatusPart:
    measured = i.observed.track("stable").metrics
    if measured is None:
        return StatusPart()  # not measured now: the last measurement stays as it is
    return StatusPart(fields={"metrics": MeasuredMetrics(
        measured_at=timestamp(i.now), stable=_shown(measured),
        candidate=_shown(i.observed.track("candidate").metrics))})


SUB_DECISIONS: tuple[SubDecision, ...] = (serving_part, health_part, candidate_part,
                                          metrics_part, autoscaling_part)


def merge(parts: Sequence[StatusPart]) -> tuple[dict[str, Any], list[Verdict]]:
    """All parts' fields and verdicts; a field or condition type claimed twice is a bug."""
    fields: dict[str, Any] = {}
    verdicts: list[Verdict] = []
    for part in parts:
        for name, value in part.fields.items():
            if name in fields:
                raise ValueError(f"status field {name} decided by two sub-decisions")
            fields[name] = value
        for verdict in part.conditions:
            if any(v.type == verdict.type for v in verdicts):
                raise ValueError(f"condition {verdict.type} decided by two sub-decisions")
            verdicts.append(verdict)
    return fields, verdicts


def _phase(conditions: dict[str, Condition], previous_phase: Phase,
           rollout: RolloutStatus | None = None) -> Phase:
    if conditions["Degraded"].status == "True":
        return "Degraded"
    if rollout is not None and rollout.phase in ("Shadow", "Canary", "Promoting"):
        return "Paused" if rollout.paused else "Progressing"
    if rollout is not None and rollout.phase in ("Failed", "Aborted") and (
            conditions["Ready"].status == "True"):
        return "Failed"  # the stable track serves; the rollout failed (conditions say why)
    if conditions["Ready"].status == "True":
        return "Ready"
    return "Pending" if previous_phase == "Pending" else "Progressing"


def _message(verdicts: Sequence[Verdict]) -> str:
    """The one line that explains the phase: a problem first, else what is ready."""
    by_type = {v.type: v for v in verdicts}
    degraded = by_type.get("Degraded")
    if degraded is not None and degraded.status == "True":
        return degraded.message
    ready = by_type["Ready"]
    warning = next((v for v in verdicts if v.warning and v.status == "False"), None)
    if ready.status == "True" and warning is not None:
        return warning.message
    return ready.message


def compose(old: PipelineStatus, generation: int, fields: Mapping[str, Any],
            verdicts: Sequence[Verdict], now: datetime) -> tuple[PipelineStatus, list[Transition]]:
    """The one writer: turn owned fields and verdicts into the status and its transitions."""
    previous = {c.type: c for c in old.conditions}
    decided = {v.type for v in verdicts}
    # Conditions no part decided this time (e.g. on an invalid spec) keep their last state.
    conditions = [condition(v, generation, previous, now) for v in verdicts]
    conditions += [c for c in old.conditions if c.type not in decided]
    by_type = {c.type: c for c in conditions}
    status = old.model_copy(update={
        **fields,
        "observed_generation": generation,
        "phase": _phase(by_type, old.phase, fields.get("rollout", old.rollout)),
        "message": _message([*verdicts, *(Verdict(c.type, c.status, c.reason, c.message)
                                          for c in old.conditions if c.type not in decided)]),
        "conditions": conditions,
    })
    return status, transitions(old, status, {v.type for v in verdicts if v.warning})


def decide_status(inputs: StatusInputs, parts: Sequence[SubDecision] = SUB_DECISIONS,
                  ) -> tuple[PipelineStatus, list[Transition]]:
    """The status to write and the transitions to announce."""
    fields, verdicts = merge([part(inputs) for part in parts])
    return compose(inputs.pipeline.status, inputs.pipeline.metadata.generation, fields,
                   verdicts, inputs.now)


def decide_invalid_status(old: PipelineStatus, generation: int, invalid: InvalidSpec,
                          now: datetime) -> tuple[PipelineStatus, list[Transition]]:
    """A spec the operator cannot plan: Degraded naming the field; nothing else changes (the
    children keep running as they are)."""
    degraded = Verdict("Degraded", "True", "InvalidSpec", invalid.text, warning=True)
    if not any(c.type == "Ready" for c in old.conditions):
        ready = Verdict("Ready", "False", "InvalidSpec", invalid.text)
        return compose(old, generation, {}, [ready, degraded], now)
    return compose(old, generation, {}, [degraded], now)
