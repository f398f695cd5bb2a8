"""One simulated replica, calibrated from the scorer's own benchmark (not invented).

Source: benchmarks/scorer/results-2026-11-28-quiet.json, series `scorefleet_unary` (the default
scorer config of that day, 2 workers, dynamic batching on, unary `Score`), measured on this machine
with ghz, others' CPU median 0 %. The quiet re-run of 2026-11-29 (results.json, the idle-aware
default) is not used: on that day every server on this shared host needed 1.2-2x the CPU per
event it needed on 11-28 (grpc-go no-op 22 -> 27 us, KServe 376 -> 553 us, the same fixed-wait
scorer 161 -> 270 us at its peak), so its replica saturates at ~4,500-5,400 RPC/s instead of
8,575: a slower host, not a different scorer. The simulator compares policies on one replica,
so the source day scales every policy's replica counts alike; the operator's prior
(decide/queueing.py) is fitted to the same 11-28 curve, and both move together or not at all.

* Saturation throughput: the highest rate the replica completed in any step, open or closed
  loop (8,575 RPC/s at the 115 % open-loop step, which fell short of its offered rate).
* p99 curve: every open-loop step whose offered rate was reached (>= 95 %) below saturation,
  as (utilisation, p99) points; repeated rates are averaged; linear in between; below the lowest
  step down to the closed-loop concurrency-1 step (the idle p99); above the highest step,
  Kingman's rho/(1-rho) anchored at that step. The replica's p99 at a load is this curve; the
  backlog of an overloaded fleet is added on top by `fleet.py`.
* CPU: the server's whole process tree (`server_cpu_s / duration_s`) at the same steps, made
  non-decreasing (two steps measured 1.05 and 1.04 cores), flat beyond the last point.
* "Measured capacity" for the QPS baselines: the documented closed-loop peak (7,811 RPC/s), the
  figure a user reads in docs/benchmarks.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCORER_RESULTS = Path(__file__).resolve().parents[1] / "scorer" / "results-2026-11-28-quiet.json"
SERIES = "scorefleet_unary"


@dataclass(frozen=True)
class ReplicaCalibration:
    source: str
    saturation_qps: float
    capacity_qps: float  # the documented closed-loop peak ("measured capacity")
    base_ms: float
    rho: tuple[float, ...]
    p99_ms: tuple[float, ...]
    tail_ms: float  # Kingman tail scale beyond the last measured point
    cpu_rho: tuple[float, ...]
    cpu_cores: tuple[float, ...]

    def p99_at(self, rho: np.ndarray) -> np.ndarray:
        """The replica's p99 (ms) at utilisation rho (load / saturation), rho < 1."""
        rho = np.clip(rho, 0.0, 0.995)
        inside = np.interp(rho, self.rho, self.p99_ms)
        last_r, last_p = self.rho[-1], self.p99_ms[-1]
        beyond = last_p + self.tail_ms * (rho / (1 - rho) - last_r / (1 - last_r))
        out: np.ndarray = np.where(rho <= last_r, inside, beyond)
        return out

    def cores_at(self, rho: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.interp(np.clip(rho, 0.0, 1.0), self.cpu_rho, self.cpu_cores)
        return out

    @property
    def cpu_saturation_cores(self) -> float:
        return self.cpu_cores[-1]

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source, "saturation_qps": self.saturation_qps,
            "measured_capacity_qps": self.capacity_qps, "idle_p99_ms": self.base_ms,
            "p99_curve": [[round(r, 4), round(p, 3)] for r, p in zip(self.rho, self.p99_ms,
                                                                     strict=True)],
            "tail_ms_beyond_curve": round(self.tail_ms, 3),
            "cpu_curve_cores": [[round(r, 4), round(c, 3)] for r, c in zip(
                self.cpu_rho, self.cpu_cores, strict=True)],
        }


def load(path: Path = SCORER_RESULTS, series: str = SERIES) -> ReplicaCalibration:
    data = json.loads(path.read_text())
    curves = data["curves"][series]
    steps = [*curves["open"], *curves["closed"]]
    saturation = max(float(s["ok_rps"]) for s in steps)
    capacity = float(data["summary"][series]["closed_peak_rps"])
    idle = min(curves["closed"], key=lambda s: s["concurrency"])
    by_rate: dict[float, list[dict[str, Any]]] = {}
    for s in curves["open"]:
        reached = s["ok_rps"] >= 0.95 * s["target_rps"]
        if reached and s["ok_rps"] < 0.99 * saturation:
            by_rate.setdefault(float(s["target_rps"]), []).append(s)
    points = sorted((float(np.mean([s["ok_rps"] for s in group])) / saturation,
                     float(np.mean([s["p99_ms"] for s in group])),
                     float(np.mean([s["server_cpu_s"] / s["duration_s"] for s in group])))
                    for group in by_rate.values())
    idle_rho = float(idle["ok_rps"]) / saturation
    rho = (0.0, idle_rho, *(p[0] for p in points))
    p99 = (float(idle["p99_ms"]), float(idle["p99_ms"]), *(p[1] for p in points))
    cores = np.maximum.accumulate(np.array(
        [0.0, float(idle["server_cpu_s"]) / float(idle["duration_s"]), *(p[2] for p in points)]))
    last_r, last_p = rho[-1], p99[-1]
    tail = (last_p - p99[0]) * (1 - last_r) / last_r
    return ReplicaCalibration(
        source=f"{path.relative_to(path.parents[2])} [{series}], run of {data['date']}",
        saturation_qps=saturation, capacity_qps=capacity, base_ms=float(idle["p99_ms"]),
        rho=rho, p99_ms=p99, tail_ms=tail, cpu_rho=rho,
        cpu_cores=tuple(float(c) for c in cores))


def from_points(source: str, saturation_qps: float, idle_p99_ms: float,
                points: list[tuple[float, float]]) -> ReplicaCalibration:
    """A replica measured elsewhere (e.g. a real pod on the local node, benchmarks/autoscaling/
    real_loop.py): its saturation throughput, its idle p99 and (load, p99) points below
    saturation. The same curve shape rules as `load()`; no CPU curve (CPU is not modelled for
    it: only the scorefleet policy is replayed against such a replica)."""
    pts = sorted((q / saturation_qps, p) for q, p in points if 0 < q < 0.99 * saturation_qps)
    if not pts:
        raise ValueError("no measured point below saturation")
    rho = (0.0, *(r for r, _ in pts))
    p99 = (idle_p99_ms, *(max(p, idle_p99_ms) for _, p in pts))
    last_r, last_p = rho[-1], p99[-1]
    tail = max(last_p - idle_p99_ms, 1e-3) * (1 - last_r) / last_r
    return ReplicaCalibration(source=source, saturation_qps=saturation_qps,
                              capacity_qps=saturation_qps, base_ms=idle_p99_ms, rho=rho,
                              p99_ms=p99, tail_ms=tail, cpu_rho=(0.0, 1.0),
                              cpu_cores=(0.0, 1.0))
