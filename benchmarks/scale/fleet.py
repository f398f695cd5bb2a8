"""What the scale benchmark puts into the cluster (pure: manifests and sizing, no I/O).

- `pipelines()`: N copies of one small pipeline that leaves every spec default alone (2
  replicas of 1 CPU / 512Mi each), so the figures are the defaults' figures.
- `kwok_nodes()`: enough fake nodes for their pods, sized like real nodes (110 pods each, the
  kubelet's default), added beside the ones `scorefleet up` made.
- `service_cidr()`: an extra ServiceCIDR (networking.k8s.io/v1) when the cluster's Service
  range is too small for one ClusterIP Service per pipeline (the headless ones take no IP).
- `flow_schemas()`: API Priority and Fairness FlowSchemas matching only the operator's
  ServiceAccount, so that the API server's own `apiserver_flowcontrol_dispatched_requests_total`
  counts the operator's requests apart from every other client's. Two schemas: the operator's
  GETs of single pipelines (exactly one per reconcile, so they count reconciles) and all else.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Any

Manifest = dict[str, Any]

REPLICAS = 2  # the spec's default scaling.minReplicas
POD_CPU = 1.0  # the spec's default scorer request
POD_MEMORY_GI = 0.5
# A range no local cluster uses: the default Service range (10.0.0.0/24, or 10.96.0.0/16 as in
# kind), the kwok pod range (10.244.0.0/16) and the real node's (10.100-199.x.x) lie elsewhere.
EXTRA_SERVICE_CIDR = "10.64.0.0/16"
FLOW_RECONCILES = "scorefleet-bench-reconciles"
FLOW_OTHER = "scorefleet-bench-operator"


def pipeline(name: str, namespace: str) -> Manifest:
    return {
        "apiVersion": "scorefleet.io/v1alpha1",
        "kind": "ScoringPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": {"name": "phishing", "version": "v1",
                           "uri": "file:///models/phishing-v1.onnx", "threshold": 0.8}},
    }


def pipeline_names(count: int) -> list[str]:
    return [f"p{i:04d}" for i in range(count)]


def pipelines(count: int, namespace: str) -> list[Manifest]:
    return [pipeline(name, namespace) for name in pipeline_names(count)]


@dataclass(frozen=True)
class NodeShape:
    pods: int = 110
    cpu: int = 128
    memory_gi: int = 512


def kwok_nodes_needed(pipelines: int, existing_free_pods: int, shape: NodeShape,
                      headroom: float = 0.1) -> int:
    """How many more nodes the pipelines' pods need (by pod count, CPU and memory)."""
    pods = math.ceil(pipelines * REPLICAS * (1 + headroom))
    missing = max(0, pods - existing_free_pods)
    per_node = min(shape.pods, int(shape.cpu / POD_CPU), int(shape.memory_gi / POD_MEMORY_GI))
    return math.ceil(missing / per_node)


def kwok_node(template: Manifest, name: str, shape: NodeShape) -> Manifest:
    """A copy of a node `scorefleet up` makes (its labels are what kwok manages), renamed and
    resized."""
    resources = {"cpu": str(shape.cpu), "memory": f"{shape.memory_gi}Gi",
                 "pods": str(shape.pods), "ephemeral-storage": "1Ti"}
    meta = template["metadata"]
    labels = {**meta.get("labels", {}), "kubernetes.io/hostname": name}
    return {**template,
            "metadata": {**meta, "name": name, "labels": labels},
            "status": {**template["status"], "allocatable": resources, "capacity": resources}}


def service_ips(cidrs: list[str]) -> int:
    """Usable ClusterIPs in these ranges (network and broadcast addresses excluded)."""
    return sum(max(0, ipaddress.ip_network(c).num_addresses - 2) for c in cidrs)


def service_cidr(name: str, cidr: str = EXTRA_SERVICE_CIDR) -> Manifest:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
            "metadata": {"name": name}, "spec": {"cidrs": [cidr]}}


def flow_schemas(sa_namespace: str, sa_name: str) -> list[Manifest]:
    subject = {"kind": "ServiceAccount",
               "serviceAccount": {"namespace": sa_namespace, "name": sa_name}}

    def schema(name: str, precedence: int, rule: Manifest) -> Manifest:
        return {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
                "metadata": {"name": name},
                "spec": {"matchingPrecedence": precedence,
                         "priorityLevelConfiguration": {"name": "workload-high"},
                         "distinguisherMethod": {"type": "ByUser"},
                         "rules": [{"subjects": [subject], **rule}]}}

    return [
        schema(FLOW_RECONCILES, 90, {"resourceRules": [{
            "verbs": ["get"], "apiGroups": ["scorefleet.io"], "resources": ["scoringpipelines"],
            "namespaces": ["*"]}]}),
        schema(FLOW_OTHER, 91, {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                               "clusterScope": True, "namespaces": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}),
    ]
