"""End to end on real scorer pods: the operator's Deployment runs the project's image on the
real node, clients balance per request through cluster DNS, Prometheus discovers the pods,
and the things that hurt in production (rolling updates under load, crashes, config reloads,
scale-up) behave. Each test is bounded in time."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scorefleet import load
from tests.cluster import real_pods
from tests.cluster.real_pods import pipeline_yaml, scorer_pods, wait_ready_pods
from tests.conftest import eventually, kubectl
from tests.scorer.scorer_process import Models

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow,
              pytest.mark.timeout(900)]  # the first test also builds + imports the image


@pytest.fixture(scope="module")
def cluster_operator(real_node: Any, scorer_image: str, models: Models,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The operator as a local process, measuring from the cluster's Prometheus."""
    real_pods.publish_models(models, real_node)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with real_pods.operator(real_node.prometheus_url, log):
        yield real_node


def served_by_pod(node: Any, namespace: str, pipeline: str) -> dict[str, float]:
    rows = real_pods.prom_query(node.prometheus_url, "sum by (pod) (scorefleet_requests_total"
                                f'{{namespace="{namespace}",pipeline="{pipeline}",code="OK"}})')
    return {r["metric"]["pod"]: float(r["value"][1]) for r in rows}


def apply(namespace: str, text: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text)


def target(node: Any, namespace: str, name: str) -> str:
    return load.headless_target(name, namespace, node.dns)


