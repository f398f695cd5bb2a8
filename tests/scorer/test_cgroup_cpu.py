"""The container's CPU accounting as the scorer exports it (cgroup v1 and v2 layouts)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from scorefleet.scorer.cgroup_cpu import CgroupCpuCollector, CpuStat, read_cpu_stat


def v2(root: Path, quota: str = "10000 100000") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
                                   "nr_periods 300\nnr_throttled 45\nthrottled_usec 1750000\n")
    (root / "cpu.max").write_text(quota + "\n")
    return root


def v1(root: Path, quota: int = 10000, acct_dir: str = "cpuacct") -> Path:
    (root / "cpu").mkdir(parents=True)
    (root / acct_dir).mkdir(parents=True, exist_ok=True)
    (root / "cpu" / "cpu.stat").write_text("nr_periods 300\nnr_throttled 45\n"
                                           "throttled_time 1750000000\nnr_bursts 0\n")
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (root / acct_dir / "cpuacct.usage").write_text("2500000000\n")
    return root


EXPECTED = CpuStat(usage_seconds=2.5, periods=300, throttled_periods=45,
                   throttled_seconds=1.75, limit_cores=0.1)


def test_cgroup_v2_is_read_in_seconds_and_cores(tmp_path: Path) -> None:
    assert read_cpu_stat(v2(tmp_path)) == EXPECTED


def test_cgroup_v1_is_read_in_seconds_and_cores(tmp_path: Path) -> None:
    assert read_cpu_stat(v1(tmp_path)) == EXPECTED


def test_no_limit_and_no_cgroup_are_absent_values_not_zeros(tmp_path: Path) -> None:
    assert read_cpu_stat(v2(tmp_path / "a", "max 100000")).limit_cores is None
    assert read_cpu_stat(v1(tmp_path / "b", quota=-1)).limit_cores is None
    assert read_cpu_stat(tmp_path / "missing") == CpuStat()


def test_the_collector_exports_counters_and_the_limit_with_the_track_labels(
        tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(CgroupCpuCollector("fraud", "stable", v1(tmp_path)))
    text = generate_latest(registry).decode()
    labels = '{pipeline="fraud",track="stable"}'
    for line in (f"scorefleet_cpu_usage_seconds_total{labels} 2.5",
                 f"scorefleet_cpu_cfs_periods_total{labels} 300.0",
                 f"scorefleet_cpu_cfs_throttled_periods_total{labels} 45.0",
                 f"scorefleet_cpu_cfs_throttled_seconds_total{labels} 1.75",
                 f"scorefleet_cpu_limit_cores{labels} 0.1"):
        assert line in text, text


def test_a_cgroup_without_files_exports_nothing(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(CgroupCpuCollector("fraud", "stable", tmp_path))
    assert "scorefleet_cpu" not in generate_latest(registry).decode()
