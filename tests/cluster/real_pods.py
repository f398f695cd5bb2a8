"""Helpers for tests on real scorer pods: the operator process, a pipeline whose model comes from
the cluster's model store, and reading pods, Prometheus and containerd."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import eventually, kubectl
from tests.operator_process import OperatorProcess
from tests.scorer.scorer_process import Models


def pipeline_yaml(name: str, models: Models, store_url: str, *, replicas: int,
                  version: str = "v1", threshold: float = 0.5, env: str = "",
                  queue_delay_us: int = 1000, memory_limit: str = "512Mi") -> str:
    """A small pipeline for a 2-core node: 100m CPU and one worker per pod. Connections are
    recycled every 10 s, so DNS-balanced clients find new pods within seconds."""
    file = f"model-{version}.onnx"
    env_block = f"\n    env: [{{name: ROLL, value: \"{env}\"}}]" if env else ""
    return f"""
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata: {{name: {name}}}
spec:
  model: {{name: phish, version: {version}, uri: "{store_url}/{file}",
           sha256: "{models.sha256[file]}", threshold: {threshold}}}
  scorer:
    resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{memory: {memory_limit}}}}}
    workers: 1
    batching: {{maxQueueDelayUs: {queue_delay_us}}}
    drainDelay: 2s
    gracePeriod: 5s
    maxConnectionAge: 10s{env_block}
  scaling: {{minReplicas: {replicas}, maxReplicas: {replicas}}}
"""


def publish_models(models: Models, node: Any) -> None:
    for f in models.dir.glob("*.onnx"):
        shutil.copy(f, node.models / f.name)


def operator(prometheus_url: str, log: Path) -> OperatorProcess:
    """The operator measuring every second from the node's Prometheus; use it as a context
    manager (started on entry, stopped cleanly on exit). Its logs go beside `log`."""
    return OperatorProcess(log.parent, {"SCOREFLEET_PROMETHEUS_URL": prometheus_url,
                                        "SCOREFLEET_RESYNC_SECONDS": "1",
                                        "SCOREFLEET_METRICS_WINDOW": "15s"})


def scorer_pods(namespace: str, pipeline: str) -> list[dict[str, Any]]:
    out = kubectl("get", "pods", "-n", namespace, "-l", f"scorefleet.io/pipeline={pipeline}",
                  "-o", "json")
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def wait_ready_pods(namespace: str, pipeline: str, count: int,
                    timeout: float = 180) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        pods = scorer_pods(namespace, pipeline)
        good = [p for p in pods if ready(p)]
        return good if len(good) == count and len(pods) == count else None

    return eventually(f"{count} ready scorer pods of {pipeline}", check, timeout=timeout,
                      interval=1)


def prom_query(url: str, query: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query}), timeout=5) as resp:
        result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
    return result


def discovered_pods(url: str, namespace: str, pipeline: str) -> set[str]:
    """Pods Prometheus scrapes successfully for the pipeline (from its own `up` series)."""
    rows = prom_query(url, f'up{{namespace="{namespace}",pipeline="{pipeline}"}} == 1')
    return {r["metric"]["pod"] for r in rows}


def container_pid(pod: dict[str, Any], socket: Path) -> int:
    """The host pid of the scorer container's first process, from containerd."""
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    out = subprocess.run(["ctr", "--address", str(socket), "-n", "k8s.io", "tasks", "ls"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines()[1:]:
        task, pid, _status = line.split()
        if task == cid:
            return int(pid)
    raise AssertionError(f"no containerd task for {cid}")
