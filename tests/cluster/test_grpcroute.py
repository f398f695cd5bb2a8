"""GRPCRoute manifests against the real Gateway API CRDs (v1.4.1, standard channel) installed in
the local API server: every pipeline our CRD admits yields a route and Services the API server
admits too. No Gateway data plane runs here (none can be installed on these machines), so what
a gateway then does with the route is not tested; docs/rollouts.md says what it must support."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.operator.kube import Kube, KubeError
from scorefleet.operator.reconcile import reconcile
from scorefleet.operator.routers import Split
from scorefleet.operator.routers.grpcroute import GRPCRouteRouter
from tests.conftest import kubectl

pytestmark = pytest.mark.cluster

ROUTES = "/apis/gateway.networking.k8s.io/v1"
BASE: dict[str, Any] = {
    "apiVersion": "scorefleet.io/v1alpha1",
    "kind": "ScoringPipeline",
    "metadata": {"name": "phish"},
    "spec": {"model": {"name": "phishing", "version": "v1", "uri": "file:///m/v1.onnx"},
             "rollout": {"router": {"type": "GRPCRoute", "grpcRoute": {
                 "parentRefs": [{"name": "edge"}]}}}},
}


def pipeline_body(name: str, grpc_route: dict[str, Any] | None = None,
                  rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body["metadata"]["name"] = name
    if grpc_route is not None:
        body["spec"]["rollout"]["router"]["grpcRoute"] = grpc_route
    if rollout is not None:
        body["spec"]["rollout"].update(rollout)
    return body


def create_pipeline(kube: Kube, namespace: str, body: dict[str, Any]) -> ScoringPipeline:
    created = kube._call("POST", f"/apis/scorefleet.io/v1alpha1/namespaces/{namespace}/"
                                 "scoringpipelines", body=body)
    assert created is not None
    return ScoringPipeline.from_body(created)


def test_gateway_api_grpcroute_crd_is_served(control_plane: Any) -> None:
    out = kubectl("get", "crd", "grpcroutes.gateway.networking.k8s.io", "-o",
                  "jsonpath={.spec.versions[?(@.served)].name}")
    assert "v1" in out.split()


ADMITTED_ROUTES = [
    {"parentRefs": [{"name": "edge"}]},
    {"parentRefs": [{"name": "edge", "namespace": "gateways", "sectionName": "grpc",
                     "port": 443}], "hostnames": ["phish.scoring.internal", "*.scoring.local"]},
    {"parentRefs": [{"name": "edge", "sectionName": "a"}, {"name": "edge", "sectionName": "b"},
                    {"name": "other"}]},
    {"parentRefs": [{"name": "mesh", "group": "", "kind": "Service"}]},
]


@pytest.mark.parametrize("route", ADMITTED_ROUTES)
@pytest.mark.parametrize("split", [Split(3), Split(3, 25, True), Split(3, 0, True),
                                   Split(3, 0, True, mirror_percent=10)])
def test_every_planned_route_is_admitted(kube: Kube, namespace: str, route: dict[str, Any],
                                         split: Split) -> None:
    name = f"p{ADMITTED_ROUTES.index(route)}"
    pipeline = create_pipeline(kube, namespace, pipeline_body(name, route))
    plan = GRPCRouteRouter().plan(pipeline, split)
    for manifest in plan.manifests:
        kube.apply(manifest)
    live = kube._call("GET", f"{ROUTES}/namespaces/{namespace}/grpcroutes/{name}")
    assert live is not None
    refs = live["spec"]["rules"][0]["backendRefs"]
    weights = {r["name"]: r["weight"] for r in refs}
    want = {f"{name}-stable": 100 - (split.candidate_weight if split.candidate_present else 0)}
    if split.candidate_present:
        want[f"{name}-candidate"] = split.candidate_weight
    assert weights == want
    filters = live["spec"]["rules"][0].get("filters", [])
    assert [f["requestMirror"]["percent"] for f in filters] == (
        [10] if split.mirror_percent else [])
    assert live["metadata"]["ownerReferences"][0]["uid"] == pipeline.metadata.uid
    # Re-applying the same plan changes nothing (the reconcile's dry-run comparison relies on it).
    again = kube.apply(next(m for m in plan.manifests if m["kind"] == "GRPCRoute"))
    assert again["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]


def test_gateway_api_validation_is_really_on(kube: Kube, namespace: str) -> None:
    """A route the Gateway API CRD must refuse is refused (so the test above can fail)."""
    pipeline = create_pipeline(kube, namespace, pipeline_body("bad"))
    route = next(m for m in GRPCRouteRouter().plan(
        pipeline, Split(3, 0, True, mirror_percent=10)).manifests if m["kind"] == "GRPCRoute")
    route["spec"]["rules"][0]["filters"][0]["requestMirror"]["percent"] = 150
    with pytest.raises(KubeError, match="percent"):
        kube.apply(route)


@pytest.mark.parametrize(("grpc_route", "rollout", "field"), [
    # Two references to one Gateway without sectionName: the Gateway API would refuse the
    # route, so our CRD refuses the pipeline, naming the field.
    ({"parentRefs": [{"name": "edge"}, {"name": "edge"}]}, None,
     "spec.rollout.router.grpcRoute.parentRefs"),
    ({"parentRefs": [{"name": "edge", "sectionName": "a"}, {"name": "edge", "sectionName": "a"}]},
     None, "spec.rollout.router.grpcRoute.parentRefs"),
    ({"parentRefs": [{"name": "edge"}], "hostnames": ["Not_A_Host"]}, None,
     "spec.rollout.router.grpcRoute.hostnames[0]"),
    ({"parentRefs": [{"name": "edge", "namespace": "Gateways"}]}, None,
     "spec.rollout.router.grpcRoute.parentRefs[0].namespace"),
    # A route spec the Replicas router would ignore is refused, not silently dropped.
    ({"parentRefs": [{"name": "edge"}]}, {"router": {"type": "Replicas", "grpcRoute": {
        "parentRefs": [{"name": "edge"}]}}}, "spec.rollout.router.grpcRoute"),
    ({"parentRefs": [{"name": "edge"}], "mirrorPercent": 0}, None,
     "spec.rollout.router.grpcRoute.mirrorPercent"),
    # The Replicas router cannot send 100% while stable pods share the Service.
    ({"parentRefs": [{"name": "edge"}]},
     {"router": {"type": "Replicas"}, "canary": {"steps": [{"weight": 50}, {"weight": 100}]}},
     "spec.rollout.canary.steps"),
])
def test_pipelines_that_would_render_a_refused_route_are_refused(
        kube: Kube, namespace: str, grpc_route: dict[str, Any], rollout: dict[str, Any] | None,
        field: str) -> None:
    with pytest.raises(KubeError) as err:
        create_pipeline(kube, namespace, pipeline_body("x", grpc_route, rollout))
    assert field in str(err.value), str(err.value)


def test_grpcroute_may_send_everything_to_the_candidate(kube: Kube, namespace: str) -> None:
    body = pipeline_body("full", rollout={"canary": {"steps": [{"weight": 50},
                                                               {"weight": 100}]}})
    pipeline = create_pipeline(kube, namespace, body)
    for manifest in GRPCRouteRouter().plan(pipeline, Split(2, 100, True)).manifests:
        kube.apply(manifest)


def test_switching_the_router_type_removes_the_route_and_its_services(
        kube: Kube, namespace: str) -> None:
    create_pipeline(kube, namespace, pipeline_body("switch"))
    log = logging.getLogger("test")
    reconcile(kube, namespace, "switch", log)
    children = kube.list_children(namespace, "switch", ("Service", "GRPCRoute"))
    assert {("GRPCRoute", "switch"), ("Service", "switch-stable")} <= set(children)
    kube._call("PATCH", f"/apis/scorefleet.io/v1alpha1/namespaces/{namespace}/"
                        "scoringpipelines/switch",
               body={"spec": {"rollout": {"router": {"type": "Replicas", "grpcRoute": None}}}},
               content_type="application/merge-patch+json")
    result = reconcile(kube, namespace, "switch", log)
    assert result is not None
    assert {"GRPCRoute/switch", "Service/switch-stable"} <= set(result.deleted)
    left = kube.list_children(namespace, "switch", ("Service", "GRPCRoute"))
    assert set(left) == {("Service", "switch"), ("Service", "switch-headless")}
    # Nothing of the old router is left to find: the next reconcile lists no routes.
    again = reconcile(kube, namespace, "switch", log)
    assert again is not None and again.deleted == [] and again.applied == []
