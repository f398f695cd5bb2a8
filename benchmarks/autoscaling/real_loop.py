"""The real loop, measured: scorefleet autoscaling real scorer pods, and how close the simulator
predicted it.

    SCOREFLEET_REAL_NODE=require .venv/bin/python benchmarks/autoscaling/real_loop.py

Brings up the local cluster with its real node (or uses the running one), imports the scorer
image, publishes the example models to the node's model store, and runs the operator as a local
process deciding every 5 s from the node's Prometheus (scrape 2 s, windows 30 s / 10 s). Then
(benchmarks/autoscaling/real_run.py): one pod's open-loop curve (calibration), and the run
(ramp until p99 nears the SLO, hold 1.3x, scale-up; load stops and Prometheus is frozen for
75 s; resumed, scale-down). The simulator replays the same offered load with a replica
calibrated from that pod and the run's own spec, windows, loop period, scrape interval,
outage and measured pod start-up (benchmarks/autoscaling/replay.py). Writes real_loop.json and
real_loop.png beside the simulated traces' results. ~10 min; stops the cluster at the end if
it started it (the machine has one real node: hold it only while measuring).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import real_report
import real_run

from scorefleet.api.spec import ScalingSpec, SLOSpec
from scorefleet.dev import cluster, nodeconf, paths
from scorefleet.dev import node as devnode
from scorefleet.scorer.example_model import build

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def startup_seconds(samples: list[real_run.Sample]) -> float:
    """Median time from a scale-up being written to the Deployment to its pods being ready."""
    waits = []
    for i, s in enumerate(samples[1:], 1):
        if s.replicas > samples[i - 1].replicas:
            ready_at = next((x.t for x in samples[i:] if x.ready >= s.replicas), None)
            if ready_at is not None:
                waits.append(ready_at - s.t)
    return float(sorted(waits)[len(waits) // 2]) if waits else 10.0


def calibration_from(doc: dict[str, Any]) -> real_run.Calibration:
    """The pod calibration an earlier run wrote (its "calibration" steps), rebuilt."""
    steps = doc["calibration"]["steps"]
    within = [st for st in steps if st["served"] >= 0.9 * st["offered"]
              and st["p99_ms"] != float("inf")]
    return real_run.Calibration(
        points=[(st["served"], st["p99_ms"]) for st in within],
        saturation_qps=float(doc["calibration"]["saturation_qps"]),
        idle_p99_ms=float(doc["calibration"]["idle_p99_ms"]), steps=steps)


def result_from(doc: dict[str, Any]) -> real_run.RunResult:
    """The RunResult a real_loop.json holds (its timeline and the run's fields)."""
    tl = real_run.Timeline(
        chunks=[real_run.Chunk(**c) for c in doc["timeline"]["chunks"]],
        samples=[real_run.Sample(**x) for x in doc["timeline"]["samples"]],
        events=[(float(t), str(w)) for t, w in doc["timeline"]["events"]])
    run = dict(doc["run"])
    run["outage"] = tuple(run["outage"])
    run["outage_replicas"] = tuple(run["outage_replicas"])
    return real_run.RunResult(timeline=tl, **run)


def replot(path: Path, out: Path) -> int:
    """The replay, comparison and PNG again from a finished run's JSON (no cluster)."""
    doc = json.loads(path.read_text())
    res, cal = result_from(doc), calibration_from(doc)
    st = doc["setup"]
    spec = ScalingSpec.model_validate({
        "minReplicas": st["min_replicas"], "maxReplicas": st["max_replicas"],
        "scaleDown": {"stabilizationWindow": st["scale_down_window"]}})
    replay = real_report.replay_setup(
        res, spec, SLOSpec(p99_latency=f"{st['slo_p99_ms']:g}ms"),
        startup_s=float(doc["measured_pod_startup_s"]), scrape_s=int(st["scrape_s"]),
        loop_s=int(st["autoscale_s"]), window=st["window"], panic_window=st["panic_window"])
    comparison, _ = real_report.report(
        res, cal, replay, out / "real_loop.png",
        f"real pods (CPU limit {st['cpu_limit']}, SLO {st['slo_p99_ms']:g} ms) vs the "
        "simulator's prediction")
    if comparison != doc["comparison"]:
        print("the comparison differs from the one recorded (the simulator changed)")
    print(json.dumps(comparison, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slo-ms", type=float, default=50.0)
    ap.add_argument("--cpu-limit", default="100m")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--calibration-step", type=float, default=50.0,
                    help="RPC/s added per calibration step")
    ap.add_argument("--calibration-seconds", type=float, default=10.0,
                    help="seconds per calibration step")
    ap.add_argument("--calibration", type=Path,
                    help="reuse the pod calibration of an earlier --calibrate-only run "
                         "(its JSON) instead of measuring one now")
    ap.add_argument("--from-json", type=Path,
                    help="no cluster: redo the simulator's replay, the comparison and the PNG "
                         "from a real_loop.json this script wrote")
    ap.add_argument("--calibrate-only", action="store_true",
                    help="only one pod's curve and what Prometheus saw of it "
                         "(real_loop_calibration.json)")
    args = ap.parse_args(argv)
    if args.from_json is not None:
        return replot(args.from_json, args.out)
    os.environ.setdefault(devnode.MODE_ENV, "require")
    was_up = any(c.healthy for c in cluster.status())
    info = cluster.ensure_up()
    assert info.node is not None, "no real node"
    node: Any = info.node  # with the model store and Prometheus of issue 6
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    os.environ["PATH"] = f"{info.bin_dir}{os.pathsep}{os.environ['PATH']}"

    def kubectl(*a: str, stdin: str | None = None) -> str:
        return subprocess.run(["kubectl", *a], input=stdin, capture_output=True, text=True,
                              check=True, timeout=120).stdout

    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    ns = f"loop-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    kubectl("annotate", "namespace", ns,
            *(f"{k}={v}" for k, v in nodeconf.namespace_annotations().items()))
    work = Path(tempfile.mkdtemp(prefix="real-loop-"))
    sha = build(work)
    for f in work.glob("*.onnx"):
        shutil.copy(f, node.models / f.name)
    pid = next(p for n, p, running, *_ in devnode.statuses(paths.cluster_dir())
               if n == "prometheus" and running)
    setup = real_run.Setup(namespace=ns, store_url=node.model_store_url,
                           sha256=sha["model-v1.onnx"], dns=node.dns,
                           prometheus_url=node.prometheus_url, prometheus_pid=pid,
                           kubectl=kubectl, slo_ms=args.slo_ms, cpu_limit=args.cpu_limit)
    doc: dict[str, Any] = {
        "command": "SCOREFLEET_REAL_NODE=require python benchmarks/autoscaling/real_loop.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(), "loadavg_before": os.getloadavg(),
        "setup": {"slo_p99_ms": setup.slo_ms, "cpu_limit": setup.cpu_limit,
                  "autoscale_s": setup.autoscale_s, "window": setup.window,
                  "panic_window": setup.panic_window,
                  "scale_down_window": setup.scale_down_window, "scrape_s": 2,
                  "min_replicas": 1, "max_replicas": 4},
    }
    try:
        with real_run.operator(setup, work / "operator.log"):
            if args.calibration is not None:
                cal = calibration_from(json.loads(args.calibration.read_text()))
                doc["calibration_from"] = str(args.calibration)
            else:
                cal = real_run.calibrate(setup, step=args.calibration_step,
                                         seconds=args.calibration_seconds)
            doc["calibration"] = {"steps": cal.steps, "saturation_qps": cal.saturation_qps,
                                  "idle_p99_ms": cal.idle_p99_ms}
            print(f"calibration: {json.dumps(doc['calibration'])}", flush=True)
            if args.calibrate_only:
                return 0
            res = real_run.run(setup)
        spec = ScalingSpec.model_validate({"minReplicas": 1, "maxReplicas": 4, "scaleDown": {
            "stabilizationWindow": setup.scale_down_window}})
        startup = startup_seconds(res.timeline.samples)
        replay = real_report.replay_setup(
            res, spec, SLOSpec(p99_latency=f"{setup.slo_ms:g}ms"), startup_s=startup,
            scrape_s=2, loop_s=setup.autoscale_s, window=setup.window,
            panic_window=setup.panic_window)
        comparison, _ = real_report.report(
            res, cal, replay, args.out / "real_loop.png",
            f"real pods (CPU limit {setup.cpu_limit}, SLO {setup.slo_ms:g} ms) vs the "
            "simulator's prediction")
        doc["run"] = {k: v for k, v in res.__dict__.items() if k != "timeline"}
        doc["measured_pod_startup_s"] = startup
        doc["comparison"] = comparison
        doc["timeline"] = res.timeline.to_dict()
    finally:
        doc["loadavg_after"] = os.getloadavg()
        kubectl("delete", "namespace", ns, "--wait=false")
        out = "real_loop_calibration.json" if args.calibrate_only else "real_loop.json"
        (args.out / out).write_text(json.dumps(doc, indent=1, default=str) + "\n")
        if not was_up:
            cluster.stop()
    print(json.dumps({k: doc.get(k) for k in ("run", "comparison")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
