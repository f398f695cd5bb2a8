"""Prometheus metrics of the scorer: definitions, multiprocess aggregation, cheap recording.

Several worker processes serve one port, so metrics use prometheus_client's multiprocess mode:
each worker writes its values to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and the
supervisor serves one aggregated ``/metrics`` on ``metricsPort`` (counters and histograms are
summed; gauges say how they combine). The alternative, one metrics port per worker, would make
the operator and every scrape config know the worker count, and a PromQL ``rate()`` over a worker
that restarted would be right anyway only per series. Cost: ~1 us per value update, measured.

Labels are bound once per (model version, method, code) and cached: ``labels()`` costs more than
the increment itself. Histograms of many values at once (scores of a whole batch) go through
:func:`observe_many`, one numpy pass instead of one Python call per value.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as prom_multiprocess

from scorefleet.scorer.quiet_log import QuietLog

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Millisecond SLOs (p99 <= 10 ms, 20 ms) must fall on bucket bounds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02,
                   0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
QUEUE_WAIT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                      0.1, 0.5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Equal steps in log-odds (logit -7 ... 7 by 0.5, i.e. 0.0009 ... 0.9991): model scores are
# sigmoids, and detection scores crowd near 0. With 0.05-wide buckets the example model put 32%
# of its scores in the first bucket and almost none in the top five, so PSI (the drift gate)
# could not see a shift among low scores, where most events are; with these, no bucket holds
# more than 16% and 14 buckets hold at least 1%.
SCORE_BUCKETS = tuple(float(f"{1.0 / (1.0 + math.exp(-0.5 * k)):.4g}") for k in range(-14, 15))
DELTA_BUCKETS = (-1.0, -0.5, -0.2, -0.1, -0.05, -0.02, -0.01, -0.005, -0.001, 0.0, 0.001, 0.005,
                 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

REQ_LABELS = ("pipeline", "track", "model_version", "method", "code")
TRACK_LABELS = ("pipeline", "track")


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def aggregated_registry() -> CollectorRegistry:
    """Registry that reads every worker's files: what the supervisor serves."""
    registry = CollectorRegistry()
    prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (in-flight, loaded) from the aggregate."""
    if multiprocess_enabled():
        prom_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def observe_many(child: Any, values: npt.NDArray[Any]) -> None:
    """Histogram.observe for each value, in one pass.

    Uses prometheus_client's per-bucket value objects (``_upper_bounds``, ``_buckets``,
    ``_sum``; stable since 0.4, checked by a test against ``observe``) because a Python call per
    score would cost more than scoring the event.
    """
    if values.size == 0:
        return
    bounds = child._upper_bounds
    # Bucket i holds values in (bounds[i-1], bounds[i]]: the first bound >= value.
    idx = np.searchsorted(np.asarray(bounds[:-1], dtype=np.float64),
                          values.astype(np.float64), side="left")
    counts = np.bincount(idx, minlength=len(bounds))
    for i in np.flatnonzero(counts):
        child._buckets[int(i)].inc(int(counts[i]))
    child._sum.inc(float(values.sum(dtype=np.float64)))


class Metrics:
    """Every metric one worker records, registered on its own registry (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.requests = Counter("scorefleet_requests", "RPCs by outcome code.", REQ_LABELS,
                                registry=r)
        self.events = Counter("scorefleet_events", "Events (rows) in RPCs, by outcome code.",
                              REQ_LABELS, registry=r)
        self.request_duration = Histogram(
            "scorefleet_request_duration_seconds", "Server-side RPC latency.",
            ("pipeline", "track", "model_version", "method"), buckets=LATENCY_BUCKETS,
            registry=r)
        self.invalid = Counter("scorefleet_invalid_requests",
                               "RPCs rejected as invalid, by reason.",
                               (*TRACK_LABELS, "method", "reason"), registry=r)
        self.shed = Counter("scorefleet_shed_requests",
                            "RPCs refused with RESOURCE_EXHAUSTED, by the limit that was hit "
                            "(queue_full: batching.maxQueueSize).",
                            (*TRACK_LABELS, "method", "reason"), registry=r)
        self.expired = Counter("scorefleet_expired_requests",
                               "RPCs ended with DEADLINE_EXCEEDED, never scored, by where the "
                               "deadline passed: before_start (waiting for the worker), queued "
                               "(the batcher dropped it), in_flight (gRPC ended the call while "
                               "it was queued or scored, or its answer came too late), at_send "
                               "(as the answer was sent).",
                               (*TRACK_LABELS, "reason"), registry=r)
        self.cancelled = Counter("scorefleet_cancelled_requests",
                                 "RPCs the client cancelled, or whose connection closed, "
                                 "before the answer.", (*TRACK_LABELS, "method"), registry=r)
        self.in_flight = Gauge("scorefleet_in_flight_requests", "RPCs being handled now.",
                               TRACK_LABELS, multiprocess_mode="livesum", registry=r)
        self.queued = Gauge("scorefleet_queued_events", "Events waiting for a batch.",
                            TRACK_LABELS, multiprocess_mode="livesum", registry=r)
        self.batch_size = Histogram("scorefleet_batch_size", "Events per model call.",
                                    TRACK_LABELS, buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.queue_wait = Histogram("scorefleet_queue_wait_seconds",
                                    "Time a request waited for its batch.", TRACK_LABELS,
                                    buckets=QUEUE_WAIT_BUCKETS, registry=r)
        self.inference = Histogram("scorefleet_inference_duration_seconds",
                                   "onnxruntime time per model call.",
                                   (*TRACK_LABELS, "role"), buckets=LATENCY_BUCKETS,
                                   registry=r)
        self.model_loaded = Gauge(
            "scorefleet_model_loaded", "Workers serving this model (0 = not loaded).",
            (*TRACK_LABELS, "role", "model_name", "model_version"),
            multiprocess_mode="livesum", registry=r)
        self.model_info = Gauge(
            "scorefleet_model_info", "The model a worker serves; value 1.",
            (*TRACK_LABELS, "role", "model_name", "model_version", "sha256", "threshold"),
            multiprocess_mode="livemax", registry=r)
        self.model_loads = Counter("scorefleet_model_loads", "Model load attempts by result.",
                                   (*TRACK_LABELS, "role", "result"), registry=r)
        self.config_reloads = Counter("scorefleet_config_reloads",
                                      "Config file changes seen, by result.",
                                      ("result",), registry=r)
        self.ready = Gauge("scorefleet_ready_workers",
                           "Workers reporting SERVING on the health service.",
                           multiprocess_mode="livesum", registry=r)
        self.workers = Gauge("scorefleet_workers", "Live worker processes.",
                             multiprocess_mode="livesum", registry=r)
        # Paired shadow comparison.
        self.shadow_pairs = Counter(
            "scorefleet_shadow_pairs",
            "Events scored by both models, by decision outcome at each model's threshold: "
            "both_positive, both_negative, flip_to_positive (shadow says positive, primary "
            "negative), flip_to_negative.",
            (*TRACK_LABELS, "primary_version", "shadow_version", "outcome"), registry=r)
        self.shadow_delta = Histogram(
            "scorefleet_shadow_score_delta", "Shadow score minus primary score, per pair.",
            (*TRACK_LABELS, "primary_version", "shadow_version"), buckets=DELTA_BUCKETS,
            registry=r)
        self.model_score = Histogram(
            "scorefleet_model_score", "Scores of paired events, per model (drift inputs).",
            (*TRACK_LABELS, "role", "model_version"), buckets=SCORE_BUCKETS, registry=r)
        self.shadow_skipped = Counter(
            "scorefleet_shadow_skipped_events",
            "Sampled events not shadow-scored: budget (CPU budget spent), busy (shadow queue "
            "full), error (shadow model failed).", (*TRACK_LABELS, "reason"), registry=r)
        self.shadow_cpu = Counter("scorefleet_shadow_cpu_seconds",
                                  "CPU time spent on shadow scoring and comparison.",
                                  TRACK_LABELS, registry=r)


class RequestRecorder:
    """Pre-bound per-(version, method, code) children for the hot path."""

    def __init__(self, metrics: Metrics, pipeline: str, track: str,
                 quiet: QuietLog | None = None) -> None:
        self.m = metrics
        # Refusals are counted here and summed up in the log at most once per interval.
        self.quiet = quiet if quiet is not None else QuietLog(logging.getLogger(
            "scorefleet.scorer.requests"))
        self.pipeline = pipeline
        self.track = track
        self._req: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._dur: dict[tuple[str, str], Any] = {}
        self._refusals: dict[tuple[str, ...], Any] = {}
        self.in_flight = metrics.in_flight.labels(pipeline, track)
        self.queued = metrics.queued.labels(pipeline, track)
        self.batch_size = metrics.batch_size.labels(pipeline, track)
        self.queue_wait = metrics.queue_wait.labels(pipeline, track)
        self.inference = metrics.inference.labels(pipeline, track, "primary")

    def record(self, version: str, method: str, code: str, events: int,
               seconds: float) -> None:
        key = (version, method, code)
        pair = self._req.get(key)
        if pair is None:
            labels = (self.pipeline, self.track, version, method, code)
            pair = (self.m.requests.labels(*labels), self.m.events.labels(*labels))
            self._req[key] = pair
        pair[0].inc()
        if events:
            pair[1].inc(events)
        dkey = (version, method)
        dur = self._dur.get(dkey)
        if dur is None:
            dur = self.m.request_duration.labels(self.pipeline, self.track, version, method)
            self._dur[dkey] = dur
        dur.observe(seconds)

    def invalid(self, method: str, reason: str) -> None:
        self.m.invalid.labels(self.pipeline, self.track, method, reason).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        # Refusals come in floods: bind each label set once, like the hot path does.
        key = (metric._name, *labels)
        child = self._refusals.get(key)
        if child is None:
            child = self._refusals[key] = metric.labels(self.pipeline, self.track, *labels)
        return child

    def shed(self, method: str, reason: str) -> None:
        self._child(self.m.shed, method, reason).inc()
        self.quiet.count("shed", reason)

    def expired(self, reason: str, n: int = 1) -> None:
        self._child(self.m.expired, reason).inc(n)
        self.quiet.count("expired", reason, n)

    def cancelled(self, method: str) -> None:
        self._child(self.m.cancelled, method).inc()
        self.quiet.count("cancelled", "client")


def label_sets(metric: Any) -> Iterable[tuple[str, ...]]:
    """The label tuples a metric has children for (used to zero stale model gauges)."""
    return list(metric._metrics.keys())
