"""One PNG per trace: load, replicas and true p99 per minute of every policy, side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from fleet import Fleet
from scoring import minute_p99
from traces import Trace

COLORS = {"scorefleet": "#d62728", "hpa_cpu": "#1f77b4", "qps_0.5": "#2ca02c",
          "qps_0.7": "#9467bd", "static_peak": "#7f7f7f", "oracle": "#000000"}
WIDTHS = {"scorefleet": 2.0, "oracle": 1.0}


def plot_trace(trace: Trace, fleets: dict[str, Fleet], slo_ms: float, out: Path,
               title: str) -> None:
    start = trace.scored.start
    secs = len(trace.rate) - start
    hours = secs > 4 * 3600
    unit, div = ("h", 3600.0) if hours else ("min", 60.0)
    t = np.arange(secs) / div
    fig, (ax_load, ax_rep, ax_p99) = plt.subplots(3, 1, figsize=(11, 9), sharex=True,
                                                  gridspec_kw={"height_ratios": [1, 1.4, 1.4]})
    any_fleet = next(iter(fleets.values()))
    load = np.pad(any_fleet.arrivals[start:], (5, 4), mode="edge")
    smooth = np.convolve(load, np.ones(10) / 10, mode="valid")
    ax_load.plot(t, smooth / 1000, color="#444444", lw=0.8)
    ax_load.set_ylabel("load (k req/s)")
    ax_load.set_title(title)
    for name, fleet in fleets.items():
        style = {"color": COLORS.get(name), "lw": WIDTHS.get(name, 1.2),
                 "ls": "--" if name == "oracle" else "-",
                 "zorder": 5 if name == "scorefleet" else 2}  # ours on top where lines meet
        ax_rep.step(t, fleet.n_pods[start:], where="post", label=name, **style)
        p99 = minute_p99(fleet, start)
        tm = (np.arange(len(p99)) * 60 + 30) / div
        ax_p99.plot(tm, np.maximum(p99, 0.5), **style)
    ax_rep.set_ylabel("replicas (incl. starting)")
    ax_rep.legend(loc="upper left", ncol=3, fontsize=8)
    ax_p99.axhline(slo_ms, color="#d62728", lw=0.8, ls=":")
    ax_p99.text(0, slo_ms * 1.08, f"SLO {slo_ms:g} ms", color="#d62728", fontsize=8)
    ax_p99.set_yscale("log")
    ax_p99.set_ylabel("true p99 per minute (ms)")
    ax_p99.set_xlabel(f"time ({unit}, after warm-up)")
    for ax in (ax_load, ax_rep, ax_p99):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
