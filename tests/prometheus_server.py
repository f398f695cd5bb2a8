"""A real Prometheus (Debian's `prometheus` binary) scraping given targets on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType

import yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """`with PrometheusServer(tmp, ["127.0.0.1:9091"]) as prom: prom.url`."""

    def __init__(self, workdir: Path, targets: list[str], scrape_interval: str = "1s") -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: scripts/setup.sh installs it "
                               "(apt-get install prometheus)")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "scorers",
                                "static_configs": [{"targets": targets}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = (workdir / "prometheus.log").open("wb")
        self._args = [binary, f"--config.file={workdir / 'prometheus.yml'}",
                      f"--storage.tsdb.path={workdir / 'data'}",
                      f"--web.listen-address=127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(self._args, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Stop Prometheus (an outage); `start()` brings it back on the same port and data."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def start(self) -> None:
        self.proc = subprocess.Popen(self._args, stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_for("ready again", lambda: self._get("/-/ready") is not None, 30)

    def __enter__(self) -> PrometheusServer:
        self.wait_for("ready", lambda: self._get("/-/ready") is not None, 30)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self._log.close()

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return bytes(resp.read())
        except OSError:
            return None

    def targets_up(self) -> bool:
        raw = self._get("/api/v1/targets")
        if raw is None:
            return False
        active = json.loads(raw)["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def wait_for(self, what: str, check: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.log()}"
            if callable(check) and check():
                return
            time.sleep(0.2)
        raise AssertionError(f"prometheus {what}: not within {timeout}s\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-3000:]
