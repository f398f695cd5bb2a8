"""The container's own CPU accounting, read from its cgroup at every scrape: usage, CFS periods,
throttled periods and time, and the CPU limit.

Why the scorer exports this: its latency histogram starts when the handler runs. A request that
arrives while the container has spent its CFS quota waits in the kernel's socket buffer until
the next period, and no clock in the process (nor grpcio's deadline bookkeeping, which runs in
the same frozen process) can see that wait. Measured on the local node (docs/autoscaling.md,
"The saturation signal"): one 100m-CPU pod at 100 RPC/s gave clients a p99 of 35 ms or more
while the server's own p99 read 1-2 ms. The kernel does count it: `nr_throttled` periods and
`throttled_time`. Exporting the container's own counters keeps the autoscaler's inputs in one
place (the scorer's series, selected by pipeline and track, as every other input) instead of a
join against cAdvisor's per-container series, which a cluster may not scrape.

cgroup v2 (`cpu.stat`: usage_usec, nr_periods, nr_throttled, throttled_usec; `cpu.max`) and
v1 (`cpu/cpu.stat`: nr_periods, nr_throttled, throttled_time in ns; `cpuacct/cpuacct.usage` in
ns; `cpu/cpu.cfs_quota_us` and `cpu.cfs_period_us`) are both read; a file that is not there
is a series that is not exported, never a zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
_V1_ACCT_DIRS = ("cpuacct", "cpu,cpuacct", "cpuacct,cpu", "cpu")


@dataclass(frozen=True)
class CpuStat:
    """One reading; None where this cgroup does not say."""

    usage_seconds: float | None = None
    periods: int | None = None
    throttled_periods: int | None = None
    throttled_seconds: float | None = None
    limit_cores: float | None = None


def _keyed(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _first(root: Path, dirs: tuple[str, ...], name: str) -> Path | None:
    return next((root / d / name for d in dirs if (root / d / name).is_file()), None)


def read_cpu_stat(root: Path = CGROUP_ROOT) -> CpuStat:
    """The cgroup's CPU accounting as this process sees it (its own cgroup, in a container)."""
    try:
        if (root / "cpu.stat").is_file():  # v2: one unified file
            s = _keyed(root / "cpu.stat")
            limit: float | None = None
            if (root / "cpu.max").is_file():
                text, period = (root / "cpu.max").read_text().split()[:2]
                limit = None if text == "max" else int(text) / int(period)
            return CpuStat(
                usage_seconds=s["usage_usec"] / 1e6 if "usage_usec" in s else None,
                periods=s.get("nr_periods"), throttled_periods=s.get("nr_throttled"),
                throttled_seconds=(s["throttled_usec"] / 1e6 if "throttled_usec" in s
                                   else None),
                limit_cores=limit)
        stat = _first(root, _V1_CPU_DIRS, "cpu.stat")
        s = _keyed(stat) if stat is not None else {}
        acct = _first(root, _V1_ACCT_DIRS, "cpuacct.usage")
        quota_file = _first(root, _V1_CPU_DIRS, "cpu.cfs_quota_us")
        limit = None
        if quota_file is not None:
            quota_us = int(quota_file.read_text())
            period_us = int((quota_file.parent / "cpu.cfs_period_us").read_text())
            limit = quota_us / period_us if quota_us > 0 else None
        return CpuStat(
            usage_seconds=int(acct.read_text()) / 1e9 if acct is not None else None,
            periods=s.get("nr_periods"), throttled_periods=s.get("nr_throttled"),
            throttled_seconds=s["throttled_time"] / 1e9 if "throttled_time" in s else None,
            limit_cores=limit)
    except (OSError, ValueError):
        return CpuStat()


class CgroupCpuCollector(Collector):
    """Serves `read_cpu_stat()` as `scorefleet_cpu_*` series, labelled like the track's others.

    Read at scrape time, once for the whole pod (the supervisor's registry), so workers add no
    cost and the numbers cover every process in the container.
    """

    def __init__(self, pipeline: str, track: str, root: Path = CGROUP_ROOT) -> None:
        self.labels = [pipeline, track]
        self.root = root

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = read_cpu_stat(self.root)
        names = ["pipeline", "track"]
        counters = (
            ("scorefleet_cpu_usage_seconds", "CPU time used by the scorer's container.",
             s.usage_seconds),
            ("scorefleet_cpu_cfs_periods", "CFS enforcement periods elapsed while the "
             "container was runnable (cgroup nr_periods).", s.periods),
            ("scorefleet_cpu_cfs_throttled_periods", "CFS periods in which the container used "
             "its whole quota and was stopped until the next period (nr_throttled).",
             s.throttled_periods),
            ("scorefleet_cpu_cfs_throttled_seconds", "Time the container's runnable threads "
             "spent stopped by its CPU limit (throttled_time; summed over CPUs).",
             s.throttled_seconds),
        )
        for name, doc, value in counters:
            if value is not None:
                c = CounterMetricFamily(name, doc, labels=names)
                c.add_metric(self.labels, float(value))
                yield c
        if s.limit_cores is not None:
            g = GaugeMetricFamily("scorefleet_cpu_limit_cores",
                                  "The container's CPU limit in cores (CFS quota / period).",
                                  labels=names)
            g.add_metric(self.labels, s.limit_cores)
            yield g
