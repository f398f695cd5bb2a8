"""The real loop, as a library: scorefleet's operator autoscaling real scorer pods on the local
cluster's real node, under load from `scorefleet.load`, measured by the node's Prometheus
(kubernetes_sd). Used by benchmarks/autoscaling/real_loop.py (timeline, PNG, the simulator's
prediction) and tests/cluster/test_autoscaling_real.py (the assertions).

    calibrate   a pipeline pinned to one pod; open-loop steps of rising rate, 10 s each,
                until the pod misses the SLO: (rate, p99) points and its saturation
    run         a fresh pipeline (minReplicas 1, maxReplicas 4, the CRD's own policy):
                ramp until p99 nears the SLO, then hold 1.3x that rate (past what one pod
                serves within the SLO): the operator scales up, the new pods take traffic,
                p99 comes back under the SLO; then the load stops and Prometheus is frozen
                (SIGSTOP: every query times out) for longer than both windows: nothing may
                scale down and status says why; then Prometheus resumes and the idle fleet
                is scaled down

Every bound is explicit: load at most `max_rate` for at most the phase's seconds; every wait
has a deadline. The pods get a CPU limit, so one pod saturates at a rate this 2-core machine
can offer beside the load generator (a real limit, as a cluster's LimitRange would set).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scorefleet import load
from scorefleet.api.common import duration_seconds

CHUNK_S = 5.0  # the load is offered in chunks of this many seconds (one LoadResult each)


@dataclass(frozen=True)
class Setup:
    namespace: str
    store_url: str  # the cluster's model store
    sha256: str  # of model-v1.onnx
    dns: str
    prometheus_url: str
    prometheus_pid: int
    kubectl: Callable[..., str]
    slo_ms: float = 50.0
    cpu_limit: str = "100m"
    autoscale_s: int = 5
    window: str = "30s"
    panic_window: str = "10s"
    scale_down_window: str = "30s"
    max_rate: float = 800.0
    concurrency: int = 32


def pipeline_yaml(s: Setup, name: str, lo: int, hi: int) -> str:
    return f"""
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata: {{name: {name}}}
spec:
  model: {{name: phish, version: v1, uri: "{s.store_url}/model-v1.onnx", sha256: "{s.sha256}",
           threshold: 0.5}}
  scorer:
    resources: {{requests: {{cpu: 100m, memory: 128Mi}},
                 limits: {{cpu: {s.cpu_limit}, memory: 512Mi}}}}
    workers: 1
    drainDelay: 2s
    gracePeriod: 5s
    maxConnectionAge: 5s
  scaling:
    minReplicas: {lo}
    maxReplicas: {hi}
    scaleDown: {{stabilizationWindow: {s.scale_down_window}}}
  slo: {{p99Latency: {s.slo_ms:g}ms}}
"""


@dataclass
class Chunk:
    start: float  # seconds since the run's start
    rate: float
    sent: int
    ok: int
    p99_ms: float  # over every request; a failed one counts as over any latency

    @staticmethod
    def of(start: float, rate: float, r: load.LoadResult) -> Chunk:
        ok = sorted(r.latencies_ms)
        failed = r.sent - len(ok)
        rank = int(0.99 * r.sent)
        p99 = float("inf") if rank >= len(ok) and failed else (
            ok[min(rank, len(ok) - 1)] if ok else float("nan"))
        return Chunk(start, rate, r.sent, len(ok), p99)


@dataclass
class Sample:
    t: float
    replicas: int
    ready: int
    reason: str
    desired: int | None
    offered: float


@dataclass
class Timeline:
    t0: float = field(default_factory=time.monotonic)
    chunks: list[Chunk] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)  # phase marks

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, what: str) -> None:
        self.events.append((round(self.now(), 1), what))

    def to_dict(self) -> dict[str, Any]:
        return {"chunks": [c.__dict__ for c in self.chunks],
                "samples": [s.__dict__ for s in self.samples],
                "events": self.events}


class Driver:
    """Offers load in chunks at `rate` (0 = none) from a thread; records every chunk."""

    def __init__(self, s: Setup, name: str, timeline: Timeline) -> None:
        self.target = load.headless_target(name, s.namespace, s.dns)
        self.s, self.timeline = s, timeline
        self.rate = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            rate = min(self.rate, self.s.max_rate)
            if rate <= 0:
                time.sleep(0.2)
                continue
            start = self.timeline.now()
            r = load.run(self.target, rate=rate, duration=CHUNK_S,
                         concurrency=self.s.concurrency, timeout=2.0)
            self.timeline.chunks.append(Chunk.of(start, rate, r))

    def last(self, n: int = 1) -> list[Chunk]:
        return self.timeline.chunks[-n:]

    @contextmanager
    def running(self) -> Iterator[Driver]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            self.thread.join(timeout=CHUNK_S + 15)


class Watcher:
    """Samples the pipeline's Deployment and status once a second."""

    def __init__(self, s: Setup, name: str, timeline: Timeline, driver: Driver) -> None:
        self.s, self.name, self.timeline, self.driver = s, name, timeline, driver
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            t = self.timeline.now()
            try:
                doc = json.loads(self.s.kubectl(
                    "get", f"scoringpipeline/{self.name}", f"deployment/{self.name}-stable",
                    "-n", self.s.namespace, "-o", "json"))
            except (subprocess.SubprocessError, ValueError, AssertionError):
                time.sleep(1)
                continue
            items = {i["kind"]: i for i in doc.get("items", [])}
            dep = items.get("Deployment", {})
            scaling = ((items.get("ScoringPipeline", {}).get("status") or {})
                       .get("autoscaling") or {}).get("stable") or {}
            self.timeline.samples.append(Sample(
                t=round(t, 2), replicas=int((dep.get("spec") or {}).get("replicas", 0)),
                ready=int((dep.get("status") or {}).get("readyReplicas", 0)),
                reason=str(scaling.get("reason", "")), desired=scaling.get("desired"),
                offered=self.driver.rate))
            time.sleep(max(0.0, 1.0 - (self.timeline.now() - t)))

    def last(self) -> Sample | None:
        return self.timeline.samples[-1] if self.timeline.samples else None

    @contextmanager
    def running(self) -> Iterator[Watcher]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            self.thread.join(timeout=10)


def wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


def ready_pods(s: Setup, name: str) -> int:
    out = s.kubectl("get", "deployment", f"{name}-stable", "-n", s.namespace,
                    "--ignore-not-found", "-o", "json")
    if not out.strip():
        return 0  # the operator has not created it yet
    return int((json.loads(out).get("status") or {}).get("readyReplicas", 0))


@contextmanager
def operator(s: Setup, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The operator as a local process, deciding every `autoscale_s` from the node's
    Prometheus with the run's windows."""
    env = {**os.environ, "SCOREFLEET_PROMETHEUS_URL": s.prometheus_url,
           "SCOREFLEET_AUTOSCALE_SECONDS": str(s.autoscale_s),
           "SCOREFLEET_METRICS_WINDOW": s.window, "SCOREFLEET_PANIC_WINDOW": s.panic_window}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scorefleet.operator"], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def prometheus_frozen(pid: int) -> Iterator[None]:
    """The node's Prometheus stopped (SIGSTOP): it neither scrapes nor answers; resumed after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@dataclass
class Calibration:
    points: list[tuple[float, float]]  # (RPC/s served, p99 ms) per step
    saturation_qps: float
    idle_p99_ms: float
    steps: list[dict[str, float]]


def pod_signals(s: Setup, name: str, seconds: float,
                at: float | None = None) -> dict[str, float | None]:
    """What Prometheus saw of the pipeline's pods over the `seconds` before `at` (epoch
    seconds; default now): the server's own
    p99, CPU used against the limit, the share of CFS periods throttled and the throttled
    time per second (the scorer's cgroup series, scorefleet/scorer/cgroup_cpu.py)."""
    sel = f'{{namespace="{s.namespace}",pipeline="{name}"}}'
    w = f"[{seconds:g}s]"
    qs = {
        "server_p99_ms": "1000 * histogram_quantile(0.99, sum by (le) (rate("
                         f"scorefleet_request_duration_seconds_bucket{sel}{w})))",
        "server_qps": f"sum(rate(scorefleet_requests_total{sel}{w}))",
        "cpu_utilization": f"avg(rate(scorefleet_cpu_usage_seconds_total{sel}{w}) "
                           f"/ scorefleet_cpu_limit_cores{sel})",
        "throttled_fraction": f"sum(rate(scorefleet_cpu_cfs_throttled_periods_total{sel}{w})) "
                              f"/ sum(rate(scorefleet_cpu_cfs_periods_total{sel}{w}))",
        "throttled_s_per_s": f"sum(rate(scorefleet_cpu_cfs_throttled_seconds_total{sel}{w}))",
    }
    return {k: _prom_scalar(s, q, at) for k, q in qs.items()}


def _prom_scalar(s: Setup, query: str, at: float | None = None) -> float | None:
    import math
    import urllib.parse
    import urllib.request

    try:
        params = {"query": query, **({"time": f"{at:.3f}"} if at is not None else {})}
        with urllib.request.urlopen(f"{s.prometheus_url}/api/v1/query?"
                                    + urllib.parse.urlencode(params), timeout=5) as resp:
            rows = json.loads(resp.read())["data"]["result"]
    except OSError:
        return None
    value = float(rows[0]["value"][1]) if rows else math.nan
    return round(value, 4) if math.isfinite(value) else None


def calibrate(s: Setup, step: float = 50.0, seconds: float = 10.0,
              start: float | None = None) -> Calibration:
    """One pod, open-loop steps of `step` more RPC/s each, until it misses the SLO twice over
    or stops keeping up with the offered rate. Each step also records what Prometheus saw
    of the pod over that step (`pod_signals`): what the autoscaler could have known."""
    name = "calib"
    s.kubectl("apply", "-n", s.namespace, "-f", "-", stdin=pipeline_yaml(s, name, 1, 1))
    wait("one calibration pod ready", lambda: ready_pods(s, name) == 1, 240)
    target = load.headless_target(name, s.namespace, s.dns)
    load.run(target, rate=20, duration=3, concurrency=2)  # warm-up, not recorded
    steps: list[dict[str, float]] = []
    rate = start or step
    while rate <= s.max_rate:
        r = load.run(target, rate=rate, duration=seconds, concurrency=s.concurrency)
        ended = time.time()
        c = Chunk.of(0.0, rate, r)
        served = c.ok / r.seconds
        time.sleep(2.5)  # one more scrape after the step's end
        # The step's own window, from a scrape after its start to one after its end.
        signals = pod_signals(s, name, seconds - 2, at=ended + 1)
        steps.append({"offered": rate, "served": round(served, 1), "p99_ms": c.p99_ms,
                      "failed": r.failed, **{k: v for k, v in signals.items()
                                             if v is not None}})
        print(f"calibration step: {steps[-1]}", flush=True)
        if c.p99_ms > 2 * s.slo_ms or served < 0.9 * rate:
            break
        rate += step
    s.kubectl("delete", "scoringpipeline", name, "-n", s.namespace, "--wait=false")
    within = [st for st in steps if st["served"] >= 0.9 * st["offered"]
              and st["p99_ms"] != float("inf")]
    return Calibration(points=[(st["served"], st["p99_ms"]) for st in within],
                       saturation_qps=max(st["served"] for st in steps),
                       idle_p99_ms=min(st["p99_ms"] for st in within) if within else 1.0,
                       steps=steps)


@dataclass
class RunResult:
    timeline: Timeline
    ramp_rate: float = 0.0  # where p99 neared the SLO on one pod
    hold_rate: float = 0.0
    scaled_up_at: float | None = None
    peak_replicas: int = 1
    p99_back_at: float | None = None  # first time the SLO held again (two chunks in a row)
    load_stop_at: float = 0.0
    outage: tuple[float, float] = (0.0, 0.0)
    outage_replicas: tuple[int, int] = (0, 0)  # min and max replicas during the outage
    outage_reasons: list[str] = field(default_factory=list)
    outage_message: str = ""
    scaled_down_at: float | None = None
    pods_that_served: int = 0
    pods_at_peak: int = 0
    worst_p99_before_up: float = 0.0  # client p99 of the worst chunk before the scale-up
    ramp_cpu: float = 0.0  # the most CPU (share of the limit) one pod used during the ramp
    fewest_under_load: int = 0  # fewest replicas between the scale-up and the load's end


def _status_scaling(s: Setup, name: str) -> dict[str, Any]:
    sp = json.loads(s.kubectl("get", "scoringpipeline", name, "-n", s.namespace, "-o", "json"))
    return dict(((sp.get("status") or {}).get("autoscaling") or {}).get("stable") or {})


def _served_by_pod(s: Setup, name: str, window: str) -> dict[str, float]:
    import urllib.parse
    import urllib.request

    q = (f'sum by (pod) (increase(scorefleet_requests_total{{namespace="{s.namespace}",'
         f'pipeline="{name}",code="OK"}}[{window}]))')
    with urllib.request.urlopen(f"{s.prometheus_url}/api/v1/query?"
                                + urllib.parse.urlencode({"query": q}), timeout=5) as resp:
        rows = json.loads(resp.read())["data"]["result"]
    return {r["metric"]["pod"]: float(r["value"][1]) for r in rows}


def _chunk_since(timeline: Timeline, since: float) -> Callable[[], Chunk | None]:
    return lambda: next((c for c in timeline.chunks if c.start >= since), None)


def run(s: Setup, ramp_step: float = 25.0, hold_s: float = 180.0, outage_s: float = 75.0,
        scale_down_timeout: float = 150.0, after_up_s: float = 75.0) -> RunResult:
    """The run; the hold lasts until the SLO is back and `after_up_s` have passed since the
    scale-up (longer than the rate and scale-down windows together, so a model that would
    scale back down under the same load does so in the hold), at most `hold_s`."""
    name = "loop"
    timeline = Timeline()
    res = RunResult(timeline)
    s.kubectl("apply", "-n", s.namespace, "-f", "-", stdin=pipeline_yaml(s, name, 1, 4))
    wait("one pod ready", lambda: ready_pods(s, name) == 1, 240)
    # Its start-up work (imports, loading the model) ran CPU-throttled: let it leave the panic
    # window before the load starts, or the first decision can read that throttling as
    # saturation (35 % at 7-12 RPC/s, twice in CI on a quiet machine) and scale up for it,
    # which ends the ramp before the load has driven the pod anywhere. The operator's own
    # start-up gate (the ready gauge) misses a pod that Prometheus discovered after it was
    # ready: docs/autoscaling.md.
    time.sleep(duration_seconds(s.panic_window) + 6.0)
    driver = Driver(s, name, timeline)
    with driver.running(), Watcher(s, name, timeline, driver).running() as watcher:
        timeline.mark("ramp")
        rate = ramp_step
        driver.rate = rate
        # Ramp: one chunk per step until one pod's p99 nears the SLO because of the pod (its
        # CPU near the limit: on a busy machine the load generator's own delay can put the
        # clients' p99 there at any rate), or the pod is at its limit, or it already scaled.
        while rate < s.max_rate:
            chunk = wait("a whole chunk at this rate", _chunk_since(timeline, timeline.now()),
                         CHUNK_S * 4, 0.2)
            if chunk.p99_ms >= 0.7 * s.slo_ms:  # confirmed by a second chunk (not a hiccup)
                chunk = wait("a second chunk at this rate",
                             _chunk_since(timeline, chunk.start + 0.1), CHUNK_S * 4, 0.2)
            cpu = pod_signals(s, name, 2 * CHUNK_S).get("cpu_utilization") or 0.0
            res.ramp_cpu = max(res.ramp_cpu, cpu)
            sample = watcher.last()
            if ((chunk.p99_ms >= 0.7 * s.slo_ms and cpu >= 0.7) or cpu >= 0.9
                    or (sample is not None and sample.replicas > 1)):
                break
            rate += ramp_step
            driver.rate = rate
        res.ramp_rate = rate
        res.hold_rate = min(round(1.3 * rate), s.max_rate)
        driver.rate = res.hold_rate
        timeline.mark(f"hold {res.hold_rate:g} rps")
        hold_end = timeline.now() + hold_s
        while timeline.now() < hold_end:
            time.sleep(1)
            if res.scaled_up_at is None:  # (it may have scaled up during the ramp)
                res.scaled_up_at = next((x.t for x in list(timeline.samples) if x.replicas > 1),
                                        None)
            good = [c for c in timeline.chunks if res.scaled_up_at is not None
                    and c.start > res.scaled_up_at]
            if res.p99_back_at is None and len(good) >= 2 and all(
                    c.p99_ms <= s.slo_ms for c in good[-2:]):
                res.p99_back_at = good[-2].start
            if (res.p99_back_at is not None and res.scaled_up_at is not None
                    and timeline.now() >= res.scaled_up_at + after_up_s):
                break
        up = res.scaled_up_at
        res.worst_p99_before_up = max(
            (c.p99_ms for c in timeline.chunks if up is None or c.start + CHUNK_S <= up),
            default=0.0)
        res.fewest_under_load = min(
            (x.replicas for x in timeline.samples if up is not None and x.t >= up),
            default=0)
        res.peak_replicas = max(x.replicas for x in timeline.samples)
        res.pods_at_peak = watcher.last().ready if watcher.last() else 0  # type: ignore[union-attr]
        res.pods_that_served = sum(1 for v in _served_by_pod(s, name, "30s").values() if v > 0)
        driver.rate = 0.0
        res.load_stop_at = timeline.now()
        timeline.mark("load stops; Prometheus frozen")
        before = len(timeline.samples)
        with prometheus_frozen(s.prometheus_pid):
            start = timeline.now()
            time.sleep(outage_s)
            res.outage = (start, timeline.now())
            during = timeline.samples[before:]
            res.outage_replicas = (min(x.replicas for x in during),
                                   max(x.replicas for x in during))
            res.outage_reasons = sorted({x.reason for x in during[len(during) // 2:]})
            res.outage_message = str(_status_scaling(s, name).get("message", ""))
        timeline.mark("Prometheus resumed")
        down = wait("scaled down to one pod", lambda: (
            x.t if (x := watcher.last()) is not None and x.replicas == 1 else None),
            scale_down_timeout)
        res.scaled_down_at = float(down)
        time.sleep(5)
    s.kubectl("delete", "scoringpipeline", name, "-n", s.namespace, "--wait=false")
    return res
