"""The `Replicas` router: the candidate's share of requests is its share of the pods.

Both tracks' pods sit behind the pipeline's one headless Service, so a gRPC client that
resolves it through DNS and balances per request (`round_robin`) sends each pod an equal share
of requests. A candidate with c pods beside s stable pods therefore gets c / (s + c) of them.
(Through the ClusterIP Service, kube-proxy balances *connections*, not requests: with few
long-lived client connections the ratio is only approximate; the scorer's maxConnectionAge
makes clients reconnect and spread again.)

The stable track keeps the replicas it needs for the full load, as Argo Rollouts does by
default, so a rollback only removes candidate pods. The weights a replica ratio can express are
coarse with few pods: 5% beside 2 stable pods is one candidate pod, 33%. The plan says so
(`effective_weight`, `note`), and `kubectl scorefleet get` shows the share the ready pods give
beside the asked weight; fine weights at small scale need the GRPCRoute router. 100% cannot
be expressed at all while the stable pods are behind the same Service, and the CRD rejects
such a step for this router.
"""

from __future__ import annotations

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.operator.routers import RoutePlan, Split


def candidate_replicas(stable: int, weight: int) -> int:
    """The pod count whose share c / (s + c) is closest to `weight`%, at least one."""
    if weight <= 0:
        return 0
    if weight >= 100:
        raise ValueError("the Replicas router cannot send 100% to the candidate while the "
                         "stable pods stay behind the same Service")
    best = max(1, round(stable * weight / (100 - weight)))
    # round() of the ratio is not always the closest share; check the neighbours.
    options = {max(1, best - 1), best, best + 1}
    return min(options, key=lambda c: (abs(100 * c / (stable + c) - weight), c))


class ReplicasRouter:
    kind = "Replicas"

    def plan(self, pipeline: ScoringPipeline, split: Split) -> RoutePlan:
        s = split.stable_replicas
        if split.mirror_percent:
            raise ValueError("the Replicas router cannot mirror requests; use GRPCRoute")
        if not split.candidate_present:
            return RoutePlan(stable_replicas=s, candidate_replicas=0, effective_weight=0.0)
        c = candidate_replicas(s, split.candidate_weight)
        share = 100.0 * c / (s + c) if c else 0.0
        note = (f"{split.candidate_weight}% asked, {share:.1f}% by replica ratio "
                f"({c} candidate beside {s} stable pods)")
        return RoutePlan(stable_replicas=s, candidate_replicas=c, effective_weight=share,
                         note=note)
