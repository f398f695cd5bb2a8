"""The operator as its own process, the way the cluster tests run it beside the local control
plane: started with the test's settings, restartable (each start writes its own log), killed
without cleanup when a test means a crash, and stopped cleanly otherwise: a clean stop is
exit 0 with no traceback in its log, which every test that stops it asserts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """`env`: settings over this process's environment; a None value removes the variable
    (e.g. SCOREFLEET_PROMETHEUS_URL, for a test that must run without Prometheus).
    `metrics`: serve the operator's own /metrics on a free port (see `metric`)."""

    def __init__(self, workdir: Path, env: Mapping[str, str | None] | None = None, *,
                 verbose: bool = False, metrics: bool = False) -> None:
        self.workdir = workdir
        self.settings = dict(env or {})
        self.port = _free_port() if metrics else None
        if self.port is not None:
            self.settings["SCOREFLEET_OPERATOR_METRICS_PORT"] = str(self.port)
        self.argv = [sys.executable, "-m", "scorefleet.operator"] + (
            ["--verbose"] if verbose else [])
        self.logs: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        """The log of the latest start."""
        return self.logs[-1]

    def text(self) -> str:
        """Every start's log, in order."""
        return "".join(log.read_text(errors="replace") for log in self.logs)

    def start(self, **extra: str | None) -> OperatorProcess:
        """Start it (again), with `extra` settings for this start only."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ)
        for key, value in {**self.settings, **extra}.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        log = self.workdir / f"operator{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("w") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=env)
        return self

    def wait_watching(self, timeout: float = 30.0) -> None:
        """Until it watches pipelines (needs `verbose`: the line is Kopf's debug log)."""
        deadline = time.monotonic() + timeout
        while "watch-stream for scoringpipelines" not in self.log.read_text(errors="replace"):
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"not watching after {timeout}s:\n" \
                                                f"{self.log.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, and a clean exit: 0, no traceback in this start's log."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.proc = None
        text = self.log.read_text(errors="replace")
        assert code == 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]

    def kill(self) -> None:
        """SIGKILL: no cleanup, mid-whatever it was doing."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the operator's own /metrics; None when no series matches."""
        assert self.port is not None, "started without metrics"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line
                                                   for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None

    def __enter__(self) -> OperatorProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None:
            self.stop()
