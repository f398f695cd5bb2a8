"""Gather: what one reconcile reads, turned into the frozen `Observed` the decisions take.

Reads are the pipeline's labelled children (one list per owned kind, done by the caller since
acting compares against them too) and, on measuring reconciles, one Prometheus measurement per
track that has a Deployment. Nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from scorefleet.operator import naming as n
from scorefleet.operator.decide.observed import (
    DeploymentState,
    Observed,
    TrackObservation,
    deployment_state,
)
from scorefleet.operator.kube import Obj
from scorefleet.operator.settings import Measure


def deployments_by_track(children: Mapping[tuple[str, str], Obj],
                         ) -> dict[str, DeploymentState | None]:
    """Each track's Deployment state, by the track label the operator puts on it."""
    out: dict[str, DeploymentState | None] = {}
    for (kind, _), obj in sorted(children.items()):
        track = (obj.get("metadata", {}).get("labels") or {}).get(n.LABEL_TRACK)
        if kind == "Deployment" and track:
            out[track] = deployment_state(obj)
    return out


def observe(namespace: str, pipeline: str, children: Mapping[tuple[str, str], Obj],
            measure: Measure | None) -> Observed:
    tracks = {
        track: TrackObservation(
            deployment=dep,
            metrics=measure(namespace, pipeline, track) if measure is not None else None)
        for track, dep in deployments_by_track(children).items()
    }
    return Observed(tracks=MappingProxyType(tracks))
