"""A canary's share of a *stream*: events by a stable hash of their key, decided by the stable
track's consumers (scorefleet/scorer/stream/canary.py), scored by the candidate over gRPC.

Whatever router splits the gRPC requests, a stream pipeline's candidate gets events this way:
the stable track stays the only consumer group (a second group, or candidate pods in the same
one, could skip or repeat events across a weight change; a partition share is not a weight).
What the router plan needs for that: the candidate's own Service (the stable pods call it), at
least one candidate pod while the weight is above zero, and the weight as the effective share.
The stable track's scorer config carries the weight (decide/children.py); the candidate's has
no stream section, so it never joins the group.
"""

from __future__ import annotations

import math
from dataclasses import replace

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.operator.routers import RoutePlan, Split
from scorefleet.operator.routers.grpcroute import track_service, track_service_name


def candidate_address(pipeline: ScoringPipeline) -> str:
    """Where the stable pods reach the candidate track (cluster DNS, the scorer's gRPC port)."""
    meta = pipeline.metadata
    return (f"{track_service_name(meta.name, 'candidate')}.{meta.namespace}.svc:"
            f"{pipeline.spec.scorer.port}")


def with_stream_canary(pipeline: ScoringPipeline, split: Split, route: RoutePlan) -> RoutePlan:
    """The router's plan, completed for a stream pipeline's candidate (unchanged otherwise)."""
    if pipeline.spec.source is None or not split.candidate_present:
        return route
    w = split.candidate_weight
    manifests = route.manifests
    service = track_service(pipeline, "candidate")
    if not any(m["kind"] == "Service" and m["metadata"]["name"] == service["metadata"]["name"]
               for m in manifests):
        manifests = (*manifests, service)
    # Its share of the stream's load, as the GRPCRoute router sizes a weighted candidate.
    needed = max(1, math.ceil(split.stable_replicas * w / 100)) if w else 0
    note = f"{w}% of stream events by key hash"
    return replace(route, manifests=manifests,
                   candidate_replicas=max(route.candidate_replicas, needed),
                   effective_weight=float(w),
                   note=f"{route.note}; {note}" if route.note else note)
