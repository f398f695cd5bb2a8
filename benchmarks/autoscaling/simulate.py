"""Autoscaling simulation: scorefleet's policy beside HPA, KEDA, static and oracle, same physics.

    .venv/bin/python benchmarks/autoscaling/simulate.py [--seed N] [--only TRACE ...]
        [--csv FILE ...] [--startup S] [--sensitivity S,S] [--no-plots] [--out DIR]

Writes results.json, results.md and one PNG per trace into --out (default: this directory).
Deterministic: the same seed gives the same numbers. A benchmark, not a test: it asserts
nothing; the targets' verdicts are computed and written down, met or not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import calibration
import numpy as np
from fleet import Fleet, Physics, PromView
from plots import plot_trace
from policies import (
    MAX_REPLICAS,
    MIN_REPLICAS,
    HpaCpu,
    HpaQps,
    Policy,
    Schedule,
    Scorefleet,
    oracle_schedule,
)
from scoring import score
from traces import Trace, from_csv, standard
from verdicts import markdown, targets

from scorefleet.api.spec import SLOSpec

HERE = Path(__file__).resolve().parent
POLICIES = ("scorefleet", "hpa_cpu", "qps_0.5", "qps_0.7", "static_peak", "oracle")


def simulate(trace: Trace, policy: Policy, physics: Physics, cal: calibration.ReplicaCalibration,
             arrivals: np.ndarray, initial: int) -> Fleet:
    fleet = Fleet(cal, physics, len(arrivals), outages=trace.outages)
    fleet.start(initial)
    prom = PromView(fleet)
    current = initial
    for t in range(len(arrivals)):
        if t % physics.scrape_s == 0:
            fleet.scrape(t)
        if t % policy.loop_s == policy.phase_s:
            n = policy.decide(float(t), prom, fleet, current)
            if n != current:
                fleet.set_replicas(n, float(t))
                current = n
        fleet.step(t, float(arrivals[t]))
    return fleet


def run_trace(trace: Trace, physics: Physics, cal: calibration.ReplicaCalibration, seed: int,
              slo: SLOSpec) -> tuple[dict[str, dict[str, Any]], dict[str, Fleet]]:
    arrivals = trace.arrivals(seed)
    schedule = oracle_schedule(arrivals, cal, physics.slo_ms)
    peak = int(schedule[trace.scored.start // 60:].max())
    policies: dict[str, tuple[Policy, Physics]] = {
        "scorefleet": (Scorefleet(slo), physics),
        "hpa_cpu": (HpaCpu(cal), physics),
        "qps_0.5": (HpaQps(0.5 * cal.capacity_qps, "qps_0.5"), physics),
        "qps_0.7": (HpaQps(0.7 * cal.capacity_qps, "qps_0.7"), physics),
        "static_peak": (Schedule(np.full(len(schedule), peak), "static_peak"), physics),
        "oracle": (Schedule(schedule, "oracle"), replace(physics, startup_s=0.0)),
    }
    results: dict[str, dict[str, Any]] = {}
    fleets: dict[str, Fleet] = {}
    initial = int(schedule[0])
    for name, (policy, phys) in policies.items():
        fleet = simulate(trace, policy, phys, cal, arrivals,
                         peak if name == "static_peak" else initial)
        fleets[name] = fleet
        results[name] = score(trace, fleet, physics.slo_ms)
    oracle_rh = results["oracle"]["replica_hours"]
    for r in results.values():
        r["replica_hours_vs_oracle"] = round(r["replica_hours"] / oracle_rh, 3)
    return results, fleets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None, help="trace names to run")
    ap.add_argument("--csv", nargs="*", type=Path, default=[], help="t_seconds,rps files")
    ap.add_argument("--startup", type=float, default=30.0, help="pod start-up delay (s)")
    ap.add_argument("--sensitivity", default="10,90",
                    help="other start-up delays to rerun every trace with ('' for none)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    started = time.monotonic()
    cal = calibration.load()
    slo = SLOSpec()
    physics = Physics(startup_s=args.startup, slo_ms=1000 * 0.025)
    all_traces = standard(args.seed) + [from_csv(p) for p in args.csv]
    chosen = [t for t in all_traces if args.only is None or t.name in args.only
              or t.name.startswith("csv_")]
    args.out.mkdir(parents=True, exist_ok=True)
    main_results: dict[str, Any] = {}
    for trace in chosen:
        t0 = time.monotonic()
        results, fleets = run_trace(trace, physics, cal, args.seed, slo)
        main_results[trace.name] = results
        if not args.no_plots:
            plot_trace(trace, fleets, physics.slo_ms, args.out / f"{trace.name}.png",
                       f"{trace.name}: {trace.description} (pod start-up {args.startup:g} s)")
        print(f"{trace.name}: {time.monotonic() - t0:.1f}s " + ", ".join(
            f"{p} {r['violation_minutes']}min/{r['replica_hours']}rh" for p, r in results.items()),
            file=sys.stderr)
    sensitivity: dict[str, Any] = {}
    for s in (float(x) for x in args.sensitivity.split(",") if x.strip()):
        key = f"startup_{s:g}s"
        sensitivity[key] = {}
        for trace in chosen:
            sensitivity[key][trace.name], _ = run_trace(
                trace, replace(physics, startup_s=s), cal, args.seed, slo)
        print(f"{key}: done", file=sys.stderr)
    doc: dict[str, Any] = {
        "traces": main_results,
        "targets": targets(main_results),
        "sensitivity": sensitivity,
        "sensitivity_targets": {k: targets(v) for k, v in sensitivity.items()},
        "config": {
            "slo_p99_ms": physics.slo_ms, "pod_startup_s": physics.startup_s,
            "scrape_interval_s": physics.scrape_s, "rate_window_s": 60,
            "panic_rate_window_s": 30, "loop_period_s": 15,
            "min_replicas": MIN_REPLICAS, "max_replicas": MAX_REPLICAS,
            "hpa_cpu_target_utilization": 0.8,
            "qps_targets_per_replica": {"qps_0.5": 0.5 * cal.capacity_qps,
                                        "qps_0.7": 0.7 * cal.capacity_qps},
            "seed": args.seed, "warmup_s": chosen[0].scored.start if chosen else 0,
            "policies": list(POLICIES),
            "traces": {t.name: t.description for t in chosen},
        },
        "calibration": cal.describe(),
        "command": "python benchmarks/autoscaling/simulate.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    (args.out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "results.md").write_text(markdown(doc))
    print(f"wrote {args.out / 'results.json'} in {doc['elapsed_s']}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
