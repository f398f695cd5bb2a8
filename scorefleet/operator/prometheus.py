"""The one module that queries Prometheus (enforced by an import-linter contract).

It measures a track of a pipeline from the scorers' own series: request rate, p99 latency from
the classic `_bucket` histogram (Prometheus 2.42 has no stable native histograms), and the rate
of server-side errors. An empty answer is **no data** (None), never zero: reading "no series"
as 0 QPS is how an autoscaler drops a fleet to its minimum during a scrape outage (KEDA #3065),
and how a canary with no traffic passes its analysis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_api_client import PrometheusConnect

from scorefleet.api.status import TrackMetrics

# Codes that are the server's fault. INVALID_ARGUMENT / NOT_FOUND are the caller's, and
# CANCELLED is the caller giving up: none of those should fail a canary or page an SRE.
SERVER_ERROR_CODES = ("INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED",
                      "RESOURCE_EXHAUSTED", "DATA_LOSS", "UNIMPLEMENTED")


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


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self._client = PrometheusConnect(url=url, disable_ssl=True)
        self._timeout = timeout

    def scalar(self, query: str) -> float | None:
        """One instant query reduced to a number; None when there is no (finite) data."""
        try:
            result = self._client.custom_query(query, params={"timeout": f"{self._timeout:g}s"})
        except Exception as exc:  # the client raises bare exceptions of several kinds
            raise PrometheusError(f"{self.url}: {query}: {exc}") from exc
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else None

    def track_metrics(self, sel: TrackSelector, window: str = "1m") -> TrackMetrics:
        q = queries(sel, window)
        qps = self.scalar(q["qps"])
        errors = self.scalar(q["error_rate"]) if qps else None
        if qps and errors is None:
            errors = 0.0  # requests flowed and no error series exists: genuinely no errors
        return TrackMetrics(qps=qps, p99_latency_ms=self.scalar(q["p99_latency_ms"]),
                            error_rate=errors)
