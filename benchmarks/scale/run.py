"""The operator at scale: apply N ScoringPipelines with `kubectl apply` and measure how the
operator (its own process, as the chart runs it) converges and what it costs at steady state.

    .venv/bin/python benchmarks/scale                  # 1,000 pipelines, ~10-15 min
    .venv/bin/python benchmarks/scale --pipelines 200  # quicker

It starts its own control plane (kwok nodes only) in `<SCOREFLEET_CLUSTER_DIR>-scale-bench`, fresh,
and stops it at the end; every phase is bounded (`--converge-timeout`, `--steady-seconds`,
and `--max-minutes` for the whole run). Results: benchmarks/scale/results.json; meaning and
figures: docs/scale.md.

Phases:
1. Room: a ServiceCIDR and kwok Nodes added through the API when the cluster lacks ClusterIPs
   or pod capacity for N pipelines (capacity.py).
2. The operator starts with the chart's ServiceAccount and command line (operator_process.py);
   FlowSchemas make the API server count its requests apart (fleet.py, apimetrics.py).
3. Converge: from the start of `kubectl apply` until every Deployment exists and every pipeline
   is Ready, seen through watches (watch.py).
4. Steady state: after `--settle-seconds`, a window of `--steady-seconds`: the operator's
   requests (API server metrics), CPU and RSS of the operator and the API server, and the
   machine's load (procstat.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from . import apimetrics, capacity, fleet, operator_process, procstat, watch
from .operator_process import kubectl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OWN_CLUSTER_SUFFIX = "-scale-bench"
# Measured before the operator restructure (issue 7), on this kind of machine.
REFERENCE = {"deployments_all_created_s": 91.0, "operator_rss_mb": 200.0,
             "operator_cpu_core_share": 0.12, "apiserver_cpu_core_share": 0.44}


@dataclass
class Config:
    pipelines: int = 1000
    namespace: str = "scale-bench"
    operator_namespace: str = "scale-bench-system"
    resync_seconds: float = 30.0
    converge_timeout: float = 900.0
    settle_seconds: float = 45.0
    steady_seconds: float = 180.0
    # The chart's namespaced install (watchNamespace): the smoke test uses it on the shared
    # test cluster so that other tests' pipelines stay out of the counts.
    watch_one_namespace: bool = False
    node_shape: fleet.NodeShape = field(default_factory=fleet.NodeShape)
    sample_interval: float = 1.0
    # Run the operator from this directory's `scorefleet` (another git ref), not this checkout.
    operator_source: Path | None = None


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _since(times: dict[str, float], t0: float) -> dict[str, Any]:
    after = [t - t0 for t in times.values()]
    return {"count": len(after), "all_s": round(max(after), 1) if after else None,
            "p50_s": _pct(after, 0.5), "p90_s": _pct(after, 0.9)}


def _control_plane_pids() -> dict[str, int]:
    from scorefleet.dev import cluster

    return {s.name: s.pid for s in cluster.status() if s.running}


def _steady(cfg: Config, sampler: procstat.Sampler, op: operator_process.Operator
            ) -> dict[str, Any]:
    before = apimetrics.scrape()
    start = time.monotonic()
    while time.monotonic() - start < cfg.steady_seconds and op.proc.poll() is None:
        time.sleep(1.0)
    after = apimetrics.scrape()
    end = time.monotonic()
    d = apimetrics.delta(before, after)
    counted = _requests(d, cfg.pipelines)
    seconds = end - start
    per_reconcile = counted["requests_per_reconcile"]
    status_writes = sum(n for (verb, res, sub, _), n in d.requests.items()
                        if res == "scoringpipelines" and sub == "status" and verb != "GET")
    return {
        "seconds": round(seconds, 1),
        **counted,
        "operator_requests_per_s": round(counted["operator_requests"] / seconds, 1),
        # 1.0 when only the resync reconciles (once per pipeline per period; a pass longer
        # than the period lowers it), more when events trigger reconciles as well.
        "reconciles_per_pipeline_per_resync_period": round(
            counted["reconciles"] / cfg.pipelines / (seconds / cfg.resync_seconds), 3),
        # What one full resync pass costs: one reconcile of every pipeline.
        "requests_per_resync": round(per_reconcile * cfg.pipelines) if per_reconcile else None,
        "status_writes": status_writes,
        "processes": sampler.window(start, end),
    }


def _requests(d: apimetrics.Snapshot, pipelines: int) -> dict[str, Any]:
    """The operator's requests in a window, from the API server's per-FlowSchema counts."""
    reconciles = d.flows.get(fleet.FLOW_RECONCILES, 0)
    total = reconciles + d.flows.get(fleet.FLOW_OTHER, 0)
    return {"operator_requests": total,
            "operator_requests_per_pipeline": round(total / pipelines, 1),
            # One GET of the pipeline per reconcile (reconcile.py), in its own FlowSchema.
            "reconciles": reconciles,
            "reconciles_per_pipeline": round(reconciles / pipelines, 2),
            "requests_per_reconcile": round(total / reconciles, 2) if reconciles else None,
            "by_verb_all_clients": apimetrics.breakdown(d)}


@contextlib.contextmanager
def _operator(cfg: Config, work: Path, port: int) -> Iterator[operator_process.Operator]:
    rel = operator_process.install_rbac(
        "scale", cfg.operator_namespace, port,
        cfg.namespace if cfg.watch_one_namespace else None)
    op = operator_process.start(
        rel, work, {"SCOREFLEET_RESYNC_SECONDS": str(cfg.resync_seconds)}, cfg.operator_source)
    try:
        yield op
    finally:
        code = operator_process.stop(op)
        if code != 0:
            print(f"operator exited {code}:\n{op.tail()}")
        operator_process.uninstall_rbac(rel)


def run(cfg: Config, work: Path, port: int) -> dict[str, Any]:
    """One run on the cluster KUBECONFIG names (kubectl and helm on PATH)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            "crd/scoringpipelines.scorefleet.io")
    added = capacity.ensure(cfg.pipelines, cfg.node_shape)
    kubectl("create", "namespace", cfg.namespace)
    manifests = work / "pipelines.yaml"
    manifests.write_text(yaml.safe_dump_all(fleet.pipelines(cfg.pipelines, cfg.namespace)))
    pids = {**_control_plane_pids(), "benchmark": os.getpid()}
    result: dict[str, Any] = {"added": asdict(added)}
    try:
        with procstat.Sampler(pids, cfg.sample_interval) as sampler, \
                _operator(cfg, work, port) as op:
            sampler.watch("operator", op.proc.pid)
            deps = watch.deployments("kubectl", cfg.namespace)
            ready = watch.ready_pipelines("kubectl", cfg.namespace)
            try:
                time.sleep(3.0)  # both watches listed (nothing yet) and are streaming
                idle_start = time.monotonic()
                time.sleep(min(10.0, cfg.settle_seconds))
                result["idle_before_apply"] = sampler.window(idle_start, time.monotonic())
                before = apimetrics.scrape()
                t0 = time.monotonic()
                kubectl("apply", "-f", str(manifests))
                applied = time.monotonic() - t0
                deadline = t0 + cfg.converge_timeout
                deps.wait_for(cfg.pipelines, deadline)
                converged = ready.wait_for(cfg.pipelines, deadline)
                t1 = time.monotonic()
                spent = apimetrics.delta(before, apimetrics.scrape())
            finally:
                deps.stop()
                ready.stop()
            result["converge"] = {
                "converged": converged,
                "timeout_s": cfg.converge_timeout,
                "kubectl_apply_s": round(applied, 1),
                "deployments_created": _since(deps.times, t0),
                "pipelines_ready": _since(ready.times, t0),
                **_requests(spent, cfg.pipelines),
                "processes": sampler.window(t0, t1),
            }
            if converged:
                time.sleep(cfg.settle_seconds)
                result["steady"] = _steady(cfg, sampler, op)
            result["operator_log"] = _log_summary(op)
            result["operator_exited_early"] = op.proc.poll() is not None
    finally:
        kubectl("delete", "namespace", cfg.namespace, "--wait=false", check=False)
        capacity.remove(added)
    return result


