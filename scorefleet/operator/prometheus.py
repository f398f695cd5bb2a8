"""The one module that queries Prometheus (enforced by an import-linter contract).

It measures a track of a pipeline from the scorers' own series: request rate, p99 latency from
the classic `_bucket` histogram (Prometheus 2.42 has no stable native histograms), and the rate
of server-side errors. An empty answer is **no data** (None), never zero: reading "no series"
as 0 QPS is how an autoscaler drops a fleet to its minimum during a scrape outage (KEDA #3065),
and how a canary with no traffic passes its analysis.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_api_client import PrometheusConnect
from requests import RequestException
from urllib3.util.retry import Retry

from scorefleet.api.status import TrackMetrics
from scorefleet.operator.decide.analysis import (
    OUTCOMES,
    Buckets,
    ShadowWindow,
    TrackWindow,
    histogram_quantile,
)
from scorefleet.operator.decide.scaling_inputs import ScalingReadings

# Codes that are the server's fault. INVALID_ARGUMENT / NOT_FOUND are the caller's, and
# CANCELLED is the caller giving up: none of those should fail a canary or page an SRE.
SERVER_ERROR_CODES = ("INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED",
                      "RESOURCE_EXHAUSTED", "DATA_LOSS", "UNIMPLEMENTED")


def parse_rfc3339(text: str) -> float | None:
    """Epoch seconds of Prometheus's RFC 3339 times ("2026-11-29T09:00:00.123456789Z": Go
    writes nanoseconds, more than datetime parses)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        return None
    zone = "+00:00" if match[3] == "Z" else match[3]
    whole = datetime.fromisoformat(match[1] + zone).timestamp()
    return whole + (float(match[2]) if match[2] else 0.0)


class PrometheusError(RuntimeError):
    """Prometheus could not be asked (down, bad query): distinct from an empty answer."""


@dataclass(frozen=True)
class TrackSelector:
    """Which scorer series belong to one track; `extra` adds e.g. a namespace matcher."""

    pipeline: str
    track: str
    extra: dict[str, str] = field(default_factory=dict)

    def matchers(self, *more: str) -> str:
        parts = [f'pipeline="{_escape(self.pipeline)}"', f'track="{_escape(self.track)}"']
        parts += [f'{k}="{_escape(v)}"' for k, v in sorted(self.extra.items())]
        return "{" + ",".join([*parts, *more]) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def queries(sel: TrackSelector, window: str) -> dict[str, str]:
    """The PromQL behind each measurement (also shown in docs and logs)."""
    server_errors = sel.matchers('code=~"' + "|".join(SERVER_ERROR_CODES) + '"')
    requests = f"sum(rate(scorefleet_requests_total{sel.matchers()}[{window}]))"
    return {
        "qps": requests,
        "events_per_second": f"sum(rate(scorefleet_events_total{sel.matchers()}[{window}]))",
        "p99_latency_ms": "1000 * histogram_quantile(0.99, sum by (le) (rate("
                          f"scorefleet_request_duration_seconds_bucket{sel.matchers()}"
                          f"[{window}])))",
        "error_rate": f"sum(rate(scorefleet_requests_total{server_errors}[{window}])) "
                      f"/ {requests}",
    }


def scaling_queries(sel: TrackSelector, window: str, short: str) -> dict[str, str]:
    """The autoscaler's inputs beyond `queries(sel, window)`: the panic window's rate and p99,
    the gauges summed over the track's pods at the last scrape, how many pods that scrape
    covered (one in-flight series per pod) and when it was taken."""
    return {
        "qps_short": queries(sel, short)["qps"],
        "p99_short_ms": queries(sel, short)["p99_latency_ms"],
        "in_flight": f"sum(scorefleet_in_flight_requests{sel.matchers()})",
        "queue_depth": f"sum(scorefleet_queued_events{sel.matchers()})",
        "pods": f"count(count by (instance) (scorefleet_in_flight_requests{sel.matchers()}))",
        "scraped_at": f"max(timestamp(scorefleet_in_flight_requests{sel.matchers()}))",
        "request_series": f"count(scorefleet_requests_total{sel.matchers()})",
        # The scorer's own cgroup counters (scorefleet/scorer/cgroup_cpu.py): the wait of a
        # CPU-throttled pod is invisible to its latency histogram, not to these.
        "cpu_utilization": f"avg(rate(scorefleet_cpu_usage_seconds_total{sel.matchers()}"
                           f"[{window}]) / scorefleet_cpu_limit_cores{sel.matchers()})",
        # 0 while any pod of the track was not ready at some scrape of the panic window (a
        # pod starting up: its start-up work is throttled too, with no request waiting).
        "warming_up": f"min(min_over_time(scorefleet_ready_workers{sel.matchers()}[{short}])) "
                      "== bool 0",
        "throttled_fraction": "sum(rate(scorefleet_cpu_cfs_throttled_periods_total"
                              f"{sel.matchers()}[{short}])) / sum(rate("
                              f"scorefleet_cpu_cfs_periods_total{sel.matchers()}[{short}]))",
    }


