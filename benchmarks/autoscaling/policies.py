"""The policies compared, each reading only what it could read in a real cluster.

* `scorefleet`: the operator's own policy (scorefleet.operator.decide.scaling), fed the
  PromQL answers its gatherer would get: QPS over 1m and 30s, p99 from the latency histogram
  over 1m and 30s, queue depth and in-flight gauges; replicas and ready pods as Kubernetes
  reports them. Its state is round-tripped through a dict every loop, as it would be through status.
* `hpa_cpu`: HPA on CPU utilisation, target 80 % (HPA's default) of a request equal to the
  most CPU the scorer used in its benchmark, from a 30 s rate of CPU seconds (metrics-server).
* `qps_0.5`, `qps_0.7`: KEDA's Prometheus scaler = HPA on an External metric with AverageValue,
  `sum(rate(scorefleet_requests_total[1m]))`, target 0.5 / 0.7 of the measured capacity.
* `static_peak`: the oracle's largest count, all the time.
* `oracle`: zero-delay, perfect foresight within each minute: the fewest replicas whose true
  p99 over that minute meets the SLO, ready the moment it is asked for.
All share minReplicas 2, maxReplicas 100 and, where they have one, a 15 s loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from calibration import ReplicaCalibration
from fleet import Fleet, PromView, survival
from hpa import Behavior, external_average_value_replicas, resource_replicas

from scorefleet.api.spec import ScalingSpec, SLOSpec
from scorefleet.operator.decide.scaling import AutoscalerState, decide_scaling
from scorefleet.operator.decide.scaling_inputs import (
    MetricsSample,
    NoData,
    Observation,
    RolloutView,
    Stale,
    TrackView,
)

MIN_REPLICAS, MAX_REPLICAS = 2, 100
LOOP_S = 15
HPA_CPU_TARGET = 0.8


class Policy(Protocol):
    name: str
    loop_s: int
    phase_s: int

    def decide(self, now: float, prom: PromView, fleet: Fleet, current: int) -> int: ...


@dataclass
class Scorefleet:
    slo: SLOSpec
    name: str = "scorefleet"
    loop_s: int = LOOP_S
    phase_s: int = 5
    state: dict[str, object] = field(default_factory=dict)
    reasons: list[tuple[float, str, str]] = field(default_factory=list)
    # The pipeline's scaling spec and the operator's windows (a replayed real run sets them).
    spec: ScalingSpec = field(default_factory=lambda: ScalingSpec(
        min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS))
    window_s: float = 60.0
    panic_window_s: float = 30.0

    def decide(self, now: float, prom: PromView, fleet: Fleet, current: int) -> int:
        spec = self.spec
        qps = prom.rate("requests", now, self.window_s)
        obs: Observation
        last = prom.last_scrape(now)
        if qps is None or last is None:
            # What the gatherer would say: Prometheus answered nothing; since when it has not.
            obs = (NoData("no samples in the rate window") if last is None
                   else Stale(last, "no samples in the rate window"))
        else:
            obs = MetricsSample(measured_at=last, qps=qps, p99_ms=prom.p99_ms(now, self.window_s),
                                qps_short=prom.rate("requests", now, self.panic_window_s),
                                p99_short_ms=prom.p99_ms(now, self.panic_window_s),
                                queue_depth=prom.gauge("queue_depth", now),
                                in_flight=prom.gauge("in_flight", now))
        state = AutoscalerState.from_dict(self.state) if self.state else None
        plan = decide_scaling(spec, self.slo, {"stable": TrackView(current, fleet.ready(now), obs)},
                              RolloutView(), state, now)
        self.state = plan.state.to_dict()
        d = plan.decisions["stable"]
        if d.changed:
            self.reasons.append((now, d.reason, d.message))
        return d.desired


@dataclass
class HpaCpu:
    cal: ReplicaCalibration
    name: str = "hpa_cpu"
    loop_s: int = LOOP_S
    phase_s: int = 5
    behavior: Behavior = field(default_factory=lambda: Behavior(MIN_REPLICAS, MAX_REPLICAS))

    def decide(self, now: float, prom: PromView, fleet: Fleet, current: int) -> int:
        cpu = PromView(fleet, kubelet=True).rate("cpu_seconds", now, 30)  # metrics-server
        ready = fleet.ready(now)
        if cpu is None or ready == 0:
            return current  # HPA skips a loop without metrics
        utilization = cpu / ready / self.cal.cpu_saturation_cores
        proposed = resource_replicas(current, ready, current - ready, utilization,
                                     HPA_CPU_TARGET)
        return self.behavior.normalize(now, current, proposed)


@dataclass
class HpaQps:
    target_qps: float
    name: str
    loop_s: int = LOOP_S
    phase_s: int = 5
    behavior: Behavior = field(default_factory=lambda: Behavior(MIN_REPLICAS, MAX_REPLICAS))

    def decide(self, now: float, prom: PromView, fleet: Fleet, current: int) -> int:
        qps = prom.rate("requests", now, 60)
        value = 0.0 if qps is None else qps  # KEDA reads an empty answer as 0 (KEDA #3065)
        proposed = external_average_value_replicas(current, value, self.target_qps)
        return self.behavior.normalize(now, current, proposed)


@dataclass
class Schedule:
    """A precomputed replica count per minute (static peak, oracle)."""

    per_minute: np.ndarray
    name: str
    loop_s: int = 60
    phase_s: int = 0

    def decide(self, now: float, prom: PromView, fleet: Fleet, current: int) -> int:
        return int(self.per_minute[min(int(now) // 60, len(self.per_minute) - 1)])


def oracle_schedule(arrivals: np.ndarray, cal: ReplicaCalibration, slo_ms: float) -> np.ndarray:
    """Per minute, the fewest replicas whose p99 over that minute meets the SLO (no backlog)."""
    minutes = math.ceil(len(arrivals) / 60)
    padded = np.concatenate([arrivals, np.zeros(minutes * 60 - len(arrivals))])
    per_min = padded.reshape(minutes, 60)
    out = np.zeros(minutes, dtype=np.int64)
    n = np.maximum(np.ceil(per_min.max(axis=1) / cal.saturation_qps).astype(np.int64), 1)
    todo = np.ones(minutes, dtype=bool)
    while todo.any():
        rho = np.minimum(per_min / (n[:, None] * cal.saturation_qps), 0.995)
        p99 = cal.p99_at(rho)
        with np.errstate(divide="ignore", invalid="ignore"):
            theta = np.where(100 * rho > 1.0001, (p99 - cal.base_ms) / np.log(100 * rho), 0.0)
        over = (per_min * survival(np.full((minutes, 1), slo_ms), np.full_like(rho, cal.base_ms),
                                   np.zeros_like(rho), rho, theta)).sum(axis=1)
        ok = over <= 0.01 * np.maximum(per_min.sum(axis=1), 1e-9)
        done = todo & ok
        out[done] = n[done]
        todo &= ~ok
        n = np.where(todo, n + 1, n)
    return np.clip(out, MIN_REPLICAS, MAX_REPLICAS)
