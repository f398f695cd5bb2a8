"""What a run is judged on, from the simulator's ground truth (not from Prometheus' view)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
from fleet import MAX_WAIT_S, Fleet, survival
from traces import Trace

RECOVERY_HOLD_S = 60  # "back within the SLO" = the start of 60 s all within it
RECOVERY_WINDOW_S = 10  # judged on the p99 of 10 s windows (a second has too few samples)


def window_p99(fleet: Fleet, start: int, end: int, width: int) -> np.ndarray:
    """True p99 of all requests arriving in each whole `width`-second window in [start, end)."""
    n = (min(end, len(fleet.arrivals)) - start) // width * width
    shape = (n // width, width)
    sl = slice(start, start + n)
    w = fleet.arrivals[sl].reshape(shape)
    parts = [a[sl].reshape(shape) for a in (fleet.base, fleet.wait, fleet.pw, fleet.theta,
                                             fleet.fail)]
    lo, hi = np.zeros(shape[0]), np.full(shape[0], 1000.0 * (MAX_WAIT_S + 10))
    total = w.sum(axis=1)
    for _ in range(50):  # bisection on each window's mixture survival function, all at once
        mid = (lo + hi) / 2
        above = (w * survival(mid[:, None], *parts)).sum(axis=1) > 0.01 * total
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return np.where(total > 0, hi, 0.0)


def minute_p99(fleet: Fleet, start: int) -> np.ndarray:
    return window_p99(fleet, start, len(fleet.arrivals), 60)


def recovery_s(fleet: Fleet, step_at: int, until: int, slo_ms: float) -> float | None:
    """Seconds from the step until the true p99 of 10 s windows is within the SLO for 60 s.

    0 when it never left the SLO; None when it did not recover before the step's high phase
    ended (the load falling back is not a recovery).
    """
    p99 = window_p99(fleet, step_at, until, RECOVERY_WINDOW_S)
    bad = p99 > slo_ms
    if not bad.any():
        return 0.0
    need = RECOVERY_HOLD_S // RECOVERY_WINDOW_S
    good_run = 0
    for i in range(int(np.argmax(bad)), len(bad)):  # from the first bad window on
        good_run = 0 if bad[i] else good_run + 1
        if good_run == need:
            return float((i - need + 1) * RECOVERY_WINDOW_S)
    return None


def reversals(targets: list[tuple[float, int]], start: float) -> int:
    """Direction changes of the replica count (up then down, or down then up)."""
    counts = [n for t, n in targets if t >= start]
    prev = [n for t, n in targets if t < start][-1:]
    seq = prev + counts
    dirs = [1 if b > a else -1 for a, b in pairwise(seq) if b != a]
    return sum(1 for a, b in pairwise(dirs) if a != b)


def score(trace: Trace, fleet: Fleet, slo_ms: float) -> dict[str, Any]:
    start = trace.scored.start
    p99_min = minute_p99(fleet, start)
    hours = (len(fleet.arrivals) - start) / 3600
    violations = int((p99_min > slo_ms).sum())
    out: dict[str, Any] = {
        "violation_minutes": violations,
        "compliant_fraction": round(1 - violations / len(p99_min), 5),
        "replica_hours": round(float(fleet.n_pods[start:].sum()) / 3600, 3),
        "reversals_per_hour": round(reversals(fleet.targets, start) / hours, 3),
        "peak_replicas": int(fleet.n_pods[start:].max()),
        "worst_minute_p99_ms": round(float(p99_min.max()), 2),
        "shed_fraction": round(float(fleet.shed[start:].sum() / fleet.arrivals[start:].sum()),
                               6),
    }
    if trace.step_at is not None and trace.step_until is not None:
        out["recovery_s"] = recovery_s(fleet, trace.step_at, trace.step_until, slo_ms)
    return out
