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
    """

    measured_at: float
    qps: float
    p99_ms: float | None
    qps_short: float | None = None
    p99_short_ms: float | None = None
    in_flight: float | None = None
    queue_depth: float | None = None
    error_rate: float | None = None

    def __post_init__(self) -> None:
        for name in ("qps", "qps_short", "in_flight", "queue_depth"):
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
