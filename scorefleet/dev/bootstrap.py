"""What `up` puts into a fresh cluster: kwok Nodes and the Gateway API CRDs.

Applied with the kubectl we built, like a person would, rather than through a client library.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NODE_NAMES = ("kwok-node-0", "kwok-node-1")
NODE_CPU = "32"
NODE_MEMORY = "256Gi"
NODE_PODS = "110"


@dataclass(frozen=True)
class KwokNodes:
    """How many fake nodes `up` creates and how big each is (`scorefleet up --kwok-nodes`).

    Two nodes of 32 CPUs hold only about 60 pipelines with the default requests; scale
    tests ask for more.
    """

    count: int = len(NODE_NAMES)
    cpu: str = NODE_CPU
    memory: str = NODE_MEMORY
    pods: str = NODE_PODS

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"kwok-node-{i}" for i in range(self.count))


def node_manifest(name: str, cpu: str = NODE_CPU, memory: str = NODE_MEMORY,
                  pods: str = NODE_PODS) -> dict[str, Any]:
    """A Node for kwok to run.

    No kwok taint (unlike kwok's example node): ordinary Deployments should schedule onto
    these nodes without tolerations. The Node API keeps `.status` given at create time (a
    kubelet registers that way), and kwok's node-initialize stage keeps the allocatable it
    finds, so this is what the scheduler sees.
    """
    resources = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }


def nodes_yaml(nodes: KwokNodes | None = None) -> str:
    nodes = nodes or KwokNodes()
    return yaml.safe_dump_all(
        [node_manifest(n, nodes.cpu, nodes.memory, nodes.pods) for n in nodes.names],
        sort_keys=False)


def kubectl(bin_dir: Path, kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    proc = subprocess.run(
        [str(bin_dir / "kubectl"), *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def create_nodes(bin_dir: Path, kubeconfig: Path, nodes: KwokNodes | None = None) -> None:
    kubectl(bin_dir, kubeconfig, "apply", "-f", "-", stdin=nodes_yaml(nodes))


def apply_gateway_crds(bin_dir: Path, kubeconfig: Path, crd_dir: Path) -> None:
    # Server-side: the CRDs are too large for client-side apply's last-applied annotation.
    kubectl(bin_dir, kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(crd_dir))
    kubectl(
        bin_dir,
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "-f",
        str(crd_dir),
    )
