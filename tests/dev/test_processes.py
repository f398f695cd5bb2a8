"""Spawning, liveness and termination, on a real short-lived process."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from scorefleet.dev import processes


def test_free_ports_are_distinct_and_unbound() -> None:
    ports = processes.free_ports(6)
    assert len(set(ports)) == 6
    assert not any(processes.port_open(p) for p in ports)


def test_spawn_detaches_logs_and_terminate_stops_the_group(tmp_path: Path) -> None:
    sh = shutil.which("sh")
    assert sh is not None
    log = tmp_path / "x.log"
    # No `exec`: the shell stays (so its cmdline is stable) with `sleep` as its child.
    pid = processes.spawn([sh, "-c", "echo started; sleep 60; echo never"], log)
    try:
        assert processes.is_running(pid, sh)
        assert os.getpgid(pid) == pid  # its own session and group, detached from ours
        deadline = time.monotonic() + 5
        while "started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "started" in log.read_text()
        # A recorded pid now running another binary (reused) is never signalled.
        processes.terminate(pid, "/bin/not-the-binary")
        assert processes.is_running(pid, sh)
    finally:
        processes.terminate(pid, sh)
    assert not processes.is_running(pid)
    assert "never" not in log.read_text()


def test_a_dead_pid_is_not_running() -> None:
    sh = shutil.which("true")
    assert sh is not None
    pid = processes.spawn([sh], Path("/dev/null"))
    deadline = time.monotonic() + 5
    while processes.is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not processes.is_running(pid)
    processes.terminate(pid, sh)  # a no-op, not an error
