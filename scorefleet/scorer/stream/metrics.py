"""Prometheus metrics of stream mode, registered beside the scorer's own (same registry, same
multiprocess files, same ``/metrics``).

End-to-end latency runs from the event's Kafka timestamp (set by whoever produced the event) to
the moment its verdict is acknowledged by the broker: what a user of the verdict topic waits.
Lag is per partition, as the consumer sees it (high watermark minus its position), refreshed
about once a second from librdkafka's cached watermarks, so it costs no broker round trip; the
committed-offset lag KEDA reads is computed by the autoscaler, not here.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from scorefleet.scorer.metrics import TRACK_LABELS, Metrics

E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
               30.0, 60.0, 300.0)
READ_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class StreamMetrics:
    """Stream series of one worker, with label children bound once."""

    def __init__(self, metrics: Metrics, pipeline: str, track: str) -> None:
        r = metrics.registry
        self.pipeline, self.track = pipeline, track
        self._consumed = Counter("scorefleet_stream_consumed_events",
                                 "Events fetched from the input topic.", TRACK_LABELS,
                                 registry=r)
        self._verdicts = Counter(
            "scorefleet_stream_verdicts",
            "Verdicts acknowledged by the broker, by model version and decision.",
            (*TRACK_LABELS, "model_version", "decision"), registry=r)
        self._dead = Counter("scorefleet_stream_dead_lettered_events",
                             "Events sent to the dead-letter topic, by reason.",
                             (*TRACK_LABELS, "reason"), registry=r)
        self._duplicates = Counter(
            "scorefleet_stream_duplicate_events",
            "Events this worker had already produced a verdict for (a replay after a broker "
            "restart or a failed commit); scored again, at-least-once.", TRACK_LABELS,
            registry=r)
        self._missing = Counter(
            "scorefleet_stream_features_missing_events",
            "Events whose online features were missing, by reason (absent, incomplete, "
            "invalid, stale, unavailable), before the miss policy applied.",
            (*TRACK_LABELS, "reason"), registry=r)
        self._e2e = Histogram("scorefleet_stream_end_to_end_seconds",
                              "Event timestamp to verdict acknowledged.", TRACK_LABELS,
                              buckets=E2E_BUCKETS, registry=r)
        self._read = Histogram("scorefleet_stream_feature_read_seconds",
                               "One batch's pipelined Redis read.", TRACK_LABELS,
                               buckets=READ_BUCKETS, registry=r)
        self._lag = Gauge("scorefleet_stream_lag_events",
                          "High watermark minus this consumer's position, per partition.",
                          (*TRACK_LABELS, "topic", "partition"), multiprocess_mode="livesum",
                          registry=r)
        self._commits = Counter("scorefleet_stream_commits",
                                "Offset commits, by result (ok, failed).",
                                (*TRACK_LABELS, "result"), registry=r)
        self._canary_fallback = Counter(
            "scorefleet_stream_canary_fallback_events",
            "Events of the canary's share scored by the stable model because the candidate "
            "call failed or timed out.", TRACK_LABELS, registry=r)
        labels = (pipeline, track)
        self.canary_fallback = self._canary_fallback.labels(*labels)
        self.consumed = self._consumed.labels(*labels)
        self.duplicates = self._duplicates.labels(*labels)
        self.e2e = self._e2e.labels(*labels)
        self.feature_read = self._read.labels(*labels)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(self.pipeline, self.track, *values)
            self._children[key] = child
        return child

    def verdicts(self, model_version: str, positives: int, negatives: int) -> None:
        if positives:
            self._child(self._verdicts, model_version, "positive").inc(positives)
        if negatives:
            self._child(self._verdicts, model_version, "negative").inc(negatives)

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        self._child(self._dead, reason).inc(n)

    def features_missing(self, reason: str, n: int = 1) -> None:
        self._child(self._missing, reason).inc(n)

    def commit(self, ok: bool) -> None:
        self._child(self._commits, "ok" if ok else "failed").inc()

    def lag(self, topic: str, partition: int, value: float) -> None:
        self._child(self._lag, topic, str(partition)).set(value)