def ready_endpoints(namespace: str, service: str) -> set[str]:
    """The addresses the Service's EndpointSlices list as ready: what the cluster DNS answers."""
    raw = json.loads(kubectl("get", "endpointslices", "-n", namespace, "-l",
                             f"kubernetes.io/service-name={service}", "-o", "json"))
    return {address for s in raw["items"] for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready") for address in e["addresses"]}


def test_status_shows_qps_and_p99_that_prometheus_measured_on_discovered_pods(
        cluster_operator: Any, real_namespace: str, models: Models) -> None:
    node, ns = cluster_operator, real_namespace
    apply(ns, pipeline_yaml("phish", models, node.model_store_url, replicas=2))
    pods = wait_ready_pods(ns, "phish", 2)
    assert {p["spec"]["nodeName"] for p in pods} == {node.name}
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {
        "ghcr.io/scorefleet/scorer:0.1.0"}
    names = {p["metadata"]["name"] for p in pods}
    eventually("Prometheus discovers both pods",
               lambda: real_pods.discovered_pods(node.prometheus_url, ns, "phish") == names,
               timeout=60, interval=1)

    # The client resolves the headless name once, as the load starts: both pods must be in
    # its answer by then (a pod's readiness reaches the endpoints a moment after the pod).
    ips = {p["status"]["podIP"] for p in pods}
    eventually("both pods in the headless Service's endpoints",
               lambda: ready_endpoints(ns, "phish-headless") == ips, timeout=30, interval=0.5)
    result = load.run(target(node, ns, "phish"), rate=100, duration=8, concurrency=4)
    assert result.failed == 0, result.summary()

    # round_robin over the headless Service's addresses: both pods answer, about evenly.
    def per_pod() -> dict[str, float] | None:
        counts = served_by_pod(node, ns, "phish")
        return counts if sum(counts.values()) >= result.sent else None

    counts = eventually("Prometheus has scraped every RPC", per_pod, timeout=30, interval=1)
    assert set(counts) == names
    assert min(counts.values()) > 0.3 * result.sent, counts

    def measured() -> dict[str, Any] | None:
        sp = json.loads(kubectl("get", "sp", "phish", "-n", ns, "-o", "json"))
        stable = (sp.get("status", {}).get("metrics") or {}).get("stable") or {}
        return sp if stable.get("qps") else None

    sp = eventually("status.metrics.stable.qps", measured, timeout=60, interval=1)
    stable = sp["status"]["metrics"]["stable"]
    assert stable["qps"] > 0
    assert 0 < stable["p99LatencyMs"] < 1000
    assert stable["errorRate"] == 0
    assert sp["status"]["metrics"]["measuredAt"].endswith("Z")
    # Rounded for reading (raw rates print as 49.87333333): status and the printer columns.
    assert stable["qps"] == round(stable["qps"], 2)
    assert stable["p99LatencyMs"] == round(stable["p99LatencyMs"], 2)
    header, row = kubectl("get", "sp", "phish", "-n", ns).splitlines()[:2]
    for column in ("QPS", "P99MS"):  # printer columns: the value sits under its title
        shown = row[header.index(column):].split()[0]
        assert len(shown.partition(".")[2]) <= 2 and float(shown) >= 0, (column, row)


def test_rolling_update_of_four_pods_under_steady_load_fails_no_request(
        cluster_operator: Any, real_namespace: str, models: Models) -> None:
    node, ns = cluster_operator, real_namespace
    apply(ns, pipeline_yaml("roll", models, node.model_store_url, replicas=4))
    before = {p["metadata"]["name"] for p in wait_ready_pods(ns, "roll", 4)}
    results: list[load.LoadResult] = []
    loader = threading.Thread(target=lambda: results.append(load.run(
        target(node, ns, "roll"), rate=80, duration=60, concurrency=4)))
    loader.start()
    time.sleep(3)
    # A scorer change that is not a new revision (env, image or model would start a canary):
    # a resources change rolls the Deployment, one surge pod at a time.
    apply(ns, pipeline_yaml("roll", models, node.model_store_url, replicas=4,
                            memory_limit="600Mi"))
    kubectl("rollout", "status", "-n", ns, "deploy/roll-stable", "--timeout=150s")
    after = {p["metadata"]["name"] for p in wait_ready_pods(ns, "roll", 4)}
    loader.join(timeout=90)
    assert not before & after  # every pod was replaced while the load ran
    (result,) = results
    print(f"rolling update of 4 pods under load: {result.summary()}")
    assert result.sent > 1000
    assert result.failed == 0, f"{result.summary()}\n{result.failures}"


def test_sigkilled_scorer_is_restarted_and_counted(cluster_operator: Any, real_namespace: str,
                                                   models: Models) -> None:
    node, ns = cluster_operator, real_namespace
    apply(ns, pipeline_yaml("crash", models, node.model_store_url, replicas=1))
    (pod,) = wait_ready_pods(ns, "crash", 1)
    os.kill(real_pods.container_pid(pod, node.containerd_socket), signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        (p,) = scorer_pods(ns, "crash")
        status = p["status"]["containerStatuses"][0]
        return p if status["restartCount"] == 1 and real_pods.ready(p) else None

    again = eventually("restartCount 1 and Ready again", restarted, timeout=90, interval=1)
    assert again["metadata"]["name"] == pod["metadata"]["name"]
    last = again["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137  # 128 + SIGKILL
    result = load.run(target(node, ns, "crash"), rate=50, duration=2, concurrency=2)
    assert result.failed == 0, result.summary()


def test_configmap_change_is_hot_reloaded_without_a_restart_and_logs_are_readable(
        cluster_operator: Any, real_namespace: str, models: Models) -> None:
    node, ns = cluster_operator, real_namespace
    apply(ns, pipeline_yaml("reload", models, node.model_store_url, replicas=1))
    (pod,) = wait_ready_pods(ns, "reload", 1)
    name = pod["metadata"]["name"]
    assert "scorer reload/stable: 1 workers on" in kubectl("logs", "-n", ns, name)
    # Batching lives only in the ConfigMap: no pod-template change, so no restart; the
    # kubelet updates the mounted file and the scorer applies it (counted in its metrics).
    apply(ns, pipeline_yaml("reload", models, node.model_store_url, replicas=1,
                            queue_delay_us=500))

    def reloaded() -> bool:
        rows = real_pods.prom_query(node.prometheus_url, "scorefleet_config_reloads_total"
                                    f'{{namespace="{ns}",pod="{name}",result="applied"}}')
        return bool(rows) and float(rows[0]["value"][1]) >= 1

    try:
        eventually("Prometheus sees the scorer apply the new config", reloaded, timeout=120,
                   interval=2)
    except AssertionError as err:
        config = kubectl("get", "configmap", "reload-stable", "-n", ns, "-o", "yaml")
        raise AssertionError(f"{err}\n{config}\n{kubectl('logs', '-n', ns, name)[-3000:]}"
                             ) from err
    (same,) = scorer_pods(ns, "reload")
    assert same["metadata"]["name"] == name
    assert same["status"]["containerStatuses"][0]["restartCount"] == 0


def test_scale_up_under_load_is_served_by_new_pods_that_prometheus_discovers(
        cluster_operator: Any, real_namespace: str, models: Models) -> None:
    node, ns = cluster_operator, real_namespace
    apply(ns, pipeline_yaml("grow", models, node.model_store_url, replicas=1))
    wait_ready_pods(ns, "grow", 1)
    results: list[load.LoadResult] = []
    loader = threading.Thread(target=lambda: results.append(load.run(
        target(node, ns, "grow"), rate=60, duration=45, concurrency=4)))
    loader.start()
    time.sleep(2)
    apply(ns, pipeline_yaml("grow", models, node.model_store_url, replicas=3))
    pods = {p["metadata"]["name"] for p in wait_ready_pods(ns, "grow", 3)}
    eventually("Prometheus discovers the new pods",
               lambda: real_pods.discovered_pods(node.prometheus_url, ns, "grow") == pods,
               timeout=60, interval=1)
    loader.join(timeout=70)
    (result,) = results
    assert result.failed == 0, result.summary()
    # The new pods served requests (through the clients' own DNS re-resolution).
    eventually("every pod served", lambda: {
        p for p, n in served_by_pod(node, ns, "grow").items() if n > 0} == pods, timeout=30)


def test_a_pod_failing_its_readiness_probe_gets_no_traffic(
        cluster_operator: Any, real_namespace: str, models: Models) -> None:
    node, ns = cluster_operator, real_namespace
    apply(ns, pipeline_yaml("gate", models, node.model_store_url, replicas=1))
    (good,) = wait_ready_pods(ns, "gate", 1)
    # A second scorer from the operator's own pod template, matched by the pipeline's
    # Services (the pipeline label), whose probe asks for a model it never loads: it runs and
    # answers, but never turns Ready. (No pod-template-hash: no ReplicaSet adopts it.)
    template = json.loads(kubectl("get", "deploy", "gate-stable", "-n", ns, "-o", "json")
                          )["spec"]["template"]
    template["spec"]["containers"][0]["readinessProbe"]["grpc"]["service"] = "never-loaded"
    rogue = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "gate-unready", "labels": {"scorefleet.io/pipeline": "gate"},
                          "annotations": template["metadata"]["annotations"]},
             "spec": template["spec"]}
    kubectl("create", "-n", ns, "-f", "-", stdin=json.dumps(rogue))
    ip = eventually("the unready pod's scorer is up (Prometheus scrapes it)", lambda: next(
        (r["metric"]["instance"].split(":")[0] for r in real_pods.prom_query(
            node.prometheus_url, f'up{{namespace="{ns}",pod="gate-unready"}} == 1')), None),
        timeout=90, interval=1)
    pod = json.loads(kubectl("get", "pod", "gate-unready", "-n", ns, "-o", "json"))
    assert not real_pods.ready(pod)

    # Through cluster DNS (headless) and through the ClusterIP (kube-proxy, a new connection
    # per channel): only the Ready pod answers.
    result = load.run(target(node, ns, "gate"), rate=50, duration=4, concurrency=2)
    assert result.failed == 0, result.summary()
    cluster_ip = kubectl("get", "svc", "gate", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
    for _ in range(20):
        via_service = load.run(f"ipv4:{cluster_ip}:9000", rate=10, duration=0.1,
                               concurrency=1)
        assert via_service.failed == 0, via_service.summary()
    sent = result.sent + 20

    def scraped() -> dict[str, float] | None:
        counts = served_by_pod(node, ns, "gate")
        return counts if sum(counts.values()) >= sent else None

    counts = eventually("Prometheus has scraped every RPC", scraped, timeout=30)
    assert counts.get("gate-unready", 0) == 0, counts
    assert counts[good["metadata"]["name"]] == sent, counts
    # ...and not because it cannot serve: asked directly, it answers.
    direct = load.run(f"ipv4:{ip}:9000", rate=10, duration=0.5, concurrency=1)
    assert direct.failed == 0 and direct.sent > 0, direct.summary()
