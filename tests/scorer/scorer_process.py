"""A real scorer process on free 127.0.0.1 ports, for tests; always killed at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scorefleet.scorer.protos import oip_pb2_grpc, v1_pb2_grpc


@dataclass(frozen=True)
class Models:
    dir: Path
    sha256: dict[str, str]

    def uri(self, name: str) -> str:
        return (self.dir / name).as_uri()

    def add(self, version: str, model: Any) -> None:
        """An ONNX ModelProto, stamped as `version` (model_version and scorefleet.version),
        written beside the others as model-<version>.onnx, its digest recorded."""
        import hashlib

        model.model_version = int(version.lstrip("v"))
        for prop in model.metadata_props:
            if prop.key == "scorefleet.version":
                prop.value = version
        data = model.SerializeToString()
        name = f"model-{version}.onnx"
        (self.dir / name).write_bytes(data)
        self.sha256[name] = hashlib.sha256(data).hexdigest()

    def ref(self, version: str, **extra: Any) -> dict[str, Any]:
        name = "broken.onnx" if version == "broken" else f"model-{version}.onnx"
        return {"name": "phish", "version": version, "uri": self.uri(name),
                "sha256": self.sha256[name], **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, config: dict[str, Any], *, configmap: bool = False) -> None:
    """Write-then-rename: readers never see half a file. configmap=True writes what the
    kubelet's atomic writer makes of a ConfigMap volume: `config.yaml -> ..data/config.yaml`,
    `..data -> ..<timestamp>/`, swapped for a new directory on each update, the old one
    deleted."""
    if not configmap:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config))
        os.replace(tmp, path)
        return
    data = path.parent / "..data"
    old = data.resolve() if data.is_symlink() else None
    version = path.parent / f"..{time.time_ns()}"
    version.mkdir()
    (version / path.name).write_text(yaml.safe_dump(config))
    link = path.parent / "..data_tmp"
    link.symlink_to(version.name)
    os.replace(link, data)
    if not path.is_symlink():
        path.symlink_to(f"..data/{path.name}")
    if old is not None:
        shutil.rmtree(old)


class ScorerProcess:
    """``python -m scorefleet.scorer --config ... --host 127.0.0.1`` with helpers."""

    def __init__(self, workdir: Path, config: dict[str, Any], *, env: dict[str, str] | None = None,
                 configmap: bool = False, metrics_port: int | None = None) -> None:
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.port = free_port()
        # Given when a Prometheus must know the target before the scorer starts.
        self.metrics_port = metrics_port or free_port()
        self.config = {"pipeline": "mail-phish", "track": "stable", "workers": 1,
                       "drainDelaySeconds": 0, "gracePeriodSeconds": 5, **config,
                       "port": self.port, "metricsPort": self.metrics_port}
        self.configmap = configmap
        write_config(self.config_path, self.config, configmap=configmap)
        self.log_path = workdir / f"scorer-{self.port}.log"
        self._log = self.log_path.open("wb")
        full_env = dict(os.environ, SCOREFLEET_CONFIG_POLL_SECONDS="0.2", **(env or {}))
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scorefleet.scorer", "--config", str(self.config_path),
             "--host", "127.0.0.1"], stdout=self._log, stderr=subprocess.STDOUT, env=full_env)
        self.address = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.address)
        self.scorer = v1_pb2_grpc.ScorerStub(self.channel)
        self.oip = oip_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def update_config(self, **changes: Any) -> None:
        self.config = {**self.config, **changes}
        write_config(self.config_path, self.config, configmap=self.configmap)

    def health_status(self, service: str = "") -> str | None:
        try:
            response = self.health.Check(health_pb2.HealthCheckRequest(service=service),
                                         timeout=1.0)
        except grpc.RpcError:
            return None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def wait_serving(self, timeout: float = 60.0) -> ScorerProcess:
        self.wait_for("health SERVING", lambda: self.health_status() == "SERVING", timeout)
        return self

    def wait_for(self, what: str, check: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"scorer exited with {self.proc.returncode} while waiting "
                                     f"for {what}; log:\n{self.log()}")
            last = check()
            if last:
                return last
            time.sleep(0.05)
        raise AssertionError(f"{what}: not within {timeout}s (last {last!r}); log:\n{self.log()}")

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of samples of ``name`` whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    total += sample.value
        return total

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
