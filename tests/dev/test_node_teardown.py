"""Stopping the real node with pods running puts the host back: no process, interface, netns,
iptables rule, mount, cgroup or changed sysctl is left. The node is started again afterwards
on the same control plane, so the rest of the session keeps its real node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scorefleet.dev import cluster, hostnet, node, processes
from scorefleet.dev.nodeconf import NodeLayout
from tests.conftest import kubectl, session_images
from tests.dev import testimages
from tests.dev.test_node import APP

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]


def leftovers(lay: NodeLayout) -> list[str]:
    """Everything of this node still on the host."""
    found = []
    for pid in (p for p in Path("/proc").iterdir() if p.name.isdigit()):
        argv = " ".join(processes.cmdline(int(pid.name)))
        if str(lay.root) in argv or str(lay.short_root) in argv:
            found.append(f"process {pid.name}: {argv[:120]}")
    if hostnet.link_exists(lay.bridge):
        found.append(f"bridge {lay.bridge}")
    found += [f"netns {ns}" for ns in hostnet.pod_netns(lay)]
    found += [f"iptables: {r}" for r in hostnet.iptables_mentions(
        (lay.bridge, lay.chain, "KUBE-", str(lay.pod_cidr)))]
    found += [f"mount {m}" for m in hostnet.mounts_under(lay.dirs)]
    if lay.short_root.exists():
        found.append(f"directory {lay.short_root}")
    found += [f"cgroup {h}" for h in Path("/sys/fs/cgroup").glob(f"*{lay.cgroup_root}")]
    found += [f"link {p}" for p in Path("/sys/class/net").iterdir()
              if p.name.startswith("veth") and (p / "master").resolve().name == lay.bridge]
    return found


def test_stopping_the_node_leaves_nothing_and_it_starts_again(
        real_namespace: str, control_plane: Any, tmp_path: Path) -> None:
    lay = NodeLayout(control_plane.state_dir)
    kubectl("apply", "-n", real_namespace, "-f", "-", stdin=APP % {"image": testimages.APP})
    kubectl("rollout", "status", "-n", real_namespace, "deploy/web", "--timeout=90s")
    owner = json.loads(node.OWNER_FILE.read_text())
    assert owner["cluster_dir"] == str(lay.cluster_dir)
    assert leftovers(lay), "a running node should show up in the leftover check"

    problems = cluster.stop_node()
    try:
        assert problems == []
        assert leftovers(lay) == []
        assert hostnet.read_sysctls(owner["sysctls"]) == owner["sysctls"]
        assert not node.OWNER_FILE.exists()
        # (/run/containerd is left out: any containerd on the machine, ours or not, uses it.)
        for d in (d for d in hostnet.HOST_DIRS if d.name != "containerd"):
            assert str(d) in owner["host_dirs"] or not d.exists(), d
    finally:
        info = cluster.start_node(session_images(tmp_path))
    assert info.node is not None
    kubectl("rollout", "status", "-n", real_namespace, "deploy/web", "--timeout=90s")
