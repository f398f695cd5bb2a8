"""A real Redis (Debian's ``redis-server``) as a plain process on 127.0.0.1.

No service manager, no persistence: ``redis-server --port P --bind 127.0.0.1 --save ''
--appendonly no --dir D`` in a session of its own. Ready when PING answers (about 20 ms).
The same server can be stopped and started again on its port (the Redis-outage fault tests);
its data does not survive that, on purpose: with persistence off, a restarted Redis is empty,
which is exactly the "features missing" case the miss policy has to handle.

``RedisServer(dir, node_ip=...)`` also binds the real node's bridge address (checked, see
:mod:`node_address`), same port, for scorer pods: ``server.node_address``. Pods can then run
any Redis command, so the commands that reach beyond the data stay off explicitly (Redis 7's
defaults, stated so that no change of default reopens them): CONFIG SET of paths (the classic
"write a file as root" abuse), DEBUG and MODULE.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from scorefleet.dev import node_address, processes

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

    def __init__(self, workdir: Path, *, node_ip: str | None = None) -> None:
        self.workdir = workdir
        self.node_ip = node_address.check(node_ip) if node_ip is not None else None
        self.binary = redis_binary()
        # redis-server rewrites its own argv (process title), so the command line cannot be
        # matched against the binary; the pid is ours for the life of this object.
        super().__init__(workdir / "redis.log", None)
        self.port = processes.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"redis://{self.address}/0"
        self.node_address = f"{node_ip}:{self.port}" if node_ip is not None else None
        workdir.mkdir(parents=True, exist_ok=True)

    def _launch(self) -> None:
        bind = ["127.0.0.1"]
        hardening: list[str] = []
        if self.node_ip is not None:
            bind.append(self.node_ip)
            hardening = ["--enable-protected-configs", "no", "--enable-debug-command", "no",
                         "--enable-module-command", "no"]
        self._spawn([self.binary, "--port", str(self.port), "--bind", *bind, "--save", "",
                     "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no",
                     "--daemonize", "no", *hardening])

    def _wait_ready(self, timeout: float) -> None:
        import redis

        hosts = ["127.0.0.1", *([self.node_ip] if self.node_ip else [])]
        clients = [redis.Redis(host=h, port=self.port, socket_timeout=1.0,
                               socket_connect_timeout=1.0) for h in hosts]
        try:
            deadline = time.monotonic() + timeout
            waiting = list(clients)
            while time.monotonic() < deadline:
                if not self.running:
                    raise RedisError(f"redis-server exited ({self.exit_reason()}); log:\n"
                                     f"{self.log_tail()}")
                for client in list(waiting):
                    with contextlib.suppress(redis.RedisError):
                        if client.ping():
                            waiting.remove(client)
                if not waiting:
                    return
                time.sleep(0.02)
            raise RedisError(f"redis-server not ready on {', '.join(hosts)} within "
                             f"{timeout:.0f}s")
        finally:
            for client in clients:
                client.close()
