"""What the autoscaling policy is given: one measurement per track, the replicas, the rollout.

A measurement is a `MetricsSample`, or one of three results that are never read as zero:
`NoData` (Prometheus answered nothing: no series, or it could not be asked), `Stale` (the
newest data is too old to act on) and `Partial` (some series or some pods are missing). Reading
"no answer" as 0 QPS is how KEDA dropped fleets to their minimum at peak (KEDA #3065); here the
policy holds on NoData/Stale and never scales down on Partial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricsSample:
    """One track's measurement, as the gatherer read it from Prometheus.

    `qps` is the rate over the stable window (e.g. 1m) of completed requests; `qps_short` the
    same over the panic window (e.g. 30s); `p99_ms` from the latency histogram over the stable
    window, None when no request completed (an idle track has no latency, not a zero one);
    `p99_short_ms` the same over the panic window (it clears as soon as an overload is over,
    where the stable window still remembers it).
    `in_flight` and `queue_depth` are summed over the track's pods at the last scrape.
    Stream pipelines add `stream_events_per_s` (events consumed from the topic, stable window)
    and the end-to-end p99 (event timestamp to verdict) over both windows, None when no
    event was scored (idle, not zero).
    `cpu_utilization`: CPU used over the stable window as a share of the pods' CPU limit
    (mean over the pods that have one); `throttled_fraction`: the share of CFS periods in
    which the pods were stopped by their CPU limit, over the panic window (both from the
    scorer's cgroup series; None without a CPU limit or on an older scorer); `warming_up`: a pod
    of the track was not ready at some scrape of the panic window (one starting up), so the
    throttling in that window is partly start-up work (False when unknown).
    """

    measured_at: float
    qps: float
    p99_ms: float | None
    qps_short: float | None = None
    p99_short_ms: float | None = None
    in_flight: float | None = None
    queue_depth: float | None = None
    error_rate: float | None = None
    stream_events_per_s: float | None = None
    e2e_p99_ms: float | None = None
    e2e_p99_short_ms: float | None = None
    cpu_utilization: float | None = None
    throttled_fraction: float | None = None
    warming_up: bool = False

    def __post_init__(self) -> None:
        for name in ("qps", "qps_short", "in_flight", "queue_depth", "stream_events_per_s",
                     "cpu_utilization", "throttled_fraction"):
            value = getattr(self, name)
            if value is not None and not value >= 0:  # also rejects NaN
                raise ValueError(f"MetricsSample.{name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class NoData:
    """Prometheus gave no answer for this track (no series, or the query failed)."""

    reason: str


@dataclass(frozen=True)
class Stale:
    """The newest measurement is from `measured_at`: too old to act on."""

    measured_at: float
    reason: str = ""


@dataclass(frozen=True)
class Partial:
    """Some of the measurement is missing (named in `missing`, e.g. "p99", "pods 3/5")."""

    sample: MetricsSample
    missing: tuple[str, ...]


Observation = MetricsSample | NoData | Stale | Partial


@dataclass(frozen=True)
class TrackView:
    """A track as observed: what its Deployment asks for, what is ready, what was measured."""

    replicas: int
    ready: int
    metrics: Observation


@dataclass(frozen=True)
class RolloutView:
    """The part of a rollout that sizing depends on.

    `candidate_weight` is the candidate's share of requests now (canary), in percent;
    `next_candidate_weight` the next step's, so the candidate is ready before the step;
    `shadow_sample_rate` the share of stable's requests the candidate also scores (shadow);
    `promoting`: the next transition hands the stable track the whole pipeline's traffic.
    """

    active: bool = False
    strategy: Literal["Canary", "Shadow"] = "Canary"
    candidate_weight: int = 0
    next_candidate_weight: int | None = None
    shadow_sample_rate: float = 0.0
    promoting: bool = False

    def __post_init__(self) -> None:
        for w in (self.candidate_weight, self.next_candidate_weight):
            if w is not None and not 0 <= w <= 100:
                raise ValueError(f"candidate weight must be within 0..100, got {w}")
        if not 0.0 <= self.shadow_sample_rate <= 1.0:
            raise ValueError(f"shadow_sample_rate must be within 0..1, got "
                             f"{self.shadow_sample_rate}")


@dataclass(frozen=True)
class ScalingReadings:
    """What Prometheus answered for one track, before it is judged (None = no series).

    `error` is set when Prometheus could not be asked at all (then nothing else is). `scraped_at`
    is the newest scrape of the track's pods; `pods` how many pods were in that scrape;
    `request_series` how many request-counter series those pods export (none before a pod's
    first request).
    """

    qps: float | None = None
    qps_short: float | None = None
    p99_ms: float | None = None
    p99_short_ms: float | None = None
    in_flight: float | None = None
    queue_depth: float | None = None
    error_rate: float | None = None
    stream_events_per_s: float | None = None
    e2e_p99_ms: float | None = None
    e2e_p99_short_ms: float | None = None
    cpu_utilization: float | None = None
    throttled_fraction: float | None = None
    warming_up: bool | None = None
    pods: int | None = None
    scraped_at: float | None = None
    request_series: int | None = None
    error: str | None = None


def observation(readings: ScalingReadings, ready: int, last_sample_at: float | None,
                stale_after: float, now: float) -> Observation:
    """Judge one track's readings: a sample, or why there is none. Never a made-up zero.

    Prometheus down (or the query refused): `Stale` at the last sample the autoscaler used,
    or `NoData` if it never had one. No series at all: `NoData` (the pods are not scraped, or
    the selector is wrong). The newest scrape older than `stale_after`: `Stale`. Fewer scraped
    pods than ready ones, no p99 while requests flow, or a missing gauge: `Partial`, naming
    what is missing.
    """
    r = readings
    if r.error is not None:
        if last_sample_at is not None:
            return Stale(last_sample_at, f"Prometheus unavailable: {r.error}")
        return NoData(f"Prometheus unavailable: {r.error}")
    if r.pods is None or r.scraped_at is None:
        return NoData("no scorer series in Prometheus for this track")
    if now - r.scraped_at > stale_after:
        return Stale(r.scraped_at, f"newest scrape {now - r.scraped_at:.0f}s old")
    qps = r.qps
    if qps is None:
        if r.request_series:
            # Counters exist but no rate yet (a pod or Prometheus just started, fewer than two
            # scrapes in the window): unknown, not zero.
            return NoData("request counters scraped, but no complete rate window yet")
        # The pods are scraped fresh and none has a request counter: none has served a
        # request since it started. A measured zero, unlike an empty answer.
        qps = 0.0
    sample = MetricsSample(measured_at=r.scraped_at, qps=qps, p99_ms=r.p99_ms,
                           qps_short=r.qps_short, p99_short_ms=r.p99_short_ms,
                           in_flight=r.in_flight, queue_depth=r.queue_depth,
                           error_rate=r.error_rate, stream_events_per_s=r.stream_events_per_s,
                           e2e_p99_ms=r.e2e_p99_ms, e2e_p99_short_ms=r.e2e_p99_short_ms,
                           cpu_utilization=r.cpu_utilization,
                           throttled_fraction=r.throttled_fraction,
                           warming_up=bool(r.warming_up))
    missing = []
    if r.pods < ready:
        missing.append(f"pods {r.pods}/{ready} scraped")
    if r.p99_ms is None and qps > 0:
        missing.append("p99")
    if r.e2e_p99_ms is None and (r.stream_events_per_s or 0) > 0:
        # Events are consumed but their latency is not measured: as a missing RPC p99.
        missing.append("end-to-end p99")
    missing += [name for name, v in (("in-flight", r.in_flight), ("queue depth", r.queue_depth))
                if v is None]
    return Partial(sample, tuple(missing)) if missing else sample


def describe(obs: Observation) -> str:
    """One line for status: what the autoscaler was given."""
    if isinstance(obs, NoData):
        return f"NoMetrics: {obs.reason}"
    if isinstance(obs, Stale):
        return f"StaleMetrics: {obs.reason}".rstrip(": ")
    if isinstance(obs, Partial):
        return f"PartialMetrics: missing {', '.join(obs.missing)}"
    p99 = "none" if obs.p99_ms is None else f"{obs.p99_ms:.1f} ms"
    cpu = "" if obs.cpu_utilization is None else f", CPU {obs.cpu_utilization:.0%} of limit"
    throttled = ("" if obs.throttled_fraction is None
                 else f", throttled in {obs.throttled_fraction:.0%} of CFS periods")
    text = f"Sample: {obs.qps:.1f} qps, p99 {p99}{cpu}{throttled}"
    if obs.stream_events_per_s is not None:
        e2e = "none" if obs.e2e_p99_ms is None else f"{obs.e2e_p99_ms:.1f} ms"
        text += f"; stream {obs.stream_events_per_s:.1f} events/s, end-to-end p99 {e2e}"
    return text
