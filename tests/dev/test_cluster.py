"""The real control plane: start it and check what the operator's tests rely on.

Uses `ensure_up()` directly (cheap if the session fixture already started the cluster) and
the kubernetes client against the real apiserver; nothing is mocked.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from scorefleet.dev import bootstrap, health, pki
from scorefleet.dev.cluster import ClusterInfo, ensure_up
from scorefleet.dev.versions import KUBERNETES_VERSION

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(control_plane: ClusterInfo) -> ClusterInfo:
    """The session's cluster (tests/conftest.py starts it with `ensure_up()`)."""
    return control_plane


@pytest.fixture(scope="module")
def api(cluster: ClusterInfo) -> Iterator[client.ApiClient]:
    # The same loader Kopf and the operator use, fed the generated kubeconfig.
    api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    with api_client:
        yield api_client


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"dev-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def as_dict(api: client.ApiClient, obj: object) -> Any:
    """The object as the apiserver sent it (camelCase JSON): typed models are all-Optional."""
    return api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]


def eventually(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.25)


def test_readyz_and_version(cluster: ClusterInfo, api: client.ApiClient) -> None:
    files = pki.PkiFiles.under(cluster.state_dir / "pki")
    status, body = health.get(f"{cluster.server}/readyz", health.admin_context(files))
    assert (status, body) == (200, b"ok")
    assert client.VersionApi(api).get_code().git_version == f"v{KUBERNETES_VERSION}"
    assert cluster.server.startswith("https://127.0.0.1:")
    assert (cluster.bin_dir / "kubectl").exists()
    assert (cluster.bin_dir / "helm").exists()


def test_kwok_nodes_are_ready_with_the_allocatable_given(api: client.ApiClient) -> None:
    items = as_dict(api, client.CoreV1Api(api).list_node())["items"]
    nodes = {n["metadata"]["name"]: n for n in items}
    assert set(bootstrap.NODE_NAMES) <= set(nodes)
    for name in bootstrap.NODE_NAMES:
        node = nodes[name]
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        assert node["status"]["allocatable"]["cpu"] == bootstrap.NODE_CPU
        assert node["status"]["allocatable"]["memory"] == bootstrap.NODE_MEMORY
        assert not node["spec"].get("taints")


def test_gateway_api_crds_are_established(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    for name in ("httproutes", "grpcroutes", "gateways", "gatewayclasses"):
        crd = as_dict(api, ext.read_custom_resource_definition(f"{name}.gateway.networking.k8s.io"))
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True"
        annotations = crd["metadata"]["annotations"]
        assert annotations["gateway.networking.k8s.io/bundle-version"] == "v1.4.1"


def test_deployment_with_two_replicas_becomes_available(
    api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": "probe"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="probe"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="main",
                            image="example.invalid/probe:1",
                            resources=client.V1ResourceRequirements(
                                requests={"cpu": "4", "memory": "8Gi"}
                            ),
                        )
                    ]
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment(namespace, deployment)

    def available() -> bool:
        d = as_dict(api, apps.read_namespaced_deployment_status("probe", namespace))
        return bool(d["status"].get("availableReplicas") == 2)

    eventually("deployment available", available)
    listed = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=probe")
    pods = as_dict(api, listed)["items"]
    assert len(pods) == 2
    for pod in pods:
        # Bound by kube-scheduler, run by kwok (no kubelet, no image pull).
        assert pod["spec"]["nodeName"] in bootstrap.NODE_NAMES
        assert pod["status"]["phase"] == "Running"
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        # Admitted through the ServiceAccount plugin: the controller-manager made `default`.
        assert pod["spec"]["serviceAccountName"] == "default"
        assert pod["status"]["podIP"]


def test_garbage_collector_deletes_dependents_of_a_deleted_owner(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    owner = as_dict(
        api,
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        ),
    )
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner["metadata"]["uid"]
    )
    for i in range(2):
        core.create_namespaced_config_map(
            namespace,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"child-{i}", owner_references=[ref])
            ),
        )
    # Background propagation: the apiserver deletes the owner at once and leaves the
    # dependents to the controller-manager's garbage collector.
    core.delete_namespaced_config_map(
        "owner", namespace, body=client.V1DeleteOptions(propagation_policy="Background")
    )

    def children_gone() -> bool:
        items = as_dict(api, core.list_namespaced_config_map(namespace))["items"]
        names = {c["metadata"]["name"] for c in items}
        return not names & {"child-0", "child-1"}

    eventually("dependents garbage-collected", children_gone)


def test_ensure_up_again_returns_the_same_cluster_quickly(cluster: ClusterInfo) -> None:
    started = time.monotonic()
    again = ensure_up()
    assert again == cluster
    assert time.monotonic() - started < 10
