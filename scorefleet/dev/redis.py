"""A real Redis (Debian's ``redis-server``) as a plain process on 127.0.0.1.

No service manager, no persistence: ``redis-server --port P --bind 127.0.0.1 --save ''
--appendonly no --dir D`` in a session of its own. Ready when PING answers (about 20 ms).
The same server can be stopped and started again on its port (the Redis-outage fault tests);
its data does not survive that, on purpose: with persistence off, a restarted Redis is empty,
which is exactly the "features missing" case the miss policy has to handle.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

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


class RedisServer(processes.ProcessGroupServer):
    """``with RedisServer(tmp) as redis: redis.url``."""

    ready_timeout = READY_TIMEOUT

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.binary = redis_binary()
        # redis-server rewrites its own argv (process title), so the command line cannot be
        # matched against the binary; the pid is ours for the life of this object.
        super().__init__(workdir / "redis.log", None)
        self.port = processes.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"redis://{self.address}/0"
        workdir.mkdir(parents=True, exist_ok=True)

    def _launch(self) -> None:
        self._spawn([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no",
                     "--daemonize", "no"])

    def _wait_ready(self, timeout: float) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0,
                             socket_connect_timeout=1.0)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self.running:
                    raise RedisError(f"redis-server exited ({self.exit_reason()}); log:\n"
                                     f"{self.log_tail()}")
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                time.sleep(0.02)
            raise RedisError(f"redis-server not ready within {timeout:.0f}s")
        finally:
            client.close()
