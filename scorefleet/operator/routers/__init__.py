"""Traffic routers: how a candidate weight becomes a share of live requests (Flagger-style).

One small interface, one implementation per file, one factory. A router is pure planning: from
the pipeline and the split the rollout wants, it decides each track's replicas, the candidate's
expected share of requests, and the objects it owns (Services per track, a GRPCRoute); the
reconcile applies them like any other child.

    replicas.py   weight by replica ratio behind the one headless Service (gRPC clients
                  balancing per request with round_robin); no extra objects
    grpcroute.py  Gateway API GRPCRoute with weighted backendRefs, one Service per track, and a
                  RequestMirror filter when mirroring is asked for

Both keep the stable track at the replicas it needs for the full load during a rollout, so
sending every request back to it (rollback) never waits for pods to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.spec import RouterSpec

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Split:
    """What the rollout asks of the router."""

    stable_replicas: int  # what the stable track needs for the full load
    candidate_weight: int = 0  # percent of live requests for the candidate
    candidate_present: bool = False  # the candidate track exists and should serve
    mirror_percent: int = 0  # share of requests also copied to the candidate (responses dropped)


@dataclass(frozen=True)
class RoutePlan:
    stable_replicas: int
    candidate_replicas: int
    effective_weight: float  # the candidate's expected share of requests, in percent
    manifests: tuple[Manifest, ...] = ()
    note: str = ""


class Router(Protocol):
    kind: str

    def plan(self, pipeline: ScoringPipeline, split: Split) -> RoutePlan: ...


def router_for(spec: RouterSpec) -> Router:
    from scorefleet.operator.routers.grpcroute import GRPCRouteRouter
    from scorefleet.operator.routers.replicas import ReplicasRouter

    if spec.type == "GRPCRoute":
        return GRPCRouteRouter()
    return ReplicasRouter()


def owned_metadata(pipeline: ScoringPipeline, name: str,
                   labels: dict[str, str]) -> dict[str, Any]:
    """Metadata of a router-owned child: namespaced, labelled and owned like every child."""
    return {
        "name": name,
        "namespace": pipeline.metadata.namespace,
        "labels": labels,
        "ownerReferences": [{
            "apiVersion": pipeline.api_version, "kind": pipeline.kind,
            "name": pipeline.metadata.name, "uid": pipeline.metadata.uid,
            "controller": True, "blockOwnerDeletion": True,
        }],
    }


__all__ = ["Manifest", "RoutePlan", "Router", "Split", "owned_metadata", "router_for"]
