"""Routers plan replicas, effective weights and their own objects from a split: pure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scorefleet.api.spec import RouterSpec
from scorefleet.operator.routers import Split, router_for
from scorefleet.operator.routers.grpcroute import GRPCRouteRouter, grpc_route
from scorefleet.operator.routers.replicas import ReplicasRouter, candidate_replicas
from tests.operator.conftest import make_pipeline

GATEWAY = {"type": "GRPCRoute", "grpcRoute": {
    "parentRefs": [{"name": "edge", "namespace": "gateways", "sectionName": "grpc"}],
    "hostnames": ["phish.scoring.internal"]}}


def route_pipeline(**router: Any) -> Any:
    return make_pipeline({"rollout": {"router": {**GATEWAY, **router}}})


def test_factory_picks_one_implementation_per_type() -> None:
    assert isinstance(router_for(RouterSpec()), ReplicasRouter)
    assert isinstance(router_for(RouterSpec.model_validate(GATEWAY)), GRPCRouteRouter)


# -- Replicas ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("stable", "weight", "candidate", "share"), [
    (2, 5, 1, 33.3),  # coarse at small scale, and said so
    (2, 50, 2, 50.0),
    (19, 5, 1, 5.0),
    (10, 25, 3, 23.1),
    (4, 1, 1, 20.0),
])
def test_replica_ratio(stable: int, weight: int, candidate: int, share: float) -> None:
    plan = ReplicasRouter().plan(make_pipeline(), Split(stable, weight, candidate_present=True))
    assert (plan.stable_replicas, plan.candidate_replicas) == (stable, candidate)
    assert plan.effective_weight == pytest.approx(share, abs=0.05)
    assert f"{weight}% asked" in plan.note
    assert plan.manifests == ()  # the pipeline's own headless Service serves both tracks


@given(st.integers(1, 200), st.integers(1, 99))
def test_replica_count_gives_the_closest_share(stable: int, weight: int) -> None:
    c = candidate_replicas(stable, weight)
    assert c >= 1

    def err(x: int) -> float:
        return abs(100 * x / (stable + x) - weight)

    assert all(err(c) <= err(x) + 1e-9 for x in range(1, 3 * stable + 3))


def test_replicas_cannot_do_100_or_mirror() -> None:
    with pytest.raises(ValueError, match="cannot send 100%"):
        candidate_replicas(3, 100)
    with pytest.raises(ValueError, match="cannot mirror"):
        ReplicasRouter().plan(make_pipeline(), Split(3, 10, True, mirror_percent=5))


def test_no_candidate_keeps_stable_at_full_replicas() -> None:
    plan = ReplicasRouter().plan(make_pipeline(), Split(4))
    assert (plan.stable_replicas, plan.candidate_replicas, plan.effective_weight) == (4, 0, 0)


# -- GRPCRoute ---------------------------------------------------------------------------------
def backends(plan: Any) -> list[tuple[str, int]]:
    route = next(m for m in plan.manifests if m["kind"] == "GRPCRoute")
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def test_weighted_backend_refs_and_one_service_per_track() -> None:
    plan = GRPCRouteRouter().plan(route_pipeline(), Split(4, 25, candidate_present=True))
    assert backends(plan) == [("phish-stable", 75), ("phish-candidate", 25)]
    assert plan.candidate_replicas == 1 and plan.stable_replicas == 4
    assert plan.effective_weight == 25.0
    services = {m["metadata"]["name"]: m for m in plan.manifests if m["kind"] == "Service"}
    assert services["phish-candidate"]["spec"]["selector"] == {
        "scorefleet.io/pipeline": "phish", "scorefleet.io/track": "candidate"}
    route = next(m for m in plan.manifests if m["kind"] == "GRPCRoute")
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io",
                                            "kind": "Gateway", "name": "edge",
                                            "namespace": "gateways", "sectionName": "grpc"}]
    assert route["spec"]["hostnames"] == ["phish.scoring.internal"]
    assert route["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert "filters" not in route["spec"]["rules"][0]


def test_candidate_sized_for_its_share_of_the_load() -> None:
    plan = GRPCRouteRouter().plan(route_pipeline(), Split(10, 50, candidate_present=True))
    assert plan.candidate_replicas == 5


def test_rolled_back_candidate_keeps_a_zero_weight_ref_while_it_exists() -> None:
    plan = GRPCRouteRouter().plan(route_pipeline(), Split(4, 0, candidate_present=True))
    assert backends(plan) == [("phish-stable", 100), ("phish-candidate", 0)]
    assert plan.candidate_replicas == 0
    gone = GRPCRouteRouter().plan(route_pipeline(), Split(4))
    assert backends(gone) == [("phish-stable", 100)]
    assert [m["metadata"]["name"] for m in gone.manifests if m["kind"] == "Service"] == [
        "phish-stable"]


def test_request_mirror_filter_when_asked() -> None:
    plan = GRPCRouteRouter().plan(route_pipeline(),
                                  Split(4, 0, candidate_present=True, mirror_percent=20))
    route = next(m for m in plan.manifests if m["kind"] == "GRPCRoute")
    assert route["spec"]["rules"][0]["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"group": "", "kind": "Service", "name": "phish-candidate",
                       "port": 9000}, "percent": 20}}]
    assert plan.candidate_replicas == 1


def test_candidate_sized_for_its_weight_plus_the_mirrored_copies() -> None:
    plan = GRPCRouteRouter().plan(route_pipeline(),
                                  Split(10, 25, candidate_present=True, mirror_percent=20))
    assert plan.candidate_replicas == 5  # 45% of the load
    assert backends(plan) == [("phish-stable", 75), ("phish-candidate", 25)]


@given(st.integers(0, 100), st.booleans())
def test_weights_always_sum_to_100(weight: int, present: bool) -> None:
    plan = GRPCRouteRouter().plan(route_pipeline(), Split(3, weight, present))
    assert sum(w for _, w in backends(plan)) == 100


def test_route_requires_its_spec() -> None:
    with pytest.raises(ValueError, match="grpcRoute is required"):
        grpc_route(make_pipeline(), Split(2))


def test_the_route_exists_from_the_first_deploy() -> None:
    from scorefleet.operator.decide.rollout_plan import first_route

    plan = first_route(route_pipeline())
    assert backends(plan) == [("phish-stable", 100)]
    assert [m["metadata"]["name"] for m in plan.manifests if m["kind"] == "Service"] == [
        "phish-stable"]
    assert first_route(make_pipeline()).manifests == ()  # Replicas: nothing of its own
