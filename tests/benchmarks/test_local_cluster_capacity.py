"""The real-pod capacity steps: a step holds only when every sample is within the SLO, the
count is the last held step before the first miss, and the run stops after two misses in a
row (a pure test: loads and pod counts are simulated)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "local_cluster"))

import real_pods


def test_a_step_holds_only_when_every_sample_is_within_the_slo(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # p99 by pod count; at 12 pods one of three samples misses (a noisy step).
    p99s = {4: [5.0, 6.0, 5.5], 8: [9.0, 11.0, 10.0], 12: [12.0, 30.0, 14.0],
            16: [40.0, 41.0, 45.0], 20: [80.0, 90.0, 85.0], 24: [1.0, 1.0, 1.0]}
    taken: list[int] = []

    def sample(_: Any, n: int, per_pod: float, seconds: float) -> dict[str, Any]:
        p99 = p99s[n][len([t for t in taken if t == n])]
        taken.append(n)
        return {"rps": per_pod * n, "failed": 0, "p99_ms": p99,
                "within_slo": p99 <= real_pods.SLO_P99_MS}

    monkeypatch.setattr(real_pods, "fix_replicas", lambda info, n: None)
    monkeypatch.setattr(real_pods, "sample", sample)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    rows = real_pods.within_slo(None, sorted(p99s), 50.0,  # type: ignore[arg-type]
                                samples=3, seconds=15)
    assert [r["pods"] for r in rows] == [4, 8, 12, 16]  # two misses in a row: stop
    assert [r["within_slo"] for r in rows] == [True, True, False, False]
    assert rows[2]["p99_ms"] == [12.0, 30.0, 14.0] and len(rows[2]["samples"]) == 3
    assert real_pods.capacity(rows) == 8
    assert real_pods.capacity([{"pods": 4, "within_slo": False}]) == 0
    assert real_pods.capacity(rows[:3]) == 8  # a miss at the top: the step below it


def test_a_lone_missed_step_between_held_ones_does_not_set_the_count() -> None:
    # One bad sample at 4 pods (someone else's work), then 8 and 12 held, 16 and 20 missed.
    held = {4: False, 8: True, 12: True, 16: False, 20: False, 24: True}
    rows = [{"pods": n, "within_slo": ok} for n, ok in held.items()]
    assert real_pods.capacity(rows) == 12  # 24 lies past two misses in a row
    assert real_pods.capacity(rows, misses_in_a_row=1) == 0
