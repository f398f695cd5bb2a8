"""The `GRPCRoute` router: Gateway API weighted backendRefs, one Service per track.

    GRPCRoute <pipeline>      parentRefs and hostnames from spec.rollout.router.grpcRoute
      rules[0].backendRefs    Service <pipeline>-stable    weight 100 - w
                              Service <pipeline>-candidate weight w   (while a candidate runs)
      rules[0].filters        RequestMirror -> <pipeline>-candidate, percent m (when asked)

The gateway splits per request, so weights are exact at any scale (unlike replica ratios).
What the user's gateway must support (docs/rollouts.md): GRPCRoute (standard channel,
gateway.networking.k8s.io/v1), weighted backendRefs (core support), and for mirroring the
RequestMirror filter with `percent` (extended support). No Gateway data plane can be installed
on the machines this is developed on, so these manifests are tested against the real Gateway
API CRDs (schema and CEL rules) in the local API server, not against a gateway.

The candidate's backendRef stays, at weight 0, while its track exists, so that a rollback is a
weight change the gateway applies at once rather than a backend removal.
"""

from __future__ import annotations

import math
from typing import Any

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import Track
from scorefleet.operator import naming as n
from scorefleet.operator.routers import Manifest, RoutePlan, Split, owned_metadata

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"


def track_service_name(pipeline: str, track: Track) -> str:
    return f"{pipeline}-{track}"


def track_service(pipeline: ScoringPipeline, track: Track) -> Manifest:
    name = pipeline.metadata.name
    port = pipeline.spec.scorer.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owned_metadata(pipeline, track_service_name(name, track),
                                   n.track_labels(name, track)),
        "spec": {
            "type": "ClusterIP",
            "selector": n.track_selector(name, track),
            "ports": [{"name": "grpc", "port": port, "targetPort": "grpc", "protocol": "TCP",
                       "appProtocol": "kubernetes.io/h2c"}],
        },
    }


def _backend(pipeline: ScoringPipeline, track: Track, weight: int | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "", "kind": "Service",
                           "name": track_service_name(pipeline.metadata.name, track),
                           "port": pipeline.spec.scorer.port}
    if weight is not None:
        ref["weight"] = weight
    return ref


def grpc_route(pipeline: ScoringPipeline, split: Split) -> Manifest:
    route = pipeline.spec.rollout.router.grpc_route
    if route is None:
        raise ValueError("spec.rollout.router.grpcRoute is required for router type GRPCRoute")
    w = split.candidate_weight if split.candidate_present else 0
    backends = [_backend(pipeline, "stable", 100 - w)]
    if split.candidate_present:
        backends.append(_backend(pipeline, "candidate", w))
    rule: dict[str, Any] = {"backendRefs": backends}
    if split.mirror_percent and split.candidate_present:
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": _backend(pipeline, "candidate", None),
            "percent": split.mirror_percent}}]
    spec: dict[str, Any] = {"parentRefs": [p.wire() for p in route.parent_refs],
                            "rules": [rule]}
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "GRPCRoute",
        "metadata": owned_metadata(pipeline, pipeline.metadata.name,
                                   n.pipeline_labels(pipeline.metadata.name)),
        "spec": spec,
    }


class GRPCRouteRouter:
    kind = "GRPCRoute"

    def plan(self, pipeline: ScoringPipeline, split: Split) -> RoutePlan:
        s = split.stable_replicas
        manifests = [track_service(pipeline, "stable")]
        if not split.candidate_present:
            return RoutePlan(stable_replicas=s, candidate_replicas=0, effective_weight=0.0,
                             manifests=(*manifests, grpc_route(pipeline, split)))
        manifests.append(track_service(pipeline, "candidate"))
        w = split.candidate_weight
        # Enough candidate pods for its share of the full load (the stable track's sizing
        # scaled by the weight plus the mirrored copies: the mirror filter copies every
        # request of the rule, whichever backend answers it), at least one so mirrored or
        # weighted requests find a pod.
        load = min(100, w + split.mirror_percent)
        c = max(1, math.ceil(s * load / 100)) if load else 0
        note = f"{w}% of requests by GRPCRoute weight"
        if split.mirror_percent:
            note += f"; {split.mirror_percent}% mirrored to the candidate"
        return RoutePlan(stable_replicas=s, candidate_replicas=c, effective_weight=float(w),
                         manifests=(*manifests, grpc_route(pipeline, split)), note=note)