def _log_summary(op: operator_process.Operator) -> dict[str, Any]:
    lines = op.log.read_text(errors="replace").splitlines()
    problems = [line[:300] for line in lines
                if line.startswith("Traceback") or "[ERROR" in line or "[WARNING" in line]
    return {"lines": len(lines), "errors_and_warnings": len(problems),
            "first_problems": problems[:5]}


def headline(cfg: Config, result: dict[str, Any]) -> dict[str, Any]:
    """The issue's figures, beside the reference measured before the restructure (ratios)."""
    conv = result.get("converge", {})
    steady = result.get("steady", {})
    procs = steady.get("processes", {}).get("processes", {})
    op, api = procs.get("operator", {}), procs.get("kube-apiserver", {})
    figures = {
        "deployments_all_created_s": conv.get("deployments_created", {}).get("all_s"),
        "pipelines_all_ready_s": conv.get("pipelines_ready", {}).get("all_s"),
        "requests_per_resync": steady.get("requests_per_resync"),
        "requests_per_reconcile": steady.get("requests_per_reconcile"),
        "requests_to_converge_per_pipeline": conv.get("operator_requests_per_pipeline"),
        "reconciles_to_converge_per_pipeline": conv.get("reconciles_per_pipeline"),
        "operator_cpu_core_share": op.get("cpu_core_share"),
        "operator_rss_mb": op.get("rss_mb_median"),
        "apiserver_cpu_core_share": api.get("cpu_core_share"),
    }
    ratios = {k: round(figures[k] / ref, 2) for k, ref in REFERENCE.items()
              if figures.get(k) is not None}
    return {"pipelines": cfg.pipelines, "figures": figures, "ratio_to_reference": ratios}


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu_model": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(),
            "load_avg": [round(x, 2) for x in os.getloadavg()], "shared_machine": True}


