"""Real scorer pods on the local cluster's node: `scorefleet up` wall time, pod start-up, memory,
a rolling update under load, and how many pods the machine holds within the example's SLO.

    SCOREFLEET_CLUSTER_DIR=/tmp/bench-cluster .venv/bin/python benchmarks/local_cluster/real_pods.py

Needs root (the real node) and the machine's one real node free. It runs `scorefleet up` on a
cluster directory of its own (timed: binaries and images as cached on this machine), measures,
and always ends with `scorefleet down` (timed). Writes benchmarks/local_cluster/results.json:

- up_s / down_s: wall time of `scorefleet up` (control plane, real node, image import, operator,
  the example pipeline Ready, its short load, Prometheus's numbers) and of `scorefleet down`;
- image: the scorer image's compressed and unpacked size (build times: docs/deploy.md);
- pod create -> Ready: N pods made one after another from the operator's own pod template of
  `phishing-stable` (same image, command, probes, config), timed from `kubectl create` to the
  Ready condition seen by polling every 0.1 s; median and max;
- memory per scorer pod: the pod cgroup's RSS (cgroup v1 memory.stat total_rss);
- rolling update: the pipeline at 4 pods, steady load through cluster DNS, a pod-template
  change (the memory limit) rolls all 4; failed requests (target 0);
- pods within the SLO: the pipeline fixed at N pods for each N, 20 s of load at a fixed rate per
  pod; the p99 the load generator measured against the example's SLO (25 ms, errors <= 0.1%).
The machine's load average is recorded before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scorefleet import load
from scorefleet.dev import cluster
from scorefleet.dev.nodeconf import NodeLayout

OUT = Path(__file__).with_name("results.json")
PIPELINE, NAMESPACE = "phishing", "default"
SLO_P99_MS, SLO_ERROR_RATE = 25.0, 0.001  # examples/pipeline.yaml


def kubectl(info: cluster.ClusterInfo, *args: str, stdin: str | None = None) -> str:
    return subprocess.run([str(info.bin_dir / "kubectl"), f"--kubeconfig={info.kubeconfig}",
                           "-n", NAMESPACE, *args], input=stdin, capture_output=True, text=True,
                          check=True, timeout=330).stdout


def scorefleet(*args: str, timeout: float) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "scorefleet.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    return time.monotonic() - started, proc


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def startup_seconds(info: cluster.ClusterInfo, count: int) -> list[float]:
    template = json.loads(kubectl(info, "get", "deploy", f"{PIPELINE}-stable", "-o", "json")
                          )["spec"]["template"]
    times = []
    for i in range(count):
        # Not matched by the pipeline's Services or Deployments (its own label only).
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"startup-{i}", "labels": {"bench": "startup"}},
               "spec": template["spec"]}
        started = time.monotonic()
        kubectl(info, "create", "-f", "-", stdin=json.dumps(pod))
        while not ready(json.loads(kubectl(info, "get", "pod", f"startup-{i}", "-o", "json"))):
            if time.monotonic() - started > 120:
                raise TimeoutError(f"startup-{i} not Ready within 120 s")
            time.sleep(0.1)
        times.append(time.monotonic() - started)
        kubectl(info, "delete", "pod", f"startup-{i}", "--wait=false")
        print(f"startup-{i}: {times[-1]:.2f} s", flush=True)
    return times


def memory_mb(info: cluster.ClusterInfo) -> dict[str, float]:
    pods = json.loads(kubectl(info, "get", "pods", "-l", f"scorefleet.io/pipeline={PIPELINE}",
                              "-o", "json"))["items"]
    root = Path("/sys/fs/cgroup/memory") / NodeLayout(info.state_dir).cgroup_root.lstrip("/")
    out = {}
    for pod in pods:
        uid = pod["metadata"]["uid"]
        for d in root.rglob(f"pod{uid}"):
            stat = dict(line.split() for line in (d / "memory.stat").read_text().splitlines())
            out[pod["metadata"]["name"]] = round(int(stat["total_rss"]) / 1e6, 1)
    return out


def fix_replicas(info: cluster.ClusterInfo, n: int) -> None:
    """min = max = n: the autoscaler holds the size; wait for exactly n Ready pods."""
    kubectl(info, "patch", "sp", PIPELINE, "--type=merge", "-p",
            json.dumps({"spec": {"scaling": {"minReplicas": n, "maxReplicas": n}}}))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        pods = json.loads(kubectl(info, "get", "pods", "-l",
                                  f"scorefleet.io/pipeline={PIPELINE}", "-o", "json"))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(live) == n and all(ready(p) for p in live):
            return
        time.sleep(1)
    raise TimeoutError(f"{PIPELINE}: {n} Ready pods not within 300 s")


def target(info: cluster.ClusterInfo) -> str:
    assert info.node is not None
    return load.headless_target(PIPELINE, NAMESPACE, info.node.dns)


def rolling_update(info: cluster.ClusterInfo, rate: float = 80, seconds: float = 90
                   ) -> dict[str, Any]:
    fix_replicas(info, 4)
    before = {p["metadata"]["name"] for p in json.loads(kubectl(
        info, "get", "pods", "-l", f"scorefleet.io/pipeline={PIPELINE}", "-o", "json"))["items"]}
    results: list[load.LoadResult] = []
    loader = threading.Thread(target=lambda: results.append(
        load.run(target(info), rate=rate, duration=seconds, concurrency=4)))
    loader.start()
    time.sleep(5)
    started = time.monotonic()
    # Not env, image or model: those are a new revision, rolled out as a canary.
    limit = json.loads(kubectl(info, "get", "sp", PIPELINE, "-o", "json"))["spec"]["scorer"][
        "resources"]["limits"]["memory"]
    kubectl(info, "patch", "sp", PIPELINE, "--type=merge", "-p", json.dumps(
        {"spec": {"scorer": {"resources": {"limits": {
            "memory": "1100Mi" if limit != "1100Mi" else "1Gi"}}}}}))
    kubectl(info, "rollout", "status", f"deploy/{PIPELINE}-stable", "--timeout=300s")
    rolled_s = time.monotonic() - started
    loader.join(timeout=seconds + 30)
    (result,) = results
    after = {p["metadata"]["name"] for p in json.loads(kubectl(
        info, "get", "pods", "-l", f"scorefleet.io/pipeline={PIPELINE}", "-o", "json"))["items"]}
    row = {"pods": 4, "offered_rps": rate, "sent": result.sent, "failed": result.failed,
           "codes": dict(result.codes), "rollout_s": round(rolled_s, 1),
           "all_pods_replaced": not before & after,
           "p99_ms": round(result.quantile_ms(0.99), 1), "failures": result.failures}
    print(f"rolling update: {row}", flush=True)
    return row


def within_slo(info: cluster.ClusterInfo, sizes: list[int], per_pod: float) -> list[Any]:
    rows = []
    for n in sizes:
        try:
            fix_replicas(info, n)
        except TimeoutError as err:  # e.g. the node's CPU requests are exhausted
            rows.append({"pods": n, "error": str(err)})
            print(rows[-1], flush=True)
            break
        time.sleep(12)  # clients find new pods when connections recycle (maxConnectionAge)
        result = load.run(target(info), rate=per_pod * n, duration=20, concurrency=8)
        error_rate = result.failed / result.sent if result.sent else 1.0
        rows.append({"pods": n, "offered_rps": per_pod * n, "rps": round(result.rps, 1),
                     "failed": result.failed, "p99_ms": round(result.quantile_ms(0.99), 1),
                     "within_slo": error_rate <= SLO_ERROR_RATE
                     and result.quantile_ms(0.99) <= SLO_P99_MS})
        print(rows[-1], flush=True)
    return rows


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from scorefleet.dev import image

    info = cluster.current()
    assert info is not None and info.node is not None, "no real node after `scorefleet up`"
    scorer = image.build_images().scorer  # cached by `up`: sizes only
    times = startup_seconds(info, args.startups)
    return {
        "image": {"name": scorer.name, "compressed_mb": round(scorer.compressed_bytes / 1e6),
                  "unpacked_mb": round(scorer.unpacked_bytes / 1e6)},
        "pod_create_to_ready_s": {"median": round(statistics.median(times), 2),
                                  "max": round(max(times), 2), "samples": len(times),
                                  "all": [round(t, 2) for t in times]},
        "memory_rss_mb_per_pod": memory_mb(info),
        "rolling_update": rolling_update(info),
        "slo": within_slo(info, args.sizes, args.per_pod_rps),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--startups", type=int, default=20)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[2, 4, 6, 8])
    parser.add_argument("--per-pod-rps", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    results: dict[str, Any] = {"command": " ".join(sys.argv), "date": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count(),
        "loadavg_before": os.getloadavg()}
    up_s, up = scorefleet("up", timeout=1800)
    print(up.stdout, flush=True)
    results["up_s"] = round(up_s, 1)
    try:
        if up.returncode != 0:
            raise RuntimeError(f"scorefleet up failed:\n{up.stdout}\n{up.stderr[-3000:]}")
        results.update(measure(args))
    finally:
        results["loadavg_after"] = os.getloadavg()
        down_s, down = scorefleet("down", timeout=300)
        results["down_s"] = round(down_s, 1)
        results["down_ok"] = down.returncode == 0
        print(json.dumps(results, indent=2))
        if "slo" in results:  # a failed run keeps the last complete result file
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
