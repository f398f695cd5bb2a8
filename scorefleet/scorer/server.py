"""The supervisor: ``serve(config_path)`` starts the workers, serves metrics, forwards stops.

Why processes: one Python process is bound by the GIL to about one core of gRPC work (~250 us of
CPU per RPC). ``workers`` processes (0 = one per available core, counting the cgroup CPU quota,
not the node's cores) each run a grpc.aio server on the same port (SO_REUSEPORT); the kernel
hashes new connections across them. Per-connection hashing is uneven for a handful of
connections, which is why ``maxConnectionAgeSeconds`` also matters inside a pod.

The supervisor itself does no RPC work: it serves the aggregated multiprocess ``/metrics`` on
``metricsPort``, restarts a worker that dies (with backoff), and on SIGTERM/SIGINT forwards the
signal to every worker and waits for their drain (drain delay + grace period), then exits 0 if
they all did.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from scorefleet.scorer.config_watch import ConfigError, load_config
from scorefleet.scorer.metrics import MULTIPROC_ENV
from scorefleet.scorer.protogen import ensure_generated

log = logging.getLogger(__name__)

DEFAULT_HOST = os.environ.get("SCOREFLEET_HOST", "0.0.0.0")
POLL_SECONDS = 0.2
# A worker that dies this soon after start counts toward giving up (e.g. port in use).
FAST_FAIL_SECONDS = 5.0
MAX_FAST_FAILURES = 5


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup v2/v1 CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, int(quota + 0.5)))
    return max(1, cpus)


def cgroup_cpu_quota(root: Path) -> float | None:
    """The container's CPU limit in cores, or None if unlimited/unknown."""
    try:
        max_, period = (root / "cpu.max").read_text().split()[:2]
        return None if max_ == "max" else int(max_) / int(period)
    except (OSError, ValueError):
        pass
    try:
        q = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        p = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if q <= 0 else q / p
    except (OSError, ValueError):
        return None


@dataclass
class WorkerProc:
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    fast_failures: int = 0


@dataclass
class Supervisor:
    config_path: Path
    host: str
    workers: int
    metrics_dir: Path
    log_level: str = "INFO"
    procs: list[WorkerProc] = field(default_factory=list)
    stopping: bool = False

    def spawn(self, index: int, fast_failures: int = 0) -> WorkerProc:
        env = dict(os.environ, **{MULTIPROC_ENV: str(self.metrics_dir)})
        cmd = [sys.executable, "-m", "scorefleet.scorer.worker", "--config",
               str(self.config_path), "--host", self.host, "--index", str(index),
               "--log-level", self.log_level]
        proc = subprocess.Popen(cmd, env=env)
        log.info("started worker %d pid %d", index, proc.pid)
        return WorkerProc(index, proc, time.monotonic(), fast_failures)

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("signal %d: stopping %d workers", signum, len(self.procs))
        for w in self.procs:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        from scorefleet.scorer.metrics import mark_process_dead

        self.procs = [self.spawn(i) for i in range(self.workers)]
        while not self.stopping:
            time.sleep(POLL_SECONDS)
            for slot, w in enumerate(self.procs):
                rc = w.proc.poll()
                if rc is None or self.stopping:
                    continue
                mark_process_dead(w.proc.pid)
                fast = time.monotonic() - w.started < FAST_FAIL_SECONDS
                failures = w.fast_failures + 1 if fast else 0
                log.error("worker %d (pid %d) exited with %d", w.index, w.proc.pid, rc)
                if failures >= MAX_FAST_FAILURES:
                    log.error("worker %d keeps failing at start; giving up", w.index)
                    self.request_stop(signal.SIGTERM)
                    self._wait_all()
                    return 1
                time.sleep(min(2.0 ** failures * 0.1, 5.0))
                self.procs[slot] = self.spawn(w.index, failures)
        return self._wait_all()

    def _wait_all(self) -> int:
        try:
            cfg = load_config(self.config_path)
            budget = cfg.drain_delay_seconds + cfg.grace_period_seconds + 10.0
        except ConfigError:
            budget = 60.0
        deadline = time.monotonic() + budget
        worst = 0
        for w in self.procs:
            try:
                rc = w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in %.0fs; killing", w.index, budget)
                w.proc.kill()
                rc = w.proc.wait()
            worst = worst or (rc if rc > 0 else 1 if rc != 0 else 0)
        return worst


def _prepare_metrics_dir() -> tuple[Path, bool]:
    """The multiprocess directory, emptied: stale files from a previous run would be summed."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    return Path(tempfile.mkdtemp(prefix="scorefleet-metrics-")), True


def serve(config_path: str | os.PathLike[str], host: str | None = None,
          log_level: str | None = None) -> int:
    """Run the scorer until SIGTERM/SIGINT. Returns the process exit code."""
    # Absolute, but never resolved: a ConfigMap volume's file is a symlink through `..data`
    # to a timestamped directory that the kubelet swaps and deletes on every update, so the
    # resolved path stops existing at the first change and hot reload would never see it.
    path = Path(config_path).absolute()
    try:
        config = load_config(path)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    ensure_generated()  # once here, so workers never race to generate
    bind = host or DEFAULT_HOST
    workers = config.workers or available_cpus()
    metrics_dir, owned = _prepare_metrics_dir()
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    from prometheus_client import start_http_server

    from scorefleet.scorer.cgroup_cpu import CgroupCpuCollector
    from scorefleet.scorer.metrics import aggregated_registry

    registry = aggregated_registry()
    registry.register(CgroupCpuCollector(config.pipeline, config.track))
    try:
        http_server, _thread = start_http_server(config.metrics_port, addr=bind,
                                                 registry=registry)
    except OSError as exc:
        log.error("cannot serve metrics on %s:%d: %s", bind, config.metrics_port, exc)
        return 1
    log.info("scorer %s/%s: %d workers on %s:%d, metrics on :%d", config.pipeline,
             config.track, workers, bind, config.port, config.metrics_port)
    level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
    sup = Supervisor(path, bind, workers, metrics_dir, str(level))
    signal.signal(signal.SIGTERM, sup.request_stop)
    signal.signal(signal.SIGINT, sup.request_stop)
    try:
        rc = sup.run()
    finally:
        http_server.shutdown()
        http_server.server_close()
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("scorer stopped with exit code %d", rc)
    return rc