def _own_cluster() -> None:
    """A fresh kwok-only control plane of its own, beside the caller's test cluster."""
    from scorefleet.dev import cluster, paths

    base = paths.cluster_dir()
    if not base.name.endswith(OWN_CLUSTER_SUFFIX):
        os.environ[paths.CLUSTER_DIR_ENV] = str(base.with_name(base.name + OWN_CLUSTER_SUFFIX))
    os.environ["SCOREFLEET_REAL_NODE"] = "off"  # kwok only: the fleet is fake pods
    cluster.stop()
    info = cluster.ensure_up()
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    os.environ["PATH"] = f"{info.bin_dir}{os.pathsep}{os.environ['PATH']}"


def _timeout(signum: int, frame: object) -> None:
    raise TimeoutError("--max-minutes reached")


def _variant(cfg: Config, source_ref: str | None, keep_cluster: bool) -> dict[str, Any]:
    """One measured run on a fresh control plane: this checkout's operator, or `source_ref`'s."""
    from scorefleet.dev import cluster

    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        _own_cluster()
        with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
            source = (operator_process.export_source(source_ref, Path(tmp) / "src")
                      if source_ref else None)
            result = run(replace(cfg, operator_source=source), Path(tmp),
                         operator_process.free_port())
    finally:
        if not keep_cluster:
            cluster.stop()
    return {"operator": source_ref or "this checkout", "load_avg_before": load_before,
            **headline(cfg, result), "run": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Config()
    parser.add_argument("--pipelines", type=int, default=d.pipelines)
    parser.add_argument("--resync-seconds", type=float, default=d.resync_seconds)
    parser.add_argument("--converge-timeout", type=float, default=d.converge_timeout)
    parser.add_argument("--settle-seconds", type=float, default=d.settle_seconds)
    parser.add_argument("--steady-seconds", type=float, default=d.steady_seconds)
    parser.add_argument("--pods-per-node", type=int, default=d.node_shape.pods)
    parser.add_argument("--compare-ref", default=None,
                        help="first run the operator as it is at this git ref (e.g. main), "
                             "then this checkout's, each on a fresh control plane; ratios")
    parser.add_argument("--max-minutes", type=float, default=45.0)
    parser.add_argument("--keep-cluster", action="store_true",
                        help="leave the benchmark's control plane running")
    parser.add_argument("--label", default="", help="recorded with the results")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args(argv)
    cfg = Config(pipelines=args.pipelines, resync_seconds=args.resync_seconds,
                 converge_timeout=args.converge_timeout, settle_seconds=args.settle_seconds,
                 steady_seconds=args.steady_seconds,
                 node_shape=fleet.NodeShape(pods=args.pods_per_node))
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(int(args.max_minutes * 60))
    started = datetime.now(UTC)
    try:
        refs = [args.compare_ref, None] if args.compare_ref else [None]
        variants = [_variant(cfg, ref, args.keep_cluster and ref is None) for ref in refs]
    finally:
        signal.alarm(0)
    given = sys.argv[1:] if argv is None else argv
    out: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"), "label": args.label,
        "command": " ".join([".venv/bin/python benchmarks/scale", *given]),
        "config": {k: v for k, v in asdict(cfg).items() if k != "operator_source"},
        "machine": {**machine(), "load_avg_before": variants[0]["load_avg_before"]},
        # The headline: this checkout's operator.
        **{k: variants[-1][k] for k in ("figures", "ratio_to_reference")},
        "reference_before_restructure": REFERENCE,
    }
    if args.compare_ref:
        before, after = variants[0]["figures"], variants[-1]["figures"]
        out["compared_with"] = args.compare_ref
        out["ratio_to_compared"] = {k: round(after[k] / before[k], 2) for k in after
                                    if after.get(k) and before.get(k)}
    out["variants"] = variants
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("figures", "ratio_to_reference", "ratio_to_compared")
                      if k in out}, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(v["run"].get("converge", {}).get("converged") for v in variants) else 1


if __name__ == "__main__":
    raise SystemExit(main())

