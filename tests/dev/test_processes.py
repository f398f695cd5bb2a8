"""Spawning, liveness and termination, on a real short-lived process."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

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


class _Shell(processes.ProcessGroupServer):
    """A server whose readiness is a line in its log: the smallest real subclass."""

    ready_timeout = 5.0

    def __init__(self, log: Path, script: str) -> None:
        sh = shutil.which("sh")
        assert sh is not None
        super().__init__(log, sh)
        self.script = script

    def _launch(self) -> None:
        assert self.match_binary is not None
        self._spawn([self.match_binary, "-c", self.script])

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"exited ({self.exit_reason()}): {self.log_tail()}")
            if "ready" in self.log_tail():
                return
            time.sleep(0.02)
        raise RuntimeError("not ready")


def test_process_group_server_start_stop_kill_restart(tmp_path: Path) -> None:
    server = _Shell(tmp_path / "s.log", "echo ready; sleep 60")
    with server:
        first = server.pid
        assert first is not None and server.running
        assert server.start() is server and server.pid == first  # already running: no-op
        server.kill()
        assert server.pid is None and not processes.is_running(first)
        server.start()
        second = server.pid
        assert second is not None and second != first and server.running
    assert server.pid is None and not processes.is_running(second)
    server.stop()  # idempotent


def test_process_group_server_failed_start_leaves_nothing(tmp_path: Path) -> None:
    server = _Shell(tmp_path / "f.log", "echo dying; exit 3")
    with pytest.raises(RuntimeError, match=r"exit status 3\): dying"):
        server.start()
    assert server.pid is None
