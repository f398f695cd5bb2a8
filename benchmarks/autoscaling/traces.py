"""Request-rate traces, one value per second, seeded so every run sees the same load.

Each trace is preceded by a warm-up at its first rate (`WARMUP_S`, not scored): every policy
starts from the same replicas, and the autoscalers that learn get the same time to learn. The
arrivals of each second are Poisson around the trace's rate.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np

WARMUP_S = 1800


@dataclass(frozen=True)
class Trace:
    name: str
    rate: np.ndarray  # requests/s per second, warm-up included
    step_at: int | None = None  # second (warm-up included) of the step, for recovery time
    description: str = ""
    step_until: int | None = None  # end of the step's high phase (recovery must come before)
    outages: tuple[tuple[int, int], ...] = ()  # Prometheus down [start, end), warm-up included

    @property
    def scored(self) -> slice:
        return slice(WARMUP_S, len(self.rate))

    def arrivals(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.poisson(self.rate).astype(float)


def _with_warmup(name: str, body: np.ndarray, step_at: int | None,
                 description: str, high_s: int = 0) -> Trace:
    rate = np.concatenate([np.full(WARMUP_S, body[0]), body])
    if step_at is None:
        return Trace(name, rate, None, description)
    return Trace(name, rate, WARMUP_S + step_at, description, WARMUP_S + step_at + high_s)


def step(name: str, low: float, factor: float) -> Trace:
    """`low` for 10 min, then `factor` x for 40 min, then `low` again for 40 min."""
    t = np.arange(90 * 60)
    at = 600 + 3  # not aligned with any scrape or loop tick
    body = np.where((t >= at) & (t < at + 2400), low * factor, low)
    return _with_warmup(name, body.astype(float), at,
                        f"{low:,.0f} -> {low * factor:,.0f} req/s at 10 min, back at 50 min",
                        2400)


def diurnal(seed: int, trough: float = 8_000, peak: float = 50_000) -> Trace:
    """24 h: a daily curve (trough 04:00, peak 16:00) with 10 s-correlated noise of ~4 %."""
    rng = np.random.default_rng(seed)
    t = np.arange(86_400)
    phase = (t - 4 * 3600) / 86_400 * 2 * np.pi
    shape = (0.5 - 0.5 * np.cos(phase)) ** 1.5
    noise = np.zeros(len(t) // 10 + 1)
    for i in range(1, len(noise)):  # AR(1) per 10 s, ~1 min correlation
        noise[i] = 0.85 * noise[i - 1] + rng.normal(0, 0.02)
    body = (trough + (peak - trough) * shape) * (1 + np.repeat(noise, 10)[: len(t)])
    return _with_warmup("diurnal", body, None,
                        f"{trough:,.0f}-{peak:,.0f} req/s daily curve with noise, 24 h")


def flash_crowd(base: float = 10_000, factor: float = 5.0) -> Trace:
    """`factor` x within 60 s at 10 min, held 10 min, then decaying over ~15 min."""
    t = np.arange(60 * 60).astype(float)
    at = 600 + 3
    ramp = np.clip((t - at) / 60, 0, 1)
    decay = np.where(t > at + 660, np.exp(-(t - at - 660) / 300), 1.0)
    body = base * (1 + (factor - 1) * ramp * decay)
    return _with_warmup("flash_crowd", body, at,
                        f"{base:,.0f} -> {base * factor:,.0f} req/s within 60 s, 10 min, decay",
                        660)


def bursty(seed: int, low: float = 8_000, high: float = 30_000) -> Trace:
    """On/off: bursts of ~2 min (30 s-5 min) every ~5 min (1-15 min), 5 s edges, 2 h."""
    rng = np.random.default_rng(seed)
    level = np.full(7200, low)
    t = int(rng.exponential(300))
    while t < 7200:
        on = int(np.clip(rng.exponential(120), 30, 300))
        level[t: t + on] = high
        t += on + int(np.clip(rng.exponential(300), 60, 900))
    kernel = np.ones(5) / 5
    body = np.convolve(np.concatenate([np.full(4, low), level]), kernel, mode="valid")
    return _with_warmup("bursty", body, None,
                        f"{low:,.0f} / {high:,.0f} req/s on-off bursts, 2 h")


def prometheus_outage(level: float = 30_000) -> Trace:
    """Steady load for 60 min; Prometheus is down from minute 20 to minute 35."""
    base = _with_warmup("prometheus_outage", np.full(3600, level), None,
                        f"{level:,.0f} req/s steady, Prometheus down from 20 to 35 min")
    return replace(base, outages=((WARMUP_S + 1200, WARMUP_S + 2100),))


def from_csv(path: Path) -> Trace:
    """A user's trace: rows `t_seconds,rps` (a header row is allowed), linear in between."""
    times, rates = [], []
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].strip().startswith("#"):
                continue
            try:
                times.append(float(row[0]))
                rates.append(float(row[1]))
            except ValueError:
                if times:  # only the first row may be a header
                    raise ValueError(f"{path}: not a number in row {row}") from None
    if len(times) < 2 or any(b <= a for a, b in pairwise(times)):
        raise ValueError(f"{path}: need >= 2 rows with increasing t_seconds")
    if min(rates) < 0:
        raise ValueError(f"{path}: rps must not be negative")
    t = np.arange(int(times[0]), int(times[-1]) + 1)
    body = np.interp(t, times, rates)
    return _with_warmup(f"csv_{path.stem}", body, None, f"replay of {path.name}")


def standard(seed: int) -> list[Trace]:
    return [step("step_3x", 15_000, 3.0), step("step_10x", 5_000, 10.0), diurnal(seed),
            flash_crowd(), bursty(seed + 1), prometheus_outage()]
