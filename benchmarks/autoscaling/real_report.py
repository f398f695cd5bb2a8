"""A real run beside the simulator's prediction of it: per-second series, the comparison, a PNG.

From a `real_run.RunResult` and the pod calibration, the real series are rebuilt per second
(offered load from the load generator's chunks, replicas from the watcher's samples, p99 of
every 10 s window from the chunks in it) and the same offered load is replayed in the
simulator (`replay.predict`) with a replica calibrated from the real pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from calibration import ReplicaCalibration, from_points
from fleet import Fleet
from real_run import CHUNK_S, Calibration, Chunk, RunResult, Sample
from replay import WINDOW_S, RunSetup, compare, predict, predicted_p99

from scorefleet.api.common import duration_seconds
from scorefleet.api.spec import ScalingSpec, SLOSpec


def offered_per_second(chunks: list[Chunk], seconds: int) -> np.ndarray:
    out = np.zeros(seconds)
    for c in chunks:
        a = int(c.start)
        out[a:min(seconds, a + int(CHUNK_S))] = c.rate
    return out


def replicas_per_second(samples: list[Sample], seconds: int) -> tuple[np.ndarray, np.ndarray]:
    """Replicas asked for and ready, per second (each sample holds until the next)."""
    asked, ready = np.zeros(seconds), np.zeros(seconds)
    ordered = sorted(samples, key=lambda s: s.t)
    for i, s in enumerate(ordered):
        a = int(s.t)
        b = int(ordered[i + 1].t) if i + 1 < len(ordered) else seconds
        asked[a:b], ready[a:b] = s.replicas, s.ready
    if ordered:
        asked[:int(ordered[0].t)] = ordered[0].replicas
        ready[:int(ordered[0].t)] = ordered[0].ready
    return asked, ready


def p99_per_window(chunks: list[Chunk], seconds: int) -> np.ndarray:
    """The worst chunk p99 starting in each 10 s window (NaN: no load measured there)."""
    out = np.full(seconds // WINDOW_S, np.nan)
    for c in chunks:
        i = int(c.start) // WINDOW_S
        if i < len(out) and c.sent:
            out[i] = c.p99_ms if np.isnan(out[i]) else max(out[i], c.p99_ms)
    return out


def pod_calibration(cal: Calibration) -> ReplicaCalibration:
    return from_points("real scorer pod on the local node (benchmarks/autoscaling/real_run.py "
                       "calibrate)", cal.saturation_qps, cal.idle_p99_ms, cal.points)


def replay_setup(res: RunResult, spec: ScalingSpec, slo: SLOSpec, *, startup_s: float,
                 scrape_s: int, loop_s: int, window: str, panic_window: str) -> RunSetup:
    seconds = int(res.timeline.samples[-1].t) + 1
    return RunSetup(offered=offered_per_second(res.timeline.chunks, seconds), spec=spec,
                    slo=slo, startup_s=startup_s, scrape_s=scrape_s, loop_s=loop_s,
                    window_s=duration_seconds(window),
                    panic_window_s=duration_seconds(panic_window), initial=1,
                    outages=((int(res.outage[0]), int(res.outage[1])),))


def report(res: RunResult, cal: Calibration, setup: RunSetup, out_png: Path,
           title: str) -> tuple[dict[str, Any], Fleet]:
    seconds = len(setup.offered)
    fleet = predict(setup, pod_calibration(cal))
    asked, ready = replicas_per_second(res.timeline.samples, seconds)
    real_p99 = p99_per_window(res.timeline.chunks, seconds)
    comparison = compare(asked, real_p99, fleet, setup.slo_ms, int(res.load_stop_at))
    plot(setup, asked, ready, real_p99, fleet, res, out_png, title)
    return comparison, fleet


def plot(setup: RunSetup, asked: np.ndarray, ready: np.ndarray, real_p99: np.ndarray,
         fleet: Fleet, res: RunResult, out: Path, title: str) -> None:
    t = np.arange(len(setup.offered))
    fig, (ax_load, ax_rep, ax_p99) = plt.subplots(3, 1, figsize=(11, 9), sharex=True,
                                                  gridspec_kw={"height_ratios": [1, 1.4, 1.4]})
    ax_load.plot(t, setup.offered, color="#444444", lw=1.0)
    ax_load.set_ylabel("offered load (req/s)")
    ax_load.set_title(title)
    ax_rep.step(t, asked, where="post", color="#d62728", lw=2.0, label="real: replicas")
    ax_rep.step(t, ready, where="post", color="#d62728", lw=1.0, ls=":", label="real: ready")
    ax_rep.step(t, fleet.n_pods[:len(t)], where="post", color="#1f77b4", lw=1.5, ls="--",
                label="simulated: replicas")
    ax_rep.set_ylabel("scorer pods")
    ax_rep.legend(loc="upper left", fontsize=8)
    tw = np.arange(len(real_p99)) * WINDOW_S + WINDOW_S / 2
    sim = predicted_p99(fleet)[:len(real_p99)]
    # Failed requests (an infinite p99) drawn at the top; windows with no load (NaN) not at all.
    finite = np.where(np.isinf(real_p99), 2000.0, real_p99)
    ax_p99.plot(tw, np.maximum(finite, 0.5), "o-", color="#d62728", ms=3, lw=1.2,
                label="real: client p99 (failures on top)")
    ax_p99.plot(tw[:len(sim)], np.maximum(np.where(setup.offered[::WINDOW_S][:len(sim)] > 0,
                                                   sim, np.nan), 0.5),
                "--", color="#1f77b4", lw=1.2, label="simulated: true p99")
    ax_p99.axhline(setup.slo_ms, color="#d62728", lw=0.8, ls=":")
    ax_p99.text(0, setup.slo_ms * 1.08, f"SLO {setup.slo_ms:g} ms", color="#d62728", fontsize=8)
    ax_p99.set_yscale("log")
    ax_p99.set_ylabel("p99 per 10 s (ms)")
    ax_p99.set_xlabel("time (s)")
    ax_p99.legend(loc="upper left", fontsize=8)
    for ax in (ax_load, ax_rep, ax_p99):
        ax.axvspan(res.outage[0], res.outage[1], color="#ffcc00", alpha=0.2)
        ax.grid(alpha=0.3)
    ax_load.text(res.outage[0], ax_load.get_ylim()[1] * 0.9, " Prometheus frozen", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
