"""A pipeline's rollout, as the reconcile needs it: inputs from observations, the decision, the
tracks and route it implies, and the status part it owns. Pure.

    observed (before acting) --ready, candidate_failure--+
    status (persisted state) ----------------------------+--> decide_rollout --> RolloutOutcome
    spec revision / stable revision / action annotation -+        |
    measurement of the due interval (gathered) ----------+        +--> tracks (stable, candidate)
                                                                  +--> router plan (replicas,
                                                                  |    Services, GRPCRoute)
                                                                  +--> status part + events

`ready` is judged against the plan of the *persisted* state: the children seen now are what
the previous reconcile applied for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import ModelRef, Track
from scorefleet.api.status import ModelIdentity
from scorefleet.operator.decide.analysis import CanaryWindow, ShadowWindow, describe
from scorefleet.operator.decide.conditions import Transition, Verdict
from scorefleet.operator.decide.observed import Observed
from scorefleet.operator.decide.revision import Revision, desired_revision, stable_revision
from scorefleet.operator.decide.rollout import (
    ACTION_ANNOTATION,
    RolloutDecision,
    RolloutInputs,
    RolloutState,
    TrafficPlan,
    decide_rollout,
    traffic_for,
)
from scorefleet.operator.decide.serving import track_serving
from scorefleet.operator.decide.tracks import TrackPlan, model_identity
from scorefleet.operator.routers import RoutePlan, Split, router_for
from scorefleet.operator.routers.streams import with_stream_canary


@dataclass(frozen=True)
class RolloutContext:
    """The revisions involved; None for `stable` while the first model is being deployed."""

    desired: Revision
    stable: Revision | None
    state: RolloutState | None

    @classmethod
    def of(cls, pipeline: ScoringPipeline, default_image: str) -> RolloutContext:
        status = pipeline.status
        return cls(desired=desired_revision(pipeline.spec, default_image),
                   stable=stable_revision(status.stable, status.stable_revision,
                                          pipeline.spec, default_image),
                   state=RolloutState.from_status(status))


@dataclass(frozen=True)
class RolloutOutcome:
    context: RolloutContext
    decision: RolloutDecision
    tracks: tuple[TrackPlan, ...]
    route: RoutePlan

    @property
    def transitions(self) -> list[Transition]:
        return [Transition(e.type, e.reason, e.message) for e in self.decision.events]

    @property
    def stable_now(self) -> Revision | None:
        """The stable revision after this decision."""
        return self.decision.promoted or self.context.stable


def _plan(revision: Revision, track: Track, replicas: int,
          shadow: ModelRef | None = None) -> TrackPlan:
    return TrackPlan(track, revision.model, replicas, shadow=shadow,
                     image=revision.image, env=revision.env,
                     intra_op_threads=revision.intra_op_threads)


def plan_for(pipeline: ScoringPipeline, traffic: TrafficPlan, stable: Revision,
             desired: Revision, stable_replicas: int | None = None,
             ) -> tuple[tuple[TrackPlan, ...], RoutePlan]:
    """The tracks and the route one traffic plan stands for. `stable_replicas` is the
    autoscaler's count for the stable track (None: minReplicas); the router sizes the
    candidate from it by the weight."""
    replicas = pipeline.spec.scaling.min_replicas if stable_replicas is None else stable_replicas
    router = pipeline.spec.rollout.router
    serving = traffic.candidate_track == "serving"
    mirror = (router.grpc_route.mirror_percent or 0) if (
        serving and router.type == "GRPCRoute" and router.grpc_route) else 0
    split = Split(stable_replicas=replicas, candidate_weight=traffic.candidate_weight,
                  candidate_present=serving, mirror_percent=mirror)
    route = with_stream_canary(pipeline, split, router_for(router).plan(pipeline, split))
    on_stable = desired if traffic.stable_runs_candidate else stable
    stable_plan = _plan(on_stable, "stable", route.stable_replicas,
                        shadow=desired.model if traffic.shadow else None)
    if pipeline.spec.source is not None and split.candidate_present:
        stable_plan = replace(stable_plan, stream_canary_weight=split.candidate_weight)
    tracks = [stable_plan]
    if traffic.candidate_track != "absent":
        tracks.append(_plan(desired, "candidate", route.candidate_replicas))
    return tuple(tracks), route


def first_route(pipeline: ScoringPipeline) -> RoutePlan:
    """The route while the first model is deployed (no rollout yet): everything to stable, so a
    gateway has its route and the stable Service from the start, not only once it is Ready."""
    return router_for(pipeline.spec.rollout.router).plan(
        pipeline, Split(stable_replicas=pipeline.spec.scaling.min_replicas))


def ready_for(pipeline: ScoringPipeline, context: RolloutContext, observed: Observed,
              stable_replicas: int | None = None) -> bool:
    """Is the persisted state's plan in effect (judged on the children as observed)?
    `stable_replicas`: what the previous reconcile applied to the stable track."""
    if context.stable is None or context.state is None:
        return False
    traffic = traffic_for(context.state)
    tracks, _ = plan_for(pipeline, traffic, context.stable, context.desired, stable_replicas)
    # Promoting waits for the stable track alone: the candidate's pods are not what the switch
    # needs, and the pass that switched deletes them (a restart after it finds none).
    # Shadow waits for the stable pods to load the shadow; a canary step for the candidate.
    if traffic.stable_runs_candidate:
        wanted: tuple[str, ...] = ("stable",)
    elif traffic.shadow:
        wanted = ("stable",)
    else:
        wanted = ("candidate",)
    needed = [t for t in tracks if t.replicas > 0 and t.track in wanted]
    return bool(needed) and all(
        track_serving(t, observed.track(t.track)).serving for t in needed)


def candidate_failure(observed: Observed) -> str | None:
    dep = observed.track("candidate").deployment
    if dep is not None and dep.deadline_exceeded:
        return (f"candidate Deployment exceeded its progress deadline: {dep.ready}/"
                f"{dep.desired} pods ready")
    return None


def decide_pipeline_rollout(pipeline: ScoringPipeline, observed: Observed, default_image: str,
                            measurement: CanaryWindow | ShadowWindow | None,
                            now: datetime, stable_replicas: int | None = None,
                            ) -> RolloutOutcome | None:
    """None while the first model is being deployed (no stable revision yet).
    `stable_replicas`: the count the previous reconcile applied (the autoscaler's last
    decision); the reconcile re-plans with this pass's decision (`replan`)."""
    context = RolloutContext.of(pipeline, default_image)
    if context.stable is None:
        return None
    decision = decide_rollout(RolloutInputs(
        spec=pipeline.spec, desired=context.desired, stable=context.stable,
        state=context.state, now=now,
        action=pipeline.metadata.annotations.get(ACTION_ANNOTATION),
        measurement=measurement,
        ready=ready_for(pipeline, context, observed, stable_replicas),
        candidate_failure=candidate_failure(observed)))
    stable = decision.promoted or context.stable
    tracks, route = plan_for(pipeline, decision.plan, stable, context.desired, stable_replicas)
    return RolloutOutcome(context, decision, tracks, route)


