"""CPU and memory of processes, and how busy the whole machine is, from /proc.

A sampler thread reads each watched pid's utime+stime and RSS, /proc/stat and the load average
once per `interval`; `window(t0, t1)` turns the samples between two instants into CPU shares (of
one core), RSS statistics, and the machine's busy share with what other processes (the other
engineers' work on a shared machine) took.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def cpu_seconds(pid: int) -> float | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    cpu: dict[str, float | None]
    rss: dict[str, int | None]
    machine_busy: float
    machine_total: float
    load1: float


class Sampler:
    """Samples `pids` (name -> pid) every `interval` seconds on a daemon thread."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procstat", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def take(self) -> Sample:
        busy, total = machine_seconds()
        pids = dict(self.pids)
        sample = Sample(time.monotonic(), {n: cpu_seconds(p) for n, p in pids.items()},
                        {n: rss_bytes(p) for n, p in pids.items()}, busy, total,
                        os.getloadavg()[0])
        self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            self.take()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def window(self, start: float, end: float) -> dict[str, Any]:
        """CPU share of one core per process, RSS (MB) and the machine's load in [start, end]."""
        inside = [s for s in list(self.samples) if start <= s.at <= end]
        if len(inside) < 2:
            return {"samples": len(inside)}
        first, last = inside[0], inside[-1]
        wall = last.at - first.at
        out: dict[str, Any] = {"seconds": round(wall, 1), "samples": len(inside), "processes": {}}
        ours = 0.0
        for name in self.pids:
            c0, c1 = first.cpu.get(name), last.cpu.get(name)
            rss = [s.rss[name] for s in inside if s.rss.get(name)]
            entry: dict[str, Any] = {}
            if c0 is not None and c1 is not None:
                entry["cpu_core_share"] = round((c1 - c0) / wall, 3)
                ours += c1 - c0
            if rss:
                mb = [r / 2**20 for r in rss if r]
                entry["rss_mb_median"] = round(statistics.median(mb), 1)
                entry["rss_mb_max"] = round(max(mb), 1)
            out["processes"][name] = entry
        busy = last.machine_busy - first.machine_busy
        total = last.machine_total - first.machine_total
        out["machine"] = {
            "cores": CORES,
            "busy_share_of_all_cores": round(busy / total, 3) if total else None,
            # What processes other than the measured ones (and this benchmark) used: the
            # noise from the other work on a shared machine, in cores.
            "others_cores": round(max(0.0, busy - ours) / wall, 2),
            "load1_median": round(statistics.median(s.load1 for s in inside), 2),
            "load1_max": round(max(s.load1 for s in inside), 2),
        }
        return out
