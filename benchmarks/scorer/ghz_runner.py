"""Run one bounded ghz load step and read its JSON summary, plus the server's CPU time.

A step is closed loop (``-c`` workers calling back to back) or open loop (``--rps`` rate with
enough workers that a slow server does not throttle the offered rate; a step whose achieved
rate falls short of the target is marked so and never counts as meeting the SLO). Every step is
bounded by ``-z`` (time) and by a subprocess timeout.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from payloads import LoadSpec
from procs import cpu_seconds_by_pid, machine_busy_seconds


@dataclass(frozen=True)
class Step:
    mode: str  # "closed" or "open"
    concurrency: int
    connections: int
    duration_s: float
    rps: int | None = None


@dataclass
class StepResult:
    mode: str
    concurrency: int
    connections: int
    target_rps: int | None
    duration_s: float
    count: int
    ok: int
    errors: dict[str, int]
    rps: float  # achieved RPC/s (all replies)
    ok_rps: float
    events_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    avg_ms: float
    max_ms: float
    server_cpu_s: float
    server_cpu_us_per_event: float
    client_cpu_s: float
    client_cpu_us_per_rpc: float
    # CPU used meanwhile by processes that are neither the server nor ghz (the shared machine's
    # noise), as a fraction of all cores over the step.
    other_cpu_share: float
    server_cpu_by_pid: dict[str, float] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return 1.0 - self.ok / self.count if self.count else 1.0

    def meets(self, slo_ms: float) -> bool:
        """p99 within the SLO, (almost) no errors, and (open loop) the offered rate achieved."""
        if self.count == 0 or self.error_rate > 0.001 or self.p99_ms > slo_ms:
            return False
        return self.target_rps is None or self.rps >= 0.95 * self.target_rps


def open_loop_workers(rps: int) -> int:
    """Workers for an open-loop step: enough to keep the rate at ~25 ms latency, bounded."""
    return max(16, min(512, rps // 40))


CORES = os.cpu_count() or 1

# ghz cancels the calls still in flight when -z runs out; they show up as errors like these.
# Up to `concurrency` of them per step are the load generator stopping, not the server failing.
CUTOFF_MARKERS = ("use of closed network connection", "context canceled",
                  "the client connection is closing")


def _cutoff_errors(summary: dict[str, Any], concurrency: int) -> int:
    dist: dict[str, int] = summary.get("errorDistribution") or {}
    n = sum(int(c) for msg, c in dist.items() if any(m in msg for m in CUTOFF_MARKERS))
    return min(n, concurrency)


def _latency_ms(summary: dict[str, Any], pct: int) -> float:
    for row in summary.get("latencyDistribution") or []:
        if int(row["percentage"]) == pct:
            return float(row["latency"]) / 1e6
    return float("nan")


class GhzRunner:
    def __init__(self, ghz: str, proto_root: str, target: str, out_dir: Path,
                 cpu_prefix: Sequence[str] = ()) -> None:
        self.ghz = ghz
        self.proto_root = proto_root
        self.target = target
        self.out_dir = out_dir
        self.cpu_prefix = list(cpu_prefix)  # e.g. ["taskset", "-c", "1"]
        self._n = 0

    def _argv(self, spec: LoadSpec, out: Path, extra: list[str]) -> list[str]:
        return [*self.cpu_prefix, self.ghz, "--insecure", "--import-paths", self.proto_root,
                "--proto", spec.proto, "--call", spec.call, "-B", str(spec.payload),
                "--format", "json", "-o", str(out), "--timeout", "2s", *extra, self.target]

    def probe(self, spec: LoadSpec) -> bool:
        """One call; True if it succeeded (used to wait for readiness)."""
        out = self.out_dir / "probe.json"
        argv = self._argv(spec, out, ["-n", "1", "-c", "1"])
        try:
            subprocess.run(argv, check=False, capture_output=True, timeout=20)
            summary = json.loads(out.read_text())
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return False
        return bool((summary.get("statusCodeDistribution") or {}).get("OK"))

    def run(self, spec: LoadSpec, step: Step, server_pid: int) -> StepResult:
        self._n += 1
        out = self.out_dir / f"{spec.label}-{step.mode}-{self._n:03d}.json"
        extra = ["-c", str(step.concurrency), "--connections", str(step.connections),
                 "-z", f"{step.duration_s}s"]
        if step.rps is not None:
            extra += ["--rps", str(step.rps)]
        before_cpu = cpu_seconds_by_pid(server_pid)
        before_busy = machine_busy_seconds()
        started = time.monotonic()
        before_client = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(self._argv(spec, out, extra), check=True, capture_output=True,
                       timeout=step.duration_s + 60)
        after_client = resource.getrusage(resource.RUSAGE_CHILDREN)
        after_cpu = cpu_seconds_by_pid(server_pid)
        busy = machine_busy_seconds() - before_busy
        wall = time.monotonic() - started
        summary: dict[str, Any] = json.loads(out.read_text())
        client_cpu = ((after_client.ru_utime + after_client.ru_stime)
                      - (before_client.ru_utime + before_client.ru_stime))
        by_pid = {str(p): round(after_cpu[p] - before_cpu.get(p, 0.0), 3) for p in after_cpu}
        server_cpu = sum(by_pid.values())
        codes: dict[str, int] = dict(summary.get("statusCodeDistribution") or {})
        cutoff = _cutoff_errors(summary, step.concurrency)
        count = int(summary.get("count") or 0) - cutoff
        ok = int(codes.pop("OK", 0))
        total_s = float(summary.get("total") or 0) / 1e9 or step.duration_s
        rps = count / total_s
        if cutoff:
            codes["cut_off_at_end"] = cutoff
        return StepResult(
            mode=step.mode, concurrency=step.concurrency, connections=step.connections,
            target_rps=step.rps, duration_s=step.duration_s, count=count, ok=ok, errors=codes,
            rps=round(rps, 1), ok_rps=round(ok / total_s, 1),
            events_per_s=round(ok / total_s * spec.events_per_rpc, 1),
            p50_ms=round(_latency_ms(summary, 50), 3), p90_ms=round(_latency_ms(summary, 90), 3),
            p99_ms=round(_latency_ms(summary, 99), 3),
            avg_ms=round(float(summary.get("average") or 0) / 1e6, 3),
            max_ms=round(float(summary.get("slowest") or 0) / 1e6, 3),
            server_cpu_s=round(server_cpu, 3),
            server_cpu_us_per_event=round(server_cpu * 1e6 / max(1, ok * spec.events_per_rpc), 2),
            client_cpu_s=round(client_cpu, 3),
            client_cpu_us_per_rpc=round(client_cpu * 1e6 / max(1, count), 2),
            other_cpu_share=round(max(0.0, busy - server_cpu - client_cpu)
                                  / (wall * CORES), 3),
            server_cpu_by_pid=by_pid,
        )