def stream_queries(sel: TrackSelector, window: str, short: str) -> dict[str, str]:
    """A stream pipeline's own inputs: events consumed from the topic, and the end-to-end p99
    (event timestamp to verdict acknowledged) over the stable and the panic windows."""
    def e2e(w: str) -> str:
        return ("1000 * histogram_quantile(0.99, sum by (le) (rate("
                f"scorefleet_stream_end_to_end_seconds_bucket{sel.matchers()}[{w}])))")

    return {
        "events_per_s": f"sum(rate(scorefleet_stream_consumed_events_total{sel.matchers()}"
                        f"[{window}]))",
        "e2e_p99_ms": e2e(window),
        "e2e_p99_short_ms": e2e(short),
    }


def window_queries(sel: TrackSelector, seconds: float) -> dict[str, str]:
    """One analysis interval of one track, ending now: increases (reset-corrected by
    Prometheus) and the resets themselves, which make the interval unjudgeable."""
    w = f"{max(1, round(seconds))}s"
    server_errors = sel.matchers('code=~"' + "|".join(SERVER_ERROR_CODES) + '"')
    return {
        "requests": f"sum(increase(scorefleet_requests_total{sel.matchers()}[{w}]))",
        "errors": f"sum(increase(scorefleet_requests_total{server_errors}[{w}]))",
        "latency": "sum by (le) (increase("
                   f"scorefleet_request_duration_seconds_bucket{sel.matchers()}[{w}]))",
        "resets": f"sum(resets(scorefleet_requests_total{sel.matchers()}[{w}]))",
    }


def shadow_queries(sel: TrackSelector, primary_version: str, shadow_version: str,
                   interval: float, since: float) -> dict[str, str]:
    """The paired comparison recorded by `sel`'s (stable) pods: pairs in this interval, and
    outcomes and histograms since the shadow started (`since` seconds ago)."""
    w, s = f"{max(1, round(interval))}s", f"{max(1, round(since))}s"
    pair = sel.matchers(f'primary_version="{_escape(primary_version)}"',
                        f'shadow_version="{_escape(shadow_version)}"')
    primary = sel.matchers('role="primary"', f'model_version="{_escape(primary_version)}"')
    shadow = sel.matchers('role="shadow"', f'model_version="{_escape(shadow_version)}"')
    return {
        "interval_pairs": f"sum(increase(scorefleet_shadow_pairs_total{pair}[{w}]))",
        "outcomes": f"sum by (outcome) (increase(scorefleet_shadow_pairs_total{pair}[{s}]))",
        "stable_scores": f"sum by (le) (increase(scorefleet_model_score_bucket{primary}[{s}]))",
        "candidate_scores": f"sum by (le) (increase(scorefleet_model_score_bucket{shadow}[{s}]))",
        "delta": f"sum by (le) (increase(scorefleet_shadow_score_delta_bucket{pair}[{s}]))",
        "resets": f"sum(resets(scorefleet_shadow_pairs_total{pair}[{w}]))",
    }


def _flag(value: float | None) -> bool | None:
    """A PromQL `== bool` answer: 1 true, 0 false, None no series."""
    return None if value is None else value == 1


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


