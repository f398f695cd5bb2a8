"""Room in the cluster for N pipelines: ClusterIPs and kwok node capacity, added through the
Kubernetes API when missing (a ServiceCIDR object, more kwok Nodes), never by restarting the
control plane. On a cluster that already has room nothing is added."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import fleet
from .operator_process import apply, kubectl

KWOK_SELECTOR = "type=kwok"


@dataclass
class Added:
    service_cidr: str | None = None
    nodes: list[str] = field(default_factory=list)


def _items(*args: str) -> list[fleet.Manifest]:
    return list(json.loads(kubectl("get", *args, "-o", "json"))["items"])


def free_service_ips() -> int:
    cidrs = [c for sc in _items("servicecidrs") for c in sc["spec"]["cidrs"]]
    used = sum(1 for s in _items("services", "-A")
               if s["spec"].get("clusterIP") not in (None, "", "None"))
    return fleet.service_ips(cidrs) - used


def free_pod_slots() -> int:
    """Pods the kwok nodes still take, by pod count, CPU and memory (at the default request)."""
    slots = 0
    for node in _items("nodes", "-l", KWOK_SELECTOR):
        alloc = node["status"]["allocatable"]
        memory_gi = _gi(alloc.get("memory", "0"))
        slots += min(int(alloc.get("pods", "0")), int(_cores(alloc.get("cpu", "0"))
                                                      / fleet.POD_CPU),
                     int(memory_gi / fleet.POD_MEMORY_GI))
    pods = sum(1 for p in _items("pods", "-A")
               if p["status"].get("phase") not in ("Succeeded", "Failed"))
    return slots - pods


def _cores(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def _gi(q: str) -> float:
    units = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return float(q[:-2]) * factor
    return float(q) / 2**30


def ensure(pipelines: int, shape: fleet.NodeShape, prefix: str = "scale-bench") -> Added:
    added = Added()
    if free_service_ips() < pipelines + 16:
        name = f"{prefix}-services"
        apply([fleet.service_cidr(name)])
        _wait(lambda: _condition("servicecidr", name, "Ready"), f"ServiceCIDR {name} Ready")
        added.service_cidr = name
    more = fleet.kwok_nodes_needed(pipelines, free_pod_slots(), shape)
    if more:
        (template, *_) = _items("nodes", "-l", KWOK_SELECTOR)
        meta = template["metadata"]
        base = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"labels": meta.get("labels", {}),
                             "annotations": meta.get("annotations", {})},
                "spec": {}, "status": {k: template["status"][k]
                                       for k in ("allocatable", "capacity", "nodeInfo")}}
        added.nodes = [f"{prefix}-node-{i}" for i in range(more)]
        apply([fleet.kwok_node(base, n, shape) for n in added.nodes])
        for n in added.nodes:
            _wait(functools.partial(_condition, "node", n, "Ready"), f"node {n} Ready")
    return added


def remove(added: Added) -> None:
    for n in added.nodes:
        kubectl("delete", "node", n, "--ignore-not-found", "--wait=false", check=False)
    if added.service_cidr:
        kubectl("delete", "servicecidr", added.service_cidr, "--ignore-not-found",
                "--wait=false", check=False)


def _condition(kind: str, name: str, ctype: str) -> bool:
    obj = json.loads(kubectl("get", kind, name, "-o", "json"))
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in obj.get("status", {}).get("conditions", []))


def _wait(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(1.0)
