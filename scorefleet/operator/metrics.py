"""The operator's own Prometheus metrics: every autoscaling decision, exported as it is made.

Served on `SCOREFLEET_OPERATOR_METRICS_PORT` (off when unset) at `/metrics`. Per pipeline and
track: the replicas decided and those the Deployment had, the demand sized for, the per-replica
load that keeps the predicted p99 under the SLO, the learned saturation throughput, the p99
measured beside the SLO, whether the autoscaler had usable metrics, and counters of decisions
by reason and of changes by direction (the series an SRE alerts on: "holding on stale
metrics for 10 minutes", "flip-flopping").
"""

from __future__ import annotations

import contextlib
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from scorefleet.operator.decide.autoscaling import HOLD_REASONS, AutoscalingOutcome

_LABELS = ("namespace", "pipeline", "track")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(f"scorefleet_operator_autoscaler_{name}", text, _LABELS, registry=r)

        self.desired = gauge("desired_replicas", "Replicas the autoscaler decided.")
        self.current = gauge("current_replicas",
                             "Replicas the track's Deployment had when the autoscaler decided.")
        self.demand = gauge("demand_qps", "Requests/s the track was sized for.")
        self.per_replica = gauge("target_qps_per_replica",
                                 "Per-replica load that keeps the predicted p99 under target.")
        self.saturation = gauge("saturation_qps_per_replica",
                                "Learned saturation throughput of one replica.")
        self.p99 = gauge("p99_latency_ms", "p99 latency the decision was judged on.")
        self.slo = gauge("slo_p99_latency_ms", "The p99 SLO the track is held to.")
        self.active = gauge("metrics_available",
                            "1 when the last decision had usable metrics, 0 while holding.")
        self.decisions = Counter("scorefleet_operator_autoscaler_decisions",
                                 "Autoscaling decisions by reason.", (*_LABELS, "reason"),
                                 registry=r)
        self.changes = Counter("scorefleet_operator_autoscaler_scale_changes",
                               "Replica changes the autoscaler made, by direction.",
                               (*_LABELS, "direction"), registry=r)

    def record(self, namespace: str, pipeline: str, outcome: AutoscalingOutcome) -> None:
        d, status = outcome.decision, outcome.status
        if d is None or status is None or status.stable is None:
            return  # not a deciding pass
        labels = (namespace, pipeline, d.track)
        self.desired.labels(*labels).set(d.desired)
        self.current.labels(*labels).set(d.current)
        for gauge, value in ((self.demand, d.demand_qps), (self.per_replica, d.capacity_qps),
                             (self.p99, d.p99_ms), (self.slo, d.slo_p99_ms)):
            if value is not None:  # no value: keep the series absent, never a made-up zero
                gauge.labels(*labels).set(value)
            else:
                _forget(gauge, labels)
        self.saturation.labels(*labels).set(status.stable.capacity.throughput_qps)
        self.active.labels(*labels).set(0 if d.reason in HOLD_REASONS else 1)
        self.decisions.labels(*labels, d.reason).inc()
        if outcome.transitions:  # a change the operator made and announced
            self.changes.labels(*labels, "up" if d.desired > d.current else "down").inc()

    def forget(self, namespace: str, pipeline: str) -> None:
        """A deleted pipeline's series go with it."""
        for metric in (self.desired, self.current, self.demand, self.per_replica,
                       self.saturation, self.p99, self.slo, self.active):
            for track in ("stable", "candidate"):
                _forget(metric, (namespace, pipeline, track))


def _forget(gauge: Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # never set: nothing to remove
        gauge.remove(*labels)


def serve(metrics: OperatorMetrics, port: int, address: str,
          ) -> tuple[WSGIServer, Thread]:
    """Serve /metrics in a daemon thread; the caller shuts the server down."""
    return start_http_server(port, addr=address, registry=metrics.registry)