def replan(pipeline: ScoringPipeline, outcome: RolloutOutcome,
           stable_replicas: int) -> RolloutOutcome:
    """The same decision with the stable track at `stable_replicas` (the autoscaler's
    decision on this pass, which needs the rollout's new state first)."""
    stable = outcome.decision.promoted or outcome.context.stable
    assert stable is not None, "a rollout outcome always has a stable revision"
    tracks, route = plan_for(pipeline, outcome.decision.plan, stable,
                             outcome.context.desired, stable_replicas)
    return RolloutOutcome(outcome.context, outcome.decision, tracks, route)


# -- status ------------------------------------------------------------------------------------
def status_fields(outcome: RolloutOutcome) -> dict[str, object]:
    state = outcome.decision.state
    fields = RolloutState.status_fields(state)
    stable = outcome.stable_now
    candidate = outcome.context.desired
    active = state is not None and state.rollout.phase not in ("Succeeded",)
    fields["candidate"] = _identity(candidate.model) if active and stable is not None and (
        candidate.hash != stable.hash) else None
    if stable is not None:
        fields["stable_revision"] = stable.record()
    return fields


def _identity(model: ModelRef) -> ModelIdentity:
    return model_identity(model)


def verdicts(outcome: RolloutOutcome) -> tuple[Verdict, ...]:
    """`Promoted` (True once the spec's revision is what the stable track serves) and
    `RolledBack` (True while the last rollout ended Failed or Aborted), for `kubectl wait`."""
    state = outcome.decision.state
    phase = state.rollout.phase if state else None
    message = state.rollout.message if state else ""
    if state is None or phase == "Succeeded":
        promoted = Verdict("Promoted", "True", "RolloutSucceeded" if state else "StableIsDesired",
                           message or "the stable track serves the spec's revision")
    elif phase in ("Failed", "Aborted"):
        promoted = Verdict("Promoted", "False", "RolledBack" if phase == "Failed"
                           else "RolloutAborted", message, warning=True)
    elif state.rollout.paused:
        promoted = Verdict("Promoted", "False", "RolloutPaused", message, warning=True)
    else:
        promoted = Verdict("Promoted", "False", f"{phase}InProgress", message)
    if phase in ("Failed", "Aborted"):
        rolled_back = Verdict("RolledBack", "True", "RolledBack" if phase == "Failed"
                              else "RolloutAborted", message, warning=True)
    else:
        rolled_back = Verdict("RolledBack", "False", "NotRolledBack", "")
    return promoted, rolled_back


def check_summary(outcome: RolloutOutcome) -> str:
    v = outcome.decision.verdict
    return "; ".join(describe(c) for c in v.checks) if v else ""
