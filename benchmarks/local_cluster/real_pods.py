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
CAPACITY_OUT = Path(__file__).with_name("capacity.json")
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


def set_cpu_request(info: cluster.ClusterInfo, cpu: str) -> None:
    """A smaller request than the example's 250m, so the scheduler (2 CPUs: 8 pods at 250m)
    is not what limits the count; the pods roll once, before any step."""
    kubectl(info, "patch", "sp", PIPELINE, "--type=merge", "-p", json.dumps(
        {"spec": {"scorer": {"resources": {"requests": {"cpu": cpu}}}}}))
    kubectl(info, "rollout", "status", f"deploy/{PIPELINE}-stable", "--timeout=300s")


def sample(info: cluster.ClusterInfo, n: int, per_pod: float, seconds: float) -> dict[str, Any]:
    result = load.run(target(info), rate=per_pod * n, duration=seconds,
                      concurrency=max(8, n))
    error_rate = result.failed / result.sent if result.sent else 1.0
    p99 = result.quantile_ms(0.99)
    return {"rps": round(result.rps, 1), "sent": result.sent, "failed": result.failed,
            "p50_ms": round(result.quantile_ms(0.5), 1), "p99_ms": round(p99, 1),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "within_slo": error_rate <= SLO_ERROR_RATE and p99 <= SLO_P99_MS}


def within_slo(info: cluster.ClusterInfo, sizes: list[int], per_pod: float, *,
               samples: int = 1, seconds: float = 20, stop_after_misses: int = 2) -> list[Any]:
    """Each size: `samples` loads of `seconds` at per_pod x n RPC/s. A step holds when every
    sample is within the SLO. Stops after `stop_after_misses` steps in a row that do not hold
    (one miss on a shared machine can be someone else's work)."""
    rows: list[Any] = []
    misses = 0
    for n in sizes:
        try:
            fix_replicas(info, n)
        except TimeoutError as err:  # e.g. the node's CPU requests are exhausted
            rows.append({"pods": n, "error": str(err)})
            print(rows[-1], flush=True)
            break
        time.sleep(12)  # clients find new pods when connections recycle (maxConnectionAge)
        runs = [sample(info, n, per_pod, seconds) for _ in range(samples)]
        row: dict[str, Any] = {"pods": n, "offered_rps": per_pod * n,
                               "p99_ms": [r["p99_ms"] for r in runs],
                               "rps": [r["rps"] for r in runs],
                               "failed": sum(r["failed"] for r in runs),
                               "within_slo": all(r["within_slo"] for r in runs)}
        if samples > 1:
            row["samples"] = runs
        else:  # the single-sample form earlier result files have
            row.update(p99_ms=runs[0]["p99_ms"], rps=runs[0]["rps"])
        rows.append(row)
        print({k: v for k, v in row.items() if k != "samples"}, flush=True)
        misses = 0 if row["within_slo"] else misses + 1
        if misses >= stop_after_misses:
            break
    return rows


def capacity(rows: list[Any], misses_in_a_row: int = 2) -> int:
    """Pods held within the SLO: the largest step that held below the first `misses_in_a_row`
    steps in a row that did not (the rule that ends the run: a lone missed step between held
    ones is one bad sample on a shared machine, and stays visible in the rows)."""
    held, run = 0, 0
    for row in rows:
        if row.get("within_slo"):
            held, run = row["pods"], 0
            continue
        run += 1
        if run >= misses_in_a_row:
            break
    return held


def measure_capacity(args: argparse.Namespace) -> dict[str, Any]:
    info = cluster.current()
    assert info is not None and info.node is not None, "no real node after `scorefleet up`"
    set_cpu_request(info, args.cpu_request)
    rows = within_slo(info, args.sizes, args.per_pod_rps, samples=args.samples,
                      seconds=args.sample_seconds)
    return {"capacity": {"cpu_request": args.cpu_request, "per_pod_rps": args.per_pod_rps,
                         "samples_per_step": args.samples, "sample_s": args.sample_seconds,
                         "slo": {"p99_ms": SLO_P99_MS, "error_rate": SLO_ERROR_RATE},
                         "pods_within_slo": capacity(rows), "steps": rows}}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from scorefleet.dev import image

    info = cluster.current()
    assert info is not None and info.node is not None, "no real node after `scorefleet up`"
    if args.capacity:
        return measure_capacity(args)
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
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--capacity", action="store_true",
                        help="only the pods-within-SLO steps, --samples per step, the scorer's "
                             f"CPU request set to --cpu-request; writes {CAPACITY_OUT.name}")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--sample-seconds", type=float, default=20)
    parser.add_argument("--cpu-request", default="50m")
    args = parser.parse_args()
    args.out = args.out or (CAPACITY_OUT if args.capacity else OUT)
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
        if "slo" in results or "capacity" in results:  # a failed run keeps the last file
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
