"""The scorer benchmark's SLO search brackets the headline rate tightly (a pure test with a
simulated server, no ghz)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "scorer"))

from ghz_runner import Step, StepResult
from sweeps import FULL, best_under_slo, open_sweep


def _server(edge_rps: int) -> tuple[list[Step], object]:
    """A fake server whose p99 is 2 ms up to `edge_rps` and 50 ms above it."""
    steps: list[Step] = []

    def run(step: Step) -> StepResult:
        steps.append(step)
        rate = step.rps or 0
        slow = rate > edge_rps
        return StepResult(mode=step.mode, concurrency=step.concurrency,
                          connections=step.connections, target_rps=step.rps,
                          duration_s=step.duration_s, count=rate * 5, ok=rate * 5, errors={},
                          rps=rate, ok_rps=rate, events_per_s=rate, p50_ms=1.0, p90_ms=1.5,
                          p99_ms=50.0 if slow else 2.0, avg_ms=1.0, max_ms=60.0,
                          server_cpu_s=0.0, server_cpu_us_per_event=0.0, client_cpu_s=0.0,
                          client_cpu_us_per_rpc=0.0, other_cpu_share=0.0)

    return steps, run


def test_slo_edge_is_bracketed_within_a_tenth() -> None:
    _, run = _server(edge_rps=1_400)
    results = open_sweep(run, 4_500, 10.0, FULL)  # type: ignore[arg-type]
    best = best_under_slo(results, 10.0)
    assert best is not None and best.target_rps is not None
    failed_above = min(r.target_rps or 0 for r in results
                       if r.p99_ms > 10.0 and (r.target_rps or 0) > best.target_rps)
    assert best.target_rps <= 1_400 < failed_above
    assert failed_above / best.target_rps < 1.1  # one midpoint alone left 1.5x

