"""The real node's names and configuration files (pure)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import yaml

from scorefleet.dev import nodeconf
from scorefleet.dev.nodeconf import NodeLayout

A = NodeLayout(Path("/root/.cache/scorefleet/cluster-a"))
B = NodeLayout(Path("/root/.cache/scorefleet/cluster-b"))


def test_names_derive_from_the_cluster_dir_and_fit_the_kernel_limits() -> None:
    assert A.tag != B.tag
    assert len(A.bridge) <= 15  # IFNAMSIZ - 1
    assert len(A.chain) <= 28  # iptables chain name limit
    assert {A.bridge, A.chain, A.cgroup_root} != {B.bridge, B.chain, B.cgroup_root}
    assert A.pod_logs.is_relative_to(A.cluster_dir)
    assert A.containerd_state.is_relative_to(A.cluster_dir)
    assert A.short_root != B.short_root


def test_socket_paths_fit_containerds_limit_whatever_the_cluster_dirs_length() -> None:
    # A cluster dir as long as a pytest tmp_path: its node used to put containerd's socket
    # under it, and containerd refused to start ("unix socket path too long (> 104)").
    deep = NodeLayout(Path("/tmp/pytest-of-root/pytest-1234") / ("d" * 200) / "cluster")
    for lay in (A, deep):
        assert lay.sockets[0] == lay.containerd_socket
        assert lay.kubelet_root in lay.sockets[2].parents
        for sock in lay.sockets:
            assert len(str(sock)) <= nodeconf.SOCKET_PATH_LIMIT, sock
            assert not sock.is_relative_to(lay.cluster_dir)
    assert len({str(s) for lay in (A, B, deep) for s in lay.sockets}) == 9


def test_pod_cidr_stays_clear_of_services_and_kwok_pods() -> None:
    for lay in (A, B, NodeLayout(Path("/x")), NodeLayout(Path("/y"))):
        assert lay.pod_cidr.prefixlen == 16
        assert not lay.pod_cidr.overlaps(ipaddress.IPv4Network(nodeconf.SERVICE_CIDR))
        assert not lay.pod_cidr.overlaps(ipaddress.IPv4Network("10.244.0.0/16"))
        assert ipaddress.IPv4Address(lay.node_ip) in lay.pod_cidr


def test_cni_bridge_never_masquerades_and_keeps_ipam_state_in_the_cluster_dir() -> None:
    plugin = json.loads(nodeconf.cni_conflist(A))["plugins"][0]
    assert plugin["bridge"] == A.bridge
    assert plugin["ipMasq"] is False
    assert plugin["ipam"]["dataDir"] == str(A.cni_ipam_dir)
    assert plugin["ipam"]["ranges"][0][0] == {"subnet": str(A.pod_cidr), "gateway": A.node_ip}


def test_kubelet_authenticates_through_the_api_server_only() -> None:
    cfg = yaml.safe_load(nodeconf.kubelet_config(A, ca=Path("/ca"), cert=Path("/c"),
                                                  key=Path("/k"), port=1, healthz_port=2))
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authentication"]["webhook"]["enabled"] is True
    assert cfg["authorization"]["mode"] == "Webhook"
    assert cfg["readOnlyPort"] == 0
    assert cfg["healthzBindAddress"] == "127.0.0.1"
    assert cfg["address"] == A.node_ip
    assert cfg["cgroupRoot"] == A.cgroup_root
    assert cfg["clusterDNS"] == [A.node_ip]
    assert cfg["registerWithTaints"][0]["key"] == nodeconf.REAL_NODE_TAINT


def test_containerd_runs_from_its_own_directories() -> None:
    text = nodeconf.containerd_config(A, "localhost/pause:1")
    assert f'address = "{A.containerd_socket}"' in text
    assert f'address = "{A.sockets[1]}"' in text  # ttrpc
    assert f'root = "{A.containerd_root}"' in text
    assert 'sandbox_image = "localhost/pause:1"' in text
    assert "restrict_oom_score_adj = true" in text  # no CAP_SYS_RESOURCE here


def test_coredns_serves_the_cluster_domain_and_forwards_nothing() -> None:
    text = nodeconf.corefile(A, kubeconfig=Path("/kc"), health_port=1, ready_port=2)
    assert "forward" not in text
    assert f"bind {A.node_ip}" in text
    assert "kubernetes cluster.local" in text


def test_kube_proxy_leaves_conntrack_and_localhost_alone() -> None:
    cfg = yaml.safe_load(nodeconf.kube_proxy_config(A, kubeconfig=Path("/kc"),
                                                     healthz_port=1, metrics_port=2))
    assert cfg["mode"] == "iptables"
    assert cfg["conntrack"]["maxPerCore"] == 0
    assert cfg["iptables"]["localhostNodePorts"] is False
    assert cfg["nodePortAddresses"] == [f"{A.node_ip}/32"]


def test_namespace_annotations_select_and_tolerate_the_real_node() -> None:
    ann = nodeconf.namespace_annotations()
    assert ann["scheduler.alpha.kubernetes.io/node-selector"] == "scorefleet.io/node=real"
    tolerations = json.loads(ann["scheduler.alpha.kubernetes.io/defaultTolerations"])
    assert tolerations == [{"key": nodeconf.REAL_NODE_TAINT, "operator": "Exists",
                            "effect": "NoSchedule"}]
