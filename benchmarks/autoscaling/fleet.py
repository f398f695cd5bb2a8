"""The simulated fleet and the Prometheus that watches it, one second at a time.

Physics (the same for every policy):
* Pods: a new pod serves after `startup_s`; removing replicas deletes not-ready pods first
  (newest first), as a ReplicaSet does. Every pod, ready or not, counts in replica-hours.
* Service: each ready replica saturates at the calibrated throughput; requests spread evenly.
  Load beyond the fleet's saturation waits in a backlog (a fluid FIFO queue), which drains at the
  spare capacity; every request of a second also waits for the backlog ahead of it. The backlog
  is bounded like the scorer's (batching.maxQueueSize 8,192 per worker, 2 workers per replica):
  beyond it requests are shed (RESOURCE_EXHAUSTED), answered at once, counted in the request
  rate and the latency histogram as the scorer does, and counted as failures for the SLO.
* Latency of a second: with probability (1 - rho) a request is served within the idle p99
  (uniform body), with probability rho it queues, exponentially, with the time scale that puts
  the second's p99 exactly on the calibrated curve; plus the backlog wait.
* Prometheus is down during the trace's outages (no scrapes then); the kubelet's CPU figures
  (metrics-server, what HPA on CPU reads) are not Prometheus and stay available.
* Prometheus scrapes counters every `scrape_s`: requests, the scorer's own latency buckets,
  CPU seconds, and the queue-depth and in-flight gauges. Queries see only scraped samples:
  `rate()` over a window (first to last sample), `histogram_quantile()` with Prometheus's
  linear interpolation inside a bucket. The operator's and HPA's loops read this view, never
  the truth.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np
from calibration import ReplicaCalibration

from scorefleet.scorer.metrics import LATENCY_BUCKETS

BUCKETS_MS = np.array([1000.0 * b for b in LATENCY_BUCKETS])
MAX_WAIT_S = 30.0  # clients give up (deadline) after this; the wait is capped there
QUEUE_PER_REPLICA = 2 * 8192  # 2 workers x batching.maxQueueSize (ScorerSpec defaults)
SHED_MS = 0.5  # a shed request is answered at once


@dataclass(frozen=True)
class Physics:
    startup_s: float = 30.0
    scrape_s: int = 15
    slo_ms: float = 25.0


@dataclass
class Scrape:
    t: float
    requests: float
    buckets: np.ndarray
    cpu_seconds: float
    queue_depth: float
    in_flight: float
    pods: int
    ready: int


def survival(x_ms: np.ndarray, base: np.ndarray, wait: np.ndarray, pw: np.ndarray,
             theta: np.ndarray, fail: np.ndarray | float = 0.0) -> np.ndarray:
    """P(latency > x) for each second's distribution (all arguments broadcast, in ms).

    `fail` is the share of the second's requests that failed (shed): over any latency target.
    """
    start = base + wait
    body = np.clip((start - x_ms) / (0.75 * base), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tail = np.where(x_ms < start, 1.0,
                        np.where(theta > 0, np.exp(-(x_ms - start) / np.where(
                            theta > 0, theta, 1.0)), 0.0))
    out: np.ndarray = fail + (1 - fail) * ((1 - pw) * body + pw * tail)
    return out


@dataclass
class Fleet:
    cal: ReplicaCalibration
    physics: Physics
    seconds: int
    outages: tuple[tuple[int, int], ...] = ()  # [start, end) seconds Prometheus is down
    pods: list[float] = field(default_factory=list)  # ready-at times
    backlog: float = 0.0
    requests: float = 0.0
    cpu_seconds: float = 0.0

    def __post_init__(self) -> None:
        n = self.seconds
        self.arrivals = np.zeros(n)
        self.n_pods = np.zeros(n, dtype=np.int32)
        self.n_ready = np.zeros(n, dtype=np.int32)
        self.base = np.full(n, self.cal.base_ms)
        self.wait = np.zeros(n)
        self.pw = np.zeros(n)
        self.theta = np.zeros(n)
        self.served = np.zeros(n)
        self.shed = np.zeros(n)
        self.scrapes: list[Scrape] = []  # what Prometheus holds
        self.kubelet: list[Scrape] = []  # the same samples, always (metrics-server's view)
        self.buckets = np.zeros(len(BUCKETS_MS))
        self._unscraped_from = 0
        self.targets: list[tuple[float, int]] = []

    def start(self, replicas: int) -> None:
        self.pods = [-1e9] * replicas

    def set_replicas(self, n: int, now: float) -> None:
        if not self.targets or self.targets[-1][1] != n:
            self.targets.append((now, n))
        if n > len(self.pods):
            self.pods += [now + self.physics.startup_s] * (n - len(self.pods))
        elif n < len(self.pods):
            self.pods.sort(key=lambda r: (r <= now, -r))  # not ready first, newest first
            del self.pods[: len(self.pods) - n]

    def ready(self, now: float) -> int:
        return sum(1 for r in self.pods if r <= now)

    def step(self, t: int, arrivals: float) -> None:
        cal = self.cal
        ready = self.ready(t)
        capacity = ready * cal.saturation_qps
        backlog = self.backlog + arrivals
        served = min(backlog, capacity)
        shed = max(0.0, backlog - served - ready * QUEUE_PER_REPLICA)
        self.backlog = backlog - served - shed
        wait_s = min(self.backlog / capacity, MAX_WAIT_S) if capacity > 0 else MAX_WAIT_S
        rho = min(arrivals / capacity, 0.995) if capacity > 0 else 0.995
        p99 = float(cal.p99_at(np.array(rho)))
        pw = rho
        theta = (p99 - cal.base_ms) / math.log(100 * pw) if 100 * pw > 1.0001 else 0.0
        self.arrivals[t], self.n_pods[t], self.n_ready[t] = arrivals, len(self.pods), ready
        self.wait[t], self.pw[t], self.theta[t], self.served[t] = 1000 * wait_s, pw, theta, served
        self.shed[t] = shed
        self.requests += served + shed
        if ready:
            self.cpu_seconds += ready * float(cal.cores_at(np.array(served / capacity)))

    def scrape(self, t: int) -> None:
        """Prometheus scrapes at the start of second t: counters through second t-1."""
        lo, hi = self._unscraped_from, t
        if hi > lo:
            s = slice(lo, hi)
            below = 1.0 - survival(BUCKETS_MS[None, :], self.base[s, None], self.wait[s, None],
                                   self.pw[s, None], self.theta[s, None])
            self.buckets = self.buckets + (self.served[s, None] * below).sum(axis=0) \
                + self.shed[s].sum() * (BUCKETS_MS >= SHED_MS)
            self._unscraped_from = hi
        last = max(t - 1, 0)
        mean_ms = 0.6 * self.cal.base_ms + self.wait[last] + self.pw[last] * self.theta[last]
        sample = Scrape(
            t=float(t), requests=self.requests, buckets=self.buckets.copy(),
            cpu_seconds=self.cpu_seconds, queue_depth=self.backlog,
            in_flight=self.served[last] * mean_ms / 1000 + self.backlog,
            pods=len(self.pods), ready=self.ready(t))
        self.kubelet.append(sample)
        if not any(a <= t < b for a, b in self.outages):
            self.scrapes.append(sample)

    @property
    def fail(self) -> np.ndarray:
        """Share of each second's arrivals that were shed."""
        return np.divide(self.shed, self.arrivals, out=np.zeros_like(self.shed),
                         where=self.arrivals > 0)

    def true_p99_per_second(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = np.where(self.theta > 0, self.theta * np.log(np.maximum(100 * self.pw, 1.0)),
                            0.0)
        return np.where(self.fail > 0.01, np.inf, self.base + self.wait + tail)


class PromView:
    """What a PromQL query at time `now` returns, from the scrapes taken so far."""

    def __init__(self, fleet: Fleet, kubelet: bool = False) -> None:
        self.fleet = fleet
        self.kubelet = kubelet

    @property
    def samples(self) -> list[Scrape]:
        return self.fleet.kubelet if self.kubelet else self.fleet.scrapes

    def _window(self, now: float, window: float) -> list[Scrape]:
        scrapes = self.samples
        end = bisect.bisect_right(scrapes, now, key=lambda s: s.t)
        begin = bisect.bisect_right(scrapes, now - window, lo=0, hi=end, key=lambda s: s.t)
        return scrapes[begin:end]

    def rate(self, attr: str, now: float, window: float) -> float | None:
        w = self._window(now, window)
        if len(w) < 2:
            return None
        return float((getattr(w[-1], attr) - getattr(w[0], attr)) / (w[-1].t - w[0].t))

    def p99_ms(self, now: float, window: float) -> float | None:
        w = self._window(now, window)
        if len(w) < 2:
            return None
        delta = w[-1].buckets - w[0].buckets
        total = w[-1].requests - w[0].requests
        if total <= 0:
            return None
        rank = 0.99 * total
        i = int(np.searchsorted(delta, rank))
        if i >= len(BUCKETS_MS):  # in +Inf: Prometheus answers the highest finite bound
            return float(BUCKETS_MS[-1])
        lower_b = BUCKETS_MS[i - 1] if i else 0.0
        lower_c = delta[i - 1] if i else 0.0
        span = delta[i] - lower_c
        return float(lower_b + (BUCKETS_MS[i] - lower_b) * ((rank - lower_c) / span
                                                              if span > 0 else 1.0))

    def gauge(self, attr: str, now: float) -> float | None:
        end = bisect.bisect_right(self.samples, now, key=lambda s: s.t)
        return None if end == 0 else float(getattr(self.samples[end - 1], attr))

    def last_scrape(self, now: float) -> float | None:
        end = bisect.bisect_right(self.samples, now, key=lambda s: s.t)
        return None if end == 0 else self.samples[end - 1].t

