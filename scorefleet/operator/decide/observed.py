"""What one reconcile observed, per track: the frozen input of every decision.

The gather step (scorefleet.operator.gather) fills these from the API server and Prometheus;
the decisions read nothing else. Parsing a Deployment's JSON into a DeploymentState is pure and
lives here, so tests build observations the way the operator does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from scorefleet.api.status import TrackMetrics
from scorefleet.operator import naming as n
from scorefleet.operator.decide.scaling_inputs import ScalingReadings


@dataclass(frozen=True)
class DeploymentState:
    """The parts of a track's Deployment that decide whether its pods serve its model."""

    generation: int
    observed_generation: int
    desired: int
    updated: int
    ready: int
    available: int
    deadline_exceeded: bool
    # Pods of any template (status.replicas): more than `updated` means old pods remain.
    total: int = 0
    # The model revision the pod template names (annotation and readiness probe), if any.
    model_revision: str | None = None

    @property
    def rolled_out(self) -> bool:
        """Every pod runs the current template and is available, as `kubectl rollout status`
        judges it: with maxUnavailable 0 the old pods stay available until the new ones are,
        so `available` alone would count the old revision."""
        return (self.observed_generation >= self.generation
                and self.updated >= self.desired
                and self.total <= self.updated
                and self.available >= self.desired)


@dataclass(frozen=True)
class TrackObservation:
    """One track as gathered: its Deployment and, on measuring reconciles, its metrics."""

    deployment: DeploymentState | None = None
    # Measured from Prometheus on this reconcile; None = not measured now (keep the last).
    metrics: TrackMetrics | None = None
    # The autoscaler's readings, on measuring reconciles; None = not measured now.
    scaling: ScalingReadings | None = None


NO_TRACK = TrackObservation()


@dataclass(frozen=True)
class Observed:
    """Everything gathered for one reconcile of one pipeline."""

    tracks: Mapping[str, TrackObservation] = field(
        default_factory=lambda: MappingProxyType({}))
    # The API server's refusal of a planned child, if one was refused on this reconcile.
    apply_error: str | None = None

    def track(self, name: str) -> TrackObservation:
        return self.tracks.get(name, NO_TRACK)

    def with_deployments(self, deployments: Mapping[str, DeploymentState | None],
                         apply_error: str | None) -> Observed:
        """The same observation after acting: the Deployments as the API server returned them
        from the apply (no new read), and the apply's outcome."""
        # A track missing from `deployments` has no Deployment any more (it was deleted).
        tracks = {name: replace(self.track(name), deployment=deployments.get(name))
                  for name in {*self.tracks, *deployments}}
        return Observed(tracks=MappingProxyType(tracks), apply_error=apply_error)


def deployment_state(obj: Mapping[str, Any] | None) -> DeploymentState | None:
    if obj is None:
        return None
    spec, status = obj.get("spec", {}), obj.get("status", {})
    stuck = any(c.get("type") == "Progressing" and c.get("status") == "False"
                and c.get("reason") == "ProgressDeadlineExceeded"
                for c in status.get("conditions", []))
    template = spec.get("template", {}).get("metadata", {})
    return DeploymentState(
        generation=obj["metadata"].get("generation", 0),
        observed_generation=status.get("observedGeneration", 0),
        desired=spec.get("replicas", 1),
        updated=status.get("updatedReplicas", 0),
        ready=status.get("readyReplicas", 0),
        available=status.get("availableReplicas", 0),
        deadline_exceeded=stuck,
        total=status.get("replicas", 0),
        model_revision=(template.get("annotations") or {}).get(n.ANNOTATION_MODEL_REVISION),
    )
