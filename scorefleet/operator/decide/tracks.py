"""Which tracks run, and which model each serves: from the spec and the persisted status.

The stable model is what the stable track really serves, recorded in `status.stable` once its
pods proved they loaded it, and changed only by a promotion. `spec.model` is the *desired*
model: until a pipeline has served anything, the stable track follows it (nothing is being
served that a change could hurt); afterwards a different `spec.model` is a candidate, never
hot-swapped into the stable track.

Until the rollout engine exists (decide/rollout.py), a candidate runs nowhere yet: it is
recorded as `status.candidate` and the `Promoted` condition says so (decide/status.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import ModelRef, Track, model_revision
from scorefleet.api.spec import EnvVar
from scorefleet.api.status import ModelIdentity


@dataclass(frozen=True)
class TrackPlan:
    """One track to run: which model it serves, what it shadows, how many replicas."""

    track: Track
    model: ModelRef
    replicas: int
    shadow: ModelRef | None = None
    # The revision's scorer settings (decide/revision.py); None = the spec's.
    image: str | None = None
    env: tuple[EnvVar, ...] | None = None
    intra_op_threads: int | None = None
    # Stream pipelines, stable track, while a candidate serves: its percent of the events
    # (routers/streams.py); None = no canary on the stream.
    stream_canary_weight: int | None = None


@dataclass(frozen=True)
class TrackDecision:
    """The tracks to run, plus what the status needs to tell the story."""

    tracks: tuple[TrackPlan, ...]
    # status.stable already names a model the stable track proved it serves.
    stable_established: bool
    # spec.model when it differs from the established stable model, else None.
    pending: ModelRef | None = None

    def plan(self, track: Track) -> TrackPlan | None:
        return next((t for t in self.tracks if t.track == track), None)

    @property
    def stable(self) -> TrackPlan:
        plan = self.plan("stable")
        assert plan is not None, "every pipeline runs a stable track"
        return plan


def model_identity(model: ModelRef) -> ModelIdentity:
    return ModelIdentity(name=model.name, version=model.version, uri=model.uri,
                         sha256=model.sha256, threshold=model.threshold)


def model_ref(identity: ModelIdentity) -> ModelRef:
    """The model a persisted identity names (the inverse of model_identity)."""
    return ModelRef(name=identity.name, version=identity.version, uri=identity.uri,
                    sha256=identity.sha256, threshold=identity.threshold)


def same_model(a: ModelRef, b: ModelRef) -> bool:
    return model_revision(a) == model_revision(b)


def plan_tracks(pipeline: ScoringPipeline, replicas: int | None = None) -> TrackDecision:
    """`replicas`: the stable track's, as the autoscaler decided (decide/autoscaling.py);
    None only for a pipeline never scaled (minReplicas)."""
    desired = pipeline.spec.model
    if replicas is None:
        replicas = pipeline.spec.scaling.min_replicas
    recorded = pipeline.status.stable
    if recorded is None:
        return TrackDecision(tracks=(TrackPlan("stable", desired, replicas),),
                             stable_established=False)
    stable = model_ref(recorded)
    pending = None if same_model(stable, desired) else desired
    return TrackDecision(tracks=(TrackPlan("stable", stable, replicas),),
                         stable_established=True, pending=pending)