class Prometheus:
    """Instant queries with a deadline. Prometheus down or hung must not stall the operator's
    loop: each request times out after `timeout` (the client's default has none and retries
    with back-off), and after a failure every query fails at once for `cooldown` seconds
    (one timeout per cooldown, not one per query of every pipeline)."""

    def __init__(self, url: str, timeout: float = 10.0, cooldown: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._client = PrometheusConnect(url=url, disable_ssl=True, timeout=timeout,
                                         retry=Retry(total=1, connect=0, backoff_factor=0.2,
                                                     status_forcelist=(502, 503, 504)))
        self._timeout = timeout
        self._cooldown = cooldown
        self._clock = clock
        self._down_until = 0.0
        self._down_error: BaseException | None = None

    def _query(self, query: str) -> list[dict[str, Any]]:
        if self._clock() < self._down_until:
            raise PrometheusError(f"{self.url}: {query}: unavailable (failed "
                                  f"{self._cooldown:g}s ago or less)") from self._down_error
        try:
            result: list[dict[str, Any]] = self._client.custom_query(
                query, params={"timeout": f"{self._timeout:g}s"})
        except Exception as exc:  # the client raises bare exceptions of several kinds
            if isinstance(exc, RequestException):  # unreachable or hung, not a refused query
                self._down_until = self._clock() + self._cooldown
                self._down_error = exc
            raise PrometheusError(f"{self.url}: {query}: {exc}") from exc
        return result

    def started_at(self) -> float | None:
        """When this Prometheus started (epoch seconds), from its runtime info; None when the
        server does not say (a Prometheus-compatible store without that endpoint): restarts
        then go unnoticed, as before, rather than failing every measurement."""
        try:
            resp = self._client._session.get(f"{self.url}/api/v1/status/runtimeinfo",
                                             timeout=self._timeout)
            text = str(resp.json()["data"]["startTime"])
        except Exception:  # any failure means "unknown", never an error
            return None
        return parse_rfc3339(text)

    def scalar(self, query: str) -> float | None:
        """One instant query reduced to a number; None when there is no (finite) data."""
        result = self._query(query)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else None

    def vector(self, query: str, label: str) -> dict[str, float]:
        """An instant vector keyed by one label's value (non-finite samples dropped)."""
        result = self._query(query)
        out = {}
        for sample in result or []:
            value = float(sample["value"][1])
            if math.isfinite(value):
                out[sample["metric"].get(label, "")] = value
        return out

    def buckets(self, query: str) -> Buckets:
        """A `sum by (le)` answer as (upper bound, cumulative count), +Inf last."""
        return sorted((float(le), count) for le, count in self.vector(query, "le").items())

    def track_window(self, sel: TrackSelector, seconds: float) -> TrackWindow:
        q = window_queries(sel, seconds)
        requests = self.scalar(q["requests"])
        errors = self.scalar(q["errors"]) if requests is not None else None
        # The histogram itself, not only its p99: the judgement needs its sample size too.
        latency = self.buckets(q["latency"]) if requests else []
        p99 = histogram_quantile(0.99, latency) if latency else None
        return TrackWindow(requests=requests,
                           errors=0.0 if requests is not None and errors is None else errors,
                           p99_ms=None if p99 is None else 1000.0 * p99,
                           resets=int(self.scalar(q["resets"]) or 0), latency=tuple(latency))

    def shadow_window(self, sel: TrackSelector, primary_version: str, shadow_version: str,
                      interval: float, since: float) -> ShadowWindow:
        q = shadow_queries(sel, primary_version, shadow_version, interval, since)
        outcomes = self.vector(q["outcomes"], "outcome")
        return ShadowWindow(
            interval_pairs=self.scalar(q["interval_pairs"]),
            outcomes={o: outcomes.get(o, 0.0) for o in OUTCOMES},
            stable_scores=self.buckets(q["stable_scores"]),
            candidate_scores=self.buckets(q["candidate_scores"]),
            delta=self.buckets(q["delta"]),
            resets=int(self.scalar(q["resets"]) or 0))

    def scaling_readings(self, sel: TrackSelector, window: str, short: str,
                         stream: bool = False) -> tuple[TrackMetrics, ScalingReadings]:
        """The status measurement and the autoscaler's readings of one track, in one pass;
        with `stream`, the stream's events/s and end-to-end p99 too (asked only while events
        flow: an idle stream has no latency, not a zero one).
        Prometheus unreachable: `PrometheusError` (the caller records it in the readings)."""
        metrics = self.track_metrics(sel, window)
        q = scaling_queries(sel, window, short)
        pods = self.scalar(q["pods"])
        flowing = bool(metrics.qps)
        events = e2e = e2e_short = None
        if stream:
            sq = stream_queries(sel, window, short)
            events = self.scalar(sq["events_per_s"])
            if events:
                e2e, e2e_short = self.scalar(sq["e2e_p99_ms"]), self.scalar(
                    sq["e2e_p99_short_ms"])
        return metrics, ScalingReadings(
            stream_events_per_s=events, e2e_p99_ms=e2e, e2e_p99_short_ms=e2e_short,
            qps=metrics.qps, qps_short=self.scalar(q["qps_short"]),
            p99_ms=metrics.p99_latency_ms,
            p99_short_ms=self.scalar(q["p99_short_ms"]) if flowing else None,
            in_flight=self.scalar(q["in_flight"]), queue_depth=self.scalar(q["queue_depth"]),
            error_rate=metrics.error_rate, cpu_utilization=self.scalar(q["cpu_utilization"]),
            throttled_fraction=self.scalar(q["throttled_fraction"]),
            warming_up=_flag(self.scalar(q["warming_up"])),
            pods=None if pods is None else int(pods),
            scraped_at=self.scalar(q["scraped_at"]),
            request_series=None if metrics.qps is not None else _count(
                self.scalar(q["request_series"])))

    def track_metrics(self, sel: TrackSelector, window: str = "1m") -> TrackMetrics:
        q = queries(sel, window)
        qps = self.scalar(q["qps"])
        errors = self.scalar(q["error_rate"]) if qps else None
        if qps and errors is None:
            errors = 0.0  # requests flowed and no error series exists: genuinely no errors
        return TrackMetrics(qps=qps, p99_latency_ms=self.scalar(q["p99_latency_ms"]),
                            error_rate=errors)
