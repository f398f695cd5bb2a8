"""Starting, watching and stopping the component processes.

Components are spawned with `os.posix_spawn` in a session of their own, not with
`subprocess.Popen`: they must outlive the `python -m scorefleet.dev up` that started them,
and a Popen object collected while its child runs emits a ResourceWarning, which the test
suite turns into an error. The price is reaping: a component that dies while its starter
(e.g. the pytest process) lives stays a zombie, so liveness reads /proc/<pid>/stat and reaps.

A pid in a stale state file may have been reused by an unrelated process, so nothing is
signalled unless its command line still names the binary we started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (closed again before the caller binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(n: int) -> list[int]:
    """n distinct free ports: all sockets stay open until all are chosen."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def spawn(argv: Sequence[str], log: Path) -> int:
    """Start argv detached (own session), stdout+stderr appended to log; returns the pid."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        # Every path in argv is absolute, so the inherited working directory does not matter.
        return os.posix_spawn(
            argv[0],
            list(argv),
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(fd)
        os.close(devnull)


# How our own children ended, kept when reaping so a failed start can say why.
_exits: dict[int, str] = {}


def _reap(pid: int) -> None:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        return
    if done == pid:
        if os.WIFSIGNALED(status):
            _exits[pid] = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            _exits[pid] = f"exit status {os.waitstatus_to_exitcode(status)}"


def exit_reason(pid: int) -> str:
    """How a child that we reaped ended ("exit status 1", "killed by SIGKILL"), if known."""
    _reap(pid)
    return _exits.get(pid, "ended (not our child: status unknown)")


def _state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is parenthesised and may hold spaces: the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_running(pid: int, binary: str | None = None) -> bool:
    """True if pid is a live (non-zombie) process, running `binary` when given."""
    if pid <= 0:
        return False
    _reap(pid)
    state = _state(pid)
    if state is None or state in ("Z", "X"):
        return False
    if binary is None:
        return True
    argv = cmdline(pid)
    # /proc/<pid>/cmdline reads empty while the kernel is still exec'ing a process that
    # posix_spawn already returned (measured: ~15% of checks right after spawn), so give
    # exec a moment before deciding that the pid belongs to something else.
    deadline = time.monotonic() + 1.0
    while not argv and time.monotonic() < deadline and _state(pid) not in (None, "Z", "X"):
        time.sleep(0.01)
        argv = cmdline(pid)
    return bool(argv) and argv[0] == binary


def terminate(pid: int, binary: str | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL; a no-op for a dead or reused pid."""
    if not is_running(pid, binary):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # Each component leads its own session (setsid), so its pgid is its pid.
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_running(pid):
                return
            time.sleep(0.05)
    raise RuntimeError(f"process {pid} survived SIGKILL")


class ProcessGroupServer:
    """A server process we spawn in a session of its own (:func:`spawn`), stopped by group.

    Subclasses say how to start and when the server is ready (``start``); the rest is shared:
    stop (SIGTERM to the group, SIGKILL after a timeout), kill (a crash, not a shutdown), the log
    tail for error messages, and ``with server:`` = start ... stop. The same object can be
    stopped and started again (the fault tests restart brokers and Redis).

    ``match_binary``: the binary the pid must still be running for us to signal it (guards
    against a reused pid); None for servers that rewrite their own command line (redis-server).
    """

    ready_timeout = 60.0

    def __init__(self, log_path: Path, match_binary: str | None) -> None:
        self.log_path = log_path
        self.match_binary = match_binary
        self.pid: int | None = None

    def start(self, timeout: float | None = None) -> Self:
        """Spawn (if not running) and wait until ready; stops what it spawned on failure."""
        if self.running:
            return self
        self._launch()
        try:
            self._wait_ready(self.ready_timeout if timeout is None else timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        raise NotImplementedError

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.pid is not None and is_running(self.pid, self.match_binary)

    def _spawn(self, argv: Sequence[str]) -> None:
        self.pid = spawn(argv, self.log_path)

    def exit_reason(self) -> str:
        return exit_reason(self.pid) if self.pid is not None else "not started"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout``; idempotent."""
        if self.pid is not None:
            terminate(self.pid, self.match_binary, timeout=timeout)
            exit_reason(self.pid)  # reap
            self.pid = None

    def kill(self) -> None:
        """SIGKILL the group at once (a crash, not a shutdown)."""
        if self.pid is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            while is_running(self.pid):
                time.sleep(0.02)
        self.pid = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
