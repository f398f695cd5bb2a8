"""Scorer benchmark driver: every server on the same machine, model and load, in one run.

    .venv/bin/python benchmarks/scorer/run.py [--quick] [--no-pinned] [--only NAME ...]

Builds or finds the tools (build_tools.py), builds the example model, measures onnxruntime
alone, then starts each server in turn on free loopback ports and drives it with ghz: a
closed-loop concurrency sweep, then open-loop rate steps. Writes benchmarks/scorer/results.json
and results.md (tables). Logs and raw ghz output go to $SCOREFLEET_BENCH_HOME/runs/<time>/.
A benchmark, not a test: it asserts nothing about the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from build_tools import GHZ_VERSION, KSERVE_VERSION, REPO, Tools, bench_home, build_all
from ghz_runner import GhzRunner, Step, StepResult
from model_ceiling import measure_all
from ort_options import check_matches_scorer
from payloads import LoadSpec, write_payloads
from procs import free_port, server_process
from report import (
    TargetResult,
    low_load_markdown,
    markdown,
    noise_markdown,
    results_json,
    targets_markdown,
)
from servers import MODEL_NAME, ServerDef, ensure_scorer_importable, server_defs
from sweeps import FULL, QUICK, SweepPlan, closed_sweep, open_sweep, peak

HERE = Path(__file__).resolve().parent
SERVER_CPUS, CLIENT_CPUS = "0", "1"
# The pinned pass (~5 min) runs only if the shared one left room in the ~25 min budget.
PINNED_BUDGET_S = 17 * 60
WORKAROUNDS: list[str] = []  # scorer problems worked around during this run


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def wait_ready(ghz: GhzRunner, spec: LoadSpec, proc: subprocess.Popen[bytes],
               timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        if ghz.probe(spec):
            return
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s")


def measure_server(server: ServerDef, tools: Tools, specs: dict[str, LoadSpec], run_dir: Path,
                   plan: SweepPlan, pinned: bool) -> dict[str, TargetResult]:
    mode = "pinned" if pinned else "shared"
    port = free_port()
    argv = server.argv(port, run_dir)
    if pinned:
        argv = ["taskset", "-c", SERVER_CPUS, *argv]
    ghz_dir = run_dir / "ghz" / f"{server.name}-{mode}"
    ghz_dir.mkdir(parents=True, exist_ok=True)
    ghz = GhzRunner(tools.ghz, tools.proto_root, f"127.0.0.1:{port}", ghz_dir,
                    ["taskset", "-c", CLIENT_CPUS] if pinned else [])
    out: dict[str, TargetResult] = {}
    if server.name.startswith("scorefleet"):
        note = ensure_scorer_importable()
        if note:
            log(f"WORKAROUND: {note}")
            WORKAROUNDS.append(note)
    log(f"start {server.name} ({mode}): {' '.join(argv)}")
    with server_process(argv, run_dir / f"{server.name}-{mode}.log", env=server.env,
                        cwd=REPO) as proc:
        wait_ready(ghz, specs[server.ready_label], proc)
        for target in server.targets:
            spec = specs[target.label]
            res = TargetResult(target.key, server.name, spec.call, spec.events_per_rpc,
                               target.slo_ms, mode)

            def run(step: Step, spec: LoadSpec = spec, key: str = target.key) -> StepResult:
                r = ghz.run(spec, step, proc.pid)
                log(f"  {key} {step.mode} c={step.concurrency} rps={step.rps}: "
                    f"{r.ok_rps:,.0f} ok/s p99={r.p99_ms:.2f} ms err={r.error_rate:.2%} "
                    f"cpu={r.server_cpu_us_per_event:.1f} us/event")
                return r

            ghz.run(spec, Step("closed", 16, 8, 1.0), proc.pid)  # warm-up, discarded
            res.closed = closed_sweep(run, plan)
            res.open = open_sweep(run, peak(res.closed).ok_rps, target.slo_ms, plan)
            best = res.best()
            log(f"  => {target.key}: {best.ok_rps if best else 0:,.0f} RPC/s at p99 <= "
                f"{target.slo_ms:g} ms")
            out[target.key] = res
    return out


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short steps, headline targets only")
    parser.add_argument("--no-pinned", action="store_true",
                        help="skip the second pass with server and ghz pinned to one core each")
    parser.add_argument("--only", nargs="*", default=None, help="server names to run")
    parser.add_argument("--targets", nargs="*", default=None,
                        help="target keys to measure (e.g. scorefleet_unary kserve_unary); "
                             "servers left without a target are skipped")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the servers, ghz and the compute ceiling at this niceness "
                             "(negative needs root): on a busy shared machine, lets builds and "
                             "test suites yield to the benchmark; recorded in results.json")
    args = parser.parse_args(argv)
    # SIGTERM ends the run through the same cleanup as Ctrl-C: every server group is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by every child
    started = time.monotonic()
    plan = QUICK if args.quick else FULL
    run_dir = bench_home() / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True, exist_ok=True)
    log(f"run dir {run_dir}")
    tools = build_all()
    check_matches_scorer()
    subprocess.run([sys.executable, "-m", "scorefleet.scorer.example_model", "--out",
                    str(run_dir / "model")], check=True, capture_output=True, cwd=REPO)
    model = run_dir / "model" / "model-v1.onnx"
    specs = write_payloads(run_dir / "payloads", MODEL_NAME)
    log("model-compute ceiling (onnxruntime alone, 1 thread)")
    compute = measure_all(model, (1, 64, 256), 1.0 if args.quick else 3.0)
    for c in compute:
        log(f"  batch {c.batch}: {c.rows_per_s:,.0f} rows/s ({c.us_per_row} us/row)")
    servers = [s for s in server_defs(tools, model, free_port, args.quick)
               if args.only is None or s.name in args.only]
    if args.targets is not None:
        servers = [dataclasses.replace(s, targets=tuple(t for t in s.targets
                                                        if t.key in args.targets))
                   for s in servers]
        servers = [s for s in servers if s.targets]
    results: dict[str, TargetResult] = {}
    pinned: dict[str, TargetResult] = {}
    failures: dict[str, str] = {}

    def measure(server: ServerDef, plan: SweepPlan, pinned: bool) -> dict[str, TargetResult]:
        try:
            return measure_server(server, tools, specs, run_dir, plan, pinned)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
            key = f"{server.name}-{'pinned' if pinned else 'shared'}"
            failures[key] = f"{type(exc).__name__}: {exc}"
            log(f"FAILED {key}: {exc} (log in {run_dir})")
            return {}

    for server in servers:
        results.update(measure(server, plan, False))
    pinned_note = "skipped (--quick or --no-pinned)"
    if not args.quick and not args.no_pinned and time.monotonic() - started > PINNED_BUDGET_S:
        pinned_note = f"skipped: the shared pass took over {PINNED_BUDGET_S / 60:.0f} min"
    elif not args.quick and not args.no_pinned:
        pinned_note = "ran"
        pin_plan = SweepPlan((16, 64), plan.open_fractions, 3.0, refine=False)
        for server in servers:
            pinned.update(measure(server, pin_plan, True))
    meta = {
        "command": " ".join(["python", "benchmarks/scorer/run.py", *sys.argv[1:]]),
        "nice": args.nice,
        "quick": args.quick, "elapsed_s": round(time.monotonic() - started, 1),
        "tools": {"ghz": GHZ_VERSION, "kserve": KSERVE_VERSION,
                  "onnxruntime": metadata.version("onnxruntime"),
                  "grpcio": metadata.version("grpcio"),
                  "go": subprocess.run(["go", "version"], capture_output=True, text=True
                                       ).stdout.strip()},
        "load": "ghz shares the 2 cores with the server unless noted (pinned)",
        "pinned_pass": pinned_note,
        "workarounds": WORKAROUNDS,
        "failures": failures,
        "run_dir": str(run_dir),
    }
    data = results_json(results, pinned, compute, meta)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    md = (markdown(results, pinned) + "\n" + targets_markdown(data) + "\n"
          + noise_markdown(data) + "\n" + low_load_markdown(data))
    args.out.with_suffix(".md").write_text(md)
    print(md)
    log(f"wrote {args.out} in {data['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
