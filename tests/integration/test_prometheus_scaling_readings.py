"""The autoscaler's readings from a real Prometheus scraping real scorer processes, judged the
way the operator judges them: a complete sample, a partial one when a scraped pod is missing,
no data for a track nobody scrapes, and Prometheus down as an error (held as Stale by the
operator), never zeros."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from scorefleet.operator.decide.scaling_inputs import (
    MetricsSample,
    NoData,
    Partial,
    observation,
)
from scorefleet.operator.prometheus import Prometheus, PrometheusError, TrackSelector
from scorefleet.scorer.protos import v1_pb2
from tests.prometheus_server import PrometheusServer
from tests.scorer.scorer_process import Models

pytestmark = pytest.mark.prometheus


def test_scaling_readings_from_a_real_scrape(models: Models, start_scorer: Any,
                                             tmp_path: Path) -> None:
    scorers = [start_scorer({"model": models.ref("v1"), "pipeline": "mail-phish"})
               for _ in range(2)]
    for s in scorers:
        s.wait_serving()
    with PrometheusServer(tmp_path, [f"127.0.0.1:{s.metrics_port}" for s in scorers]) as server:
        server.wait_for("scorer targets up", server.targets_up, 30)
        prom = Prometheus(server.url)
        stable = TrackSelector("mail-phish", "stable")
        request = v1_pb2.ScoreRequest(event=v1_pb2.Event(features=[0.1] * 32))
        deadline = time.monotonic() + 6.0
        sent = 0
        while time.monotonic() < deadline:
            scorers[sent % 2].scorer.Score(request, timeout=5)
            sent += 1

        def complete() -> Any:
            _, r = prom.scaling_readings(stable, "10s", "5s")
            return r if r.qps and r.qps_short and r.p99_short_ms is not None else None

        readings = _poll(complete, 20)
        assert readings.pods == 2
        assert readings.in_flight is not None and readings.in_flight >= 0
        assert readings.queue_depth is not None and readings.queue_depth >= 0
        assert readings.scraped_at is not None and abs(time.time() - readings.scraped_at) < 10
        assert readings.p99_ms is not None and 0 < readings.p99_ms < 1000
        now = time.time()
        assert isinstance(observation(readings, 2, None, 90, now), MetricsSample)
        # Three ready pods but two scraped: partial, and it says which part is missing.
        partial = observation(readings, 3, None, 90, now)
        assert isinstance(partial, Partial) and partial.missing == ("pods 2/3 scraped",)
        # A track nobody scrapes: no data, not zero.
        _, none = prom.scaling_readings(TrackSelector("mail-phish", "candidate"), "10s", "5s")
        assert (none.qps, none.pods, none.in_flight) == (None, None, None)
        assert isinstance(observation(none, 1, None, 90, now), NoData)
        server.stop()
        with pytest.raises(PrometheusError):
            prom.scaling_readings(stable, "10s", "5s")
        server.start()  # the context manager stops it again


def _poll(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout}s")
