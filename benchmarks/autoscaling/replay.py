"""Predict a real autoscaling run with the simulator, and say how close the prediction was.

The same offered load second by second as the real run's load generator sent, the same policy
code with the pipeline's own scaling spec and SLO, the operator's loop period and rate windows,
Prometheus' scrape interval and outages, the pods' measured start-up delay, and one replica
calibrated from the real pods themselves (`calibration.from_points`). Nothing of the real run's
outcome (replicas, latency) goes in; the comparison is on what comes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from calibration import ReplicaCalibration
from fleet import Fleet, Physics, PromView
from policies import Scorefleet
from scoring import window_p99

from scorefleet.api.common import duration_seconds
from scorefleet.api.spec import ScalingSpec, SLOSpec

WINDOW_S = 10  # p99 is compared over 10 s windows (a second has too few requests)


@dataclass(frozen=True)
class RunSetup:
    offered: np.ndarray  # requests/s the load generator sent, per second of the run
    spec: ScalingSpec
    slo: SLOSpec
    startup_s: float
    scrape_s: int
    loop_s: int
    window_s: float
    panic_window_s: float
    initial: int
    outages: tuple[tuple[int, int], ...] = ()  # [start, end) seconds Prometheus was down

    @property
    def slo_ms(self) -> float:
        return 1000.0 * duration_seconds(self.slo.p99_latency)


def predict(setup: RunSetup, cal: ReplicaCalibration) -> Fleet:
    physics = Physics(startup_s=setup.startup_s, scrape_s=setup.scrape_s, slo_ms=setup.slo_ms)
    policy = Scorefleet(setup.slo, loop_s=setup.loop_s, phase_s=0, spec=setup.spec,
                        window_s=setup.window_s, panic_window_s=setup.panic_window_s)
    fleet = Fleet(cal, physics, len(setup.offered), outages=setup.outages)
    fleet.start(setup.initial)
    prom = PromView(fleet)
    current = setup.initial
    for t in range(len(setup.offered)):
        if t % physics.scrape_s == 0:
            fleet.scrape(t)
        if t % policy.loop_s == policy.phase_s:
            n = policy.decide(float(t), prom, fleet, current)
            if n != current:
                fleet.set_replicas(n, float(t))
                current = n
        fleet.step(t, float(setup.offered[t]))
    return fleet


def predicted_p99(fleet: Fleet) -> np.ndarray:
    """The simulated true p99 of each 10 s window."""
    return window_p99(fleet, 0, len(fleet.arrivals), WINDOW_S)


def _first(mask: np.ndarray) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def compare(real_replicas: np.ndarray, real_p99: np.ndarray, fleet: Fleet,
            slo_ms: float, load_stop_s: int) -> dict[str, Any]:
    """Real vs predicted, on what matters: when it scaled up and how far, how long p99 was over
    the SLO, when it came back down, and replica-seconds. `real_p99` is per 10 s window
    (NaN where nothing was measured); replicas are per second (pods asked for)."""
    n = min(len(real_replicas), len(fleet.n_pods))
    real, sim = real_replicas[:n].astype(float), fleet.n_pods[:n].astype(float)
    initial = real[0]
    sim_p99 = predicted_p99(fleet)
    m = min(len(real_p99), len(sim_p99))
    measured = ~np.isnan(real_p99[:m])
    down_real = _first((np.arange(n) > load_stop_s) & (real < real[load_stop_s]))
    down_sim = _first((np.arange(n) > load_stop_s) & (sim < sim[load_stop_s]))

    def pair(a: float | int | None, b: float | int | None) -> dict[str, Any]:
        return {"real": a, "simulated": b}

    return {
        "first_scale_up_s": pair(_first(real > initial), _first(sim > initial)),
        "peak_replicas": pair(int(real.max()), int(sim.max())),
        "replica_seconds": pair(int(real.sum()), int(sim.sum())),
        "replica_seconds_ratio_sim_over_real": round(float(sim.sum() / real.sum()), 3),
        "seconds_equal_replicas_fraction": round(float((real == sim).mean()), 3),
        "mean_abs_replica_difference": round(float(np.abs(real - sim).mean()), 3),
        "windows_over_slo": pair(int((real_p99[:m][measured] > slo_ms).sum()),
                                 int((sim_p99[:m][measured] > slo_ms).sum())),
        "first_scale_down_after_load_stop_s": pair(
            None if down_real is None else down_real - load_stop_s,
            None if down_sim is None else down_sim - load_stop_s),
        "windows_compared": int(measured.sum()),
    }
