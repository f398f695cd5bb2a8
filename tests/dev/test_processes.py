"""Spawning, liveness and termination, on a real short-lived process."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from scorefleet.dev import processes


def test_free_ports_are_distinct_and_unbound() -> None:
    ports = processes.free_ports(6)
    assert len(set(ports)) == 6
    assert not any(processes.port_open(p) for p in ports)


def test_spawn_detaches_logs_and_terminate_stops_it(tmp_path: Path) -> None:
    sh = shutil.which("sh")
    assert sh is not None
    log = tmp_path / "x.log"
    pid = processes.spawn([sh, "-c", "echo started; exec sleep 60"], log)
    try:
        assert processes.is_running(pid, sh)
        deadline = time.monotonic() + 5
        while "started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "started" in log.read_text()
        # `exec sleep` replaced the shell: the recorded binary no longer matches, so a stale
        # pid is never signalled by mistake...
        assert not processes.is_running(pid, sh)
        processes.terminate(pid, sh)
        assert processes.is_running(pid)
    finally:
        # ...while the right binary (or none) does stop it, and reaps the zombie.
        processes.terminate(pid, None)
    assert not processes.is_running(pid)


def test_a_dead_pid_is_not_running() -> None:
    sh = shutil.which("true")
    assert sh is not None
    pid = processes.spawn([sh], Path("/dev/null"))
    deadline = time.monotonic() + 5
    while processes.is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not processes.is_running(pid)
    processes.terminate(pid, sh)  # a no-op, not an error
