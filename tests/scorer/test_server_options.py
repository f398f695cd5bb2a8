"""Pure pieces of process setup: gRPC server options and the CPU count a worker pool uses."""

from __future__ import annotations

from pathlib import Path

from scorefleet.scorer.config_watch import parse_config
from scorefleet.scorer.grpc_options import server_options
from scorefleet.scorer.server import available_cpus, cgroup_cpu_quota

BASE = "pipeline: p\nmodel: {name: m, version: v1, uri: 'file:///m.onnx'}\n"


def test_max_connection_age_becomes_grpc_options() -> None:
    options = dict(server_options(parse_config(BASE + "maxConnectionAgeSeconds: 30\n"), 20.0))
    assert options["grpc.max_connection_age_ms"] == 30_000
    assert options["grpc.max_connection_age_grace_ms"] == 20_000
    assert options["grpc.so_reuseport"] == 1


def test_burst_and_keepalive_options() -> None:
    options = dict(server_options(parse_config(BASE), 20.0))
    # gRPC core's defaults (1,000 / 3,000) dropped calls of a burst as CANCELLED, no detail.
    assert options["grpc.server.max_pending_requests"] == 20_000
    assert options["grpc.server.max_pending_requests_hard_limit"] == 20_000
    assert options["grpc.max_concurrent_streams"] == 1000
    assert options["grpc.http.overload_protection"] == 0
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.keepalive_time_ms"] == 60_000


def test_no_max_connection_age() -> None:
    options = dict(server_options(parse_config(BASE + "maxConnectionAgeSeconds: null\n"), 5.0))
    assert "grpc.max_connection_age_ms" not in options


def test_cgroup_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert available_cpus(tmp_path) <= 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert cgroup_cpu_quota(tmp_path / "missing") is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 0.5
    assert available_cpus(tmp_path) == 1


def test_invalid_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "config.yaml"
    config.write_text(BASE + "workers: -1\n")
    proc = subprocess.run([sys.executable, "-m", "scorefleet.scorer", "--config", str(config),
                           "--host", "127.0.0.1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "workers" in proc.stderr
