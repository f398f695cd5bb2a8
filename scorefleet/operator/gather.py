"""Gather: what one reconcile reads, turned into the frozen `Observed` the decisions take.

Reads are the pipeline's labelled children (one list per owned kind, done by the caller since
acting compares against them too) and, on measuring reconciles, one Prometheus measurement per
track that has a Deployment. Nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.operator import naming as n
from scorefleet.operator.decide.analysis import CanaryWindow, ShadowWindow
from scorefleet.operator.decide.observed import (
    DeploymentState,
    Observed,
    TrackObservation,
    deployment_state,
)
from scorefleet.operator.decide.rollout import RolloutState, analysis_window, parse_time
from scorefleet.operator.kube import Obj
from scorefleet.operator.settings import Analyst, Measure, NoMetrics


def deployments_by_track(children: Mapping[tuple[str, str], Obj],
                         ) -> dict[str, DeploymentState | None]:
    """Each track's Deployment state, by the track label the operator puts on it."""
    out: dict[str, DeploymentState | None] = {}
    for (kind, _), obj in sorted(children.items()):
        track = (obj.get("metadata", {}).get("labels") or {}).get(n.LABEL_TRACK)
        if kind == "Deployment" and track:
            out[track] = deployment_state(obj)
    return out


def lists_routes(body: Obj, children: Mapping[tuple[str, str], Obj]) -> bool:
    """Must this reconcile list the pipeline's GRPCRoutes too? Yes while the spec routes with
    one, and also while the per-track Services that only the GRPCRoute router creates are still
    there: after a switch to another router type the old route must be found to be deleted (it
    would otherwise keep a gateway sending requests to Services that are gone)."""
    router = ((body.get("spec") or {}).get("rollout") or {}).get("router") or {}
    if router.get("type") == "GRPCRoute":
        return True
    return any(kind == "Service" and n.LABEL_TRACK in (obj.get("metadata", {}).get("labels") or {})
               for (kind, _), obj in children.items())


def observe(namespace: str, pipeline: str, children: Mapping[tuple[str, str], Obj],
            measure: Measure | None, stream: bool = False) -> Observed:
    """The children's state and, with `measure`, each track's metrics (`stream`: with the
    stream's end-to-end latency). The stable track is measured even before its Deployment
    exists: the autoscaler decides on every measuring pass, and says so when there is nothing
    to measure."""
    deployments = deployments_by_track(children)
    names = sorted({*deployments, "stable"} if measure is not None else deployments)
    tracks = {}
    for track in names:
        metrics, readings = (measure(namespace, pipeline, track, stream)
                             if measure is not None else (None, None))
        tracks[track] = TrackObservation(deployment=deployments.get(track), metrics=metrics,
                                         scaling=readings)
    return Observed(tracks=MappingProxyType(tracks))


def measure_interval(analyst: Analyst | NoMetrics | None, pipeline: ScoringPipeline,
                     now: datetime) -> CanaryWindow | ShadowWindow | None:
    """The measurement of the analysis interval that is due now, if one is and Prometheus
    answers; None otherwise (the rollout then waits: no interval is judged unmeasured).
    `analyst` None means this reconcile does not measure (event-driven ones do not)."""
    state = RolloutState.from_status(pipeline.status)
    start = analysis_window(state, pipeline.spec, now)
    if analyst is None or state is None or start is None:
        return None
    meta = pipeline.metadata
    interval = (now - start).total_seconds()
    if state.rollout.phase == "Shadow":
        stable = pipeline.status.stable
        began = state.shadow.started_at if state.shadow else None
        if stable is None or began is None:
            return None
        return analyst.shadow(meta.namespace, meta.name, stable.version,
                              pipeline.spec.model.version, interval,
                              (now - parse_time(began)).total_seconds())
    return analyst.canary(meta.namespace, meta.name, interval)
