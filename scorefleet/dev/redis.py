"""A real Redis (Debian's ``redis-server``) as a plain process on 127.0.0.1.

No service manager, no persistence: ``redis-server --port P --bind 127.0.0.1 --save ''
--appendonly no --dir D`` in a session of its own. Ready when PING answers (about 20 ms).
The same server can be stopped and started again on its port (the Redis-outage fault tests);
its data does not survive that, on purpose: with persistence off, a restarted Redis is empty,
which is exactly the "features missing" case the miss policy has to handle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path
from types import TracebackType

from scorefleet.dev import processes

READY_TIMEOUT = 20.0


class RedisError(RuntimeError):
    """redis-server is missing or did not start; the message says why."""


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisError("redis-server is not installed: scripts/setup.sh installs it "
                         "(apt-get install redis-server)")
    # Not resolved: Debian links redis-server to redis-check-rdb, which dispatches on argv[0].
    return binary


class RedisServer:
    """``with RedisServer(tmp) as redis: redis.url``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.binary = redis_binary()
        self.port = processes.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"redis://{self.address}/0"
        self.log_path = workdir / "redis.log"
        self.pid: int | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = READY_TIMEOUT) -> RedisServer:
        if self.running:
            return self
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no",
                "--daemonize", "no"]
        self.pid = processes.spawn(argv, self.log_path)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        # redis-server rewrites its own argv (process title), so the command line cannot be
        # matched against the binary; the pid is ours for the life of this object.
        return self.pid is not None and processes.is_running(self.pid)

    def _wait_ready(self, timeout: float) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0,
                             socket_connect_timeout=1.0)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self.running:
                    reason = processes.exit_reason(self.pid) if self.pid else "not started"
                    raise RedisError(f"redis-server exited ({reason}); log:\n{self.log_tail()}")
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                time.sleep(0.02)
            raise RedisError(f"redis-server not ready within {timeout:.0f}s")
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout``; idempotent."""
        if self.pid is not None:
            processes.terminate(self.pid, None, timeout=timeout)
            processes.exit_reason(self.pid)
            self.pid = None

    def kill(self) -> None:
        if self.pid is not None and self.running:
            os.killpg(self.pid, signal.SIGKILL)
            while processes.is_running(self.pid):
                time.sleep(0.02)
        self.pid = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
