"""The real node: pods run as containers, Services and cluster DNS work from the host and
from pods, the API server reaches the kubelet (logs, exec, port-forward), kwok keeps the fake
nodes, and pod traffic stays on the machine. Uses the node tests' app image (testimages.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from scorefleet.dev import nodeconf
from scorefleet.dev.nodeconf import NodeLayout
from tests.conftest import eventually, kubectl
from tests.dev import dns, testimages

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: %(image)s
        imagePullPolicy: Never
        args: [serve, "8080"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1,
                         failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""


def http_get(url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode()).strip()


def pods(namespace: str, selector: str = "app=web") -> list[dict[str, Any]]:
    out = kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


@pytest.fixture
def web(real_namespace: str) -> Iterator[str]:
    kubectl("apply", "-n", real_namespace, "-f", "-", stdin=APP % {"image": testimages.APP})
    kubectl("rollout", "status", "-n", real_namespace, "deploy/web", "--timeout=90s")
    # kube-proxy programs the Service a moment after its endpoints turn ready.
    cluster_ip = kubectl("get", "svc", "web", "-n", real_namespace, "-o",
                         "jsonpath={.spec.clusterIP}")
    eventually("the Service answers", lambda: _try_get(f"http://{cluster_ip}/"), timeout=30)
    yield real_namespace


def test_real_node_is_ready_labelled_and_tainted(real_node: Any) -> None:
    node = json.loads(kubectl("get", "node", real_node.name, "-o", "json"))
    key, value = nodeconf.REAL_NODE_LABEL
    assert node["metadata"]["labels"][key] == value
    assert {"key": nodeconf.REAL_NODE_TAINT, "value": "true", "effect": "NoSchedule"} in \
        node["spec"]["taints"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_node.ip
    # kwok keeps its fake nodes (and only those) Ready.
    kwok = json.loads(kubectl("get", "nodes", "-l", nodeconf.KWOK_NODE_SELECTOR, "-o", "json"))
    assert kwok["items"]
    for n in kwok["items"]:
        assert n["status"]["nodeInfo"]["kubeletVersion"] == "fake"


def test_pods_run_on_the_real_node_and_serve_through_their_service(web: str,
                                                                    real_node: Any) -> None:
    running = pods(web)
    assert {p["spec"]["nodeName"] for p in running} == {real_node.name}
    for p in running:
        ip = p["status"]["podIP"]
        assert ip.startswith(real_node.pod_cidr.split(".0.0/")[0] + ".")
        assert http_get(f"http://{ip}:8080/") == p["metadata"]["name"]  # host -> pod
    cluster_ip = kubectl("get", "svc", "web", "-n", web, "-o", "jsonpath={.spec.clusterIP}")
    assert cluster_ip.startswith("10.96.")
    # kube-proxy balances per connection over both pods: host -> ClusterIP. Its rules follow
    # the EndpointSlice within a second or so of the pods turning Ready.
    names = {p["metadata"]["name"] for p in running}
    seen: set[str] = set()

    def both_answered() -> bool:
        seen.update(http_get(f"http://{cluster_ip}/") for _ in range(10))
        return seen == names

    eventually(f"both pods answer through {cluster_ip}", both_answered, timeout=20)


def test_pod_reaches_a_service_by_its_cluster_dns_name(web: str) -> None:
    name = pods(web)[0]["metadata"]["name"]
    names = {p["metadata"]["name"] for p in pods(web)}

    def answered() -> str | None:
        # CoreDNS learns a new Service from its watch a moment after the API server has it.
        out = kubectl("exec", "-n", web, name, "--", "/app", "get",
                      f"http://web.{web}.svc.cluster.local/", check=False).strip()
        return out if out in names else None

    assert eventually("the pod reaches web by its DNS name", answered, timeout=30, interval=1)


def test_cluster_dns_answers_the_cluster_domain_and_nothing_else(web: str,
                                                                  real_node: Any) -> None:
    cluster_ip = kubectl("get", "svc", "web", "-n", web, "-o", "jsonpath={.spec.clusterIP}")
    assert dns.query(real_node.dns, f"web.{web}.svc.cluster.local") == (dns.NOERROR,
                                                                         [cluster_ip])
    # No upstream: names outside the cluster are refused, never forwarded.
    assert dns.query(real_node.dns, "example.com")[0] == dns.REFUSED


def test_logs_exec_and_port_forward_reach_the_kubelet(web: str) -> None:
    name = pods(web)[0]["metadata"]["name"]
    assert kubectl("exec", "-n", web, name, "--", "/app", "echo", "hi", "there").strip() == \
        "hi there"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    forward = subprocess.Popen(["kubectl", "port-forward", "-n", web, f"pod/{name}",
                                f"{port}:8080"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert eventually("port-forward answers",
                          lambda: _try_get(f"http://127.0.0.1:{port}/"), timeout=30) == name
    finally:
        forward.terminate()
        forward.communicate(timeout=10)
    assert "request GET / from 127.0.0.1" in kubectl("logs", "-n", web, name)


def _try_get(url: str) -> str | None:
    try:
        return http_get(url, timeout=2)
    except OSError:
        return None


def test_a_pod_failing_readiness_leaves_the_service(web: str) -> None:
    first, second = (p["metadata"]["name"] for p in pods(web))
    ip = next(p["status"]["podIP"] for p in pods(web) if p["metadata"]["name"] == first)
    http_get(f"http://{ip}:8080/unready")

    def not_ready() -> bool:
        p = json.loads(kubectl("get", "pod", first, "-n", web, "-o", "json"))
        ready = [c for c in p["status"]["conditions"] if c["type"] == "Ready"]
        return bool(ready[0]["status"] == "False")

    eventually("pod NotReady", not_ready, timeout=30)
    cluster_ip = kubectl("get", "svc", "web", "-n", web, "-o", "jsonpath={.spec.clusterIP}")
    time.sleep(2)  # kube-proxy syncs rules at most once a second
    assert {http_get(f"http://{cluster_ip}/") for _ in range(20)} == {second}


def test_pods_outside_annotated_namespaces_stay_on_kwok_nodes(namespace: str) -> None:
    kubectl("run", "plain", "-n", namespace, f"--image={testimages.APP}",
            "--image-pull-policy=Never")
    node = eventually("pod scheduled", lambda: kubectl(
        "get", "pod", "plain", "-n", namespace, "-o", "jsonpath={.spec.nodeName}"), timeout=30)
    assert node.startswith("kwok-node-")


def test_pod_traffic_to_off_machine_addresses_is_dropped(web: str, real_node: Any,
                                                         control_plane: Any) -> None:
    chain = NodeLayout(control_plane.state_dir).chain

    def dropped() -> int:
        out = subprocess.run(["iptables", "-w", "-L", chain, "-v", "-x", "-n"],
                             capture_output=True, text=True, check=True).stdout
        return sum(int(line.split()[0]) for line in out.splitlines()[2:] if "DROP" in line)

    before = dropped()
    name = pods(web)[0]["metadata"]["name"]
    # TEST-NET-3 (RFC 5737): routed towards the default gateway if the rule were missing.
    out = kubectl("exec", "-n", web, name, "--", "/app", "get", "http://203.0.113.1/",
                  check=False)
    assert "Timeout" in out or "timeout" in out, out
    assert dropped() > before
