"""Component command lines and the kwok Node manifests (pure)."""

from __future__ import annotations

from pathlib import Path

import yaml

from scorefleet.dev import bootstrap, components
from scorefleet.dev.components import START_ORDER, Layout, Ports

PORTS = Ports(2379, 2380, 6443, 10257, 10259, 10247)
LAY = Layout(Path("/state"))


def _argv(name: str) -> list[str]:
    return components.args(name, Path(f"/bin/{name}"), LAY, PORTS)


def test_every_listener_is_on_loopback() -> None:
    for name in START_ORDER:
        argv = _argv(name)
        assert argv[0] == f"/bin/{name}"
        for arg in argv[1:]:
            assert "=0.0.0.0" not in arg
            if "://" in arg or "address=" in arg:
                assert "127.0.0.1" in arg, arg


def test_etcd_skips_fsync_and_apiserver_uses_it() -> None:
    assert "--unsafe-no-fsync" in _argv("etcd")
    assert "--etcd-servers=http://127.0.0.1:2379" in _argv("kube-apiserver")


def test_apiserver_has_rbac_client_ca_and_service_account_keys() -> None:
    argv = _argv("kube-apiserver")
    assert "--authorization-mode=Node,RBAC" in argv
    assert "--service-cluster-ip-range=10.96.0.0/16" in argv  # ~65k Services, as kind
    assert "--client-ca-file=/state/pki/ca.crt" in argv
    assert "--service-account-issuer=https://127.0.0.1:6443/" in argv
    assert "--service-account-signing-key-file=/state/pki/sa.key" in argv
    assert "--secure-port=6443" in argv
    # ServiceAccount admission stays on; only the plugin that taints new nodes is off.
    disabled = [a for a in argv if a.startswith("--disable-admission-plugins")]
    assert disabled == ["--disable-admission-plugins=TaintNodesByCondition"]


def test_apiserver_reaches_kubelets_by_address_with_a_client_certificate() -> None:
    argv = _argv("kube-apiserver")
    assert "--kubelet-preferred-address-types=InternalIP" in argv
    assert "--kubelet-client-certificate=/state/pki/apiserver-kubelet-client.crt" in argv
    assert "--kubelet-certificate-authority=/state/pki/ca.crt" in argv
    enabled = next(a for a in argv if a.startswith("--enable-admission-plugins="))
    assert set(enabled.split("=", 1)[1].split(",")) == {
        "NodeRestriction", "PodNodeSelector", "PodTolerationRestriction"}


def test_controllers_and_scheduler_do_not_leader_elect() -> None:
    for name in ("kube-controller-manager", "kube-scheduler"):
        argv = _argv(name)
        assert "--leader-elect=false" in argv
        assert "--kubeconfig=/state/kubeconfig" in argv
    kcm = _argv("kube-controller-manager")
    assert "--root-ca-file=/state/pki/ca.crt" in kcm
    assert "--controllers=*,-nodelifecycle" in kcm  # kwok's heartbeats are too slow for it


def test_kwok_manages_only_the_fake_nodes_and_serves_on_loopback() -> None:
    argv = _argv("kwok")
    assert "--manage-all-nodes=false" in argv
    assert "--manage-nodes-with-label-selector=type=kwok" in argv  # never the real node
    assert "--server-address=127.0.0.1:10247" in argv
    assert "--node-lease-duration-seconds=40" in argv  # Leases and a 20-25 s heartbeat


def test_health_endpoints() -> None:
    assert components.health("kube-apiserver", PORTS).url == "https://127.0.0.1:6443/readyz"
    assert components.health("kube-apiserver", PORTS).authenticated
    assert components.health("etcd", PORTS).url == "http://127.0.0.1:2379/health"
    assert not components.health("kube-scheduler", PORTS).authenticated


def test_nodes_are_untainted_and_have_the_allocatable_asked_for() -> None:
    docs = list(yaml.safe_load_all(bootstrap.nodes_yaml()))
    assert [d["metadata"]["name"] for d in docs] == list(bootstrap.NODE_NAMES)
    for node in docs:
        assert node["kind"] == "Node"
        assert "taints" not in node["spec"]
        assert node["status"]["allocatable"]["cpu"] == "32"
        assert node["status"]["allocatable"]["memory"] == "256Gi"
        assert node["status"]["capacity"] == node["status"]["allocatable"]
        assert node["metadata"]["labels"]["type"] == "kwok"


def test_kwok_node_count_and_size_are_chosen_by_the_caller() -> None:
    nodes = bootstrap.KwokNodes(count=5, cpu="96", memory="768Gi", pods="500")
    docs = list(yaml.safe_load_all(bootstrap.nodes_yaml(nodes)))
    assert [d["metadata"]["name"] for d in docs] == [f"kwok-node-{i}" for i in range(5)]
    assert {d["status"]["allocatable"]["cpu"] for d in docs} == {"96"}
    assert {d["status"]["allocatable"]["pods"] for d in docs} == {"500"}
