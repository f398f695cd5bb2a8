"""Does a track serve the model it is meant to? Judged from its Deployment alone.

The evidence: each track's pod template names its model's revision (an annotation, and the
gRPC health service its readiness probe asks for, `scorefleet.model.<revision>`). A scorer
reports that service SERVING only while that very model is its loaded primary, so a pod is
Ready only once it loaded the model. A Deployment whose every pod runs the current template
and is available therefore proves the whole track serves the model; nothing else counts (not
the spec, not a ConfigMap the pods may have failed to load).

kwok pods run no containers and are marked Ready by kwok itself, so on kwok this proves only
that the Deployment rolled out the template naming the model; on a real kubelet the probe is
answered by the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass

from scorefleet.api.scorer_config import model_revision
from scorefleet.operator.decide.observed import TrackObservation
from scorefleet.operator.decide.tracks import TrackPlan


@dataclass(frozen=True)
class TrackServing:
    serving: bool
    ready: int
    desired: int
    updated: int
    message: str


def track_serving(plan: TrackPlan, observed: TrackObservation,
                  floor: int | None = None) -> TrackServing:
    """With `floor`, a track whose pods all run its template still serves while it scales up,
    as long as `floor` of them are available (the Ready condition must not drop at every
    scale-up); without it, every desired pod must be available (a promotion waits for that)."""
    track, model, desired = plan.track, plan.model, plan.replicas
    what = f"{model.name} {model.version}"
    dep = observed.deployment
    if dep is None:
        return TrackServing(False, 0, desired, 0,
                            f"0/{desired} {track} scorers ready; Deployment not created yet")
    wanted = model_revision(model)
    if dep.model_revision != wanted:
        return TrackServing(
            False, dep.ready, desired, 0,
            f"{track} Deployment's pods are for model revision {dep.model_revision or 'none'}, "
            f"not {what} ({wanted})")
    if dep.rolled_out:
        return TrackServing(True, dep.ready, desired, dep.updated,
                            f"{dep.available}/{desired} {track} scorers serve {what}")
    if (floor is not None and dep.observed_generation >= dep.generation
            and dep.total <= dep.updated and dep.available >= min(floor, desired)):
        return TrackServing(True, dep.ready, desired, dep.updated,
                            f"{dep.available}/{desired} {track} scorers serve {what} "
                            f"(scaling; {min(floor, desired)} needed)")
    return TrackServing(False, dep.ready, desired, dep.updated,
                        f"{dep.ready}/{desired} {track} scorers ready with {what}"
                        + (f" ({dep.total - dep.updated} old pods remain)"
                           if dep.total > dep.updated else ""))
