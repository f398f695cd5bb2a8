"""Real Prometheus scraping a real scorer process, read through scorefleet.operator.prometheus:
what the operator will judge canaries and scale on is what the scorer actually served."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from scorefleet.operator.prometheus import Prometheus, TrackSelector
from scorefleet.scorer.protos import v1_pb2
from tests.prometheus_server import PrometheusServer
from tests.scorer.scorer_process import Models

pytestmark = pytest.mark.prometheus


def test_track_metrics_from_a_real_scrape(models: Models, start_scorer: Any,
                                          tmp_path: Path) -> None:
    scorer = start_scorer({"model": models.ref("v1"), "pipeline": "mail-phish"}).wait_serving()
    with PrometheusServer(tmp_path, [f"127.0.0.1:{scorer.metrics_port}"]) as server:
        server.wait_for("scorer target up", server.targets_up, 30)
        prom = Prometheus(server.url)
        stable = TrackSelector("mail-phish", "stable")

        # Before any traffic there is no rate to speak of: None, never a made-up zero.
        assert prom.track_metrics(TrackSelector("mail-phish", "candidate")).qps is None

        ok, invalid = 0, 0
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline and ok < 4000:
            scorer.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(features=[0.1] * 32)),
                                timeout=5)
            ok += 1
            if ok % 10 == 0:  # the caller's fault: must not count as a server error
                with pytest.raises(grpc.RpcError):
                    scorer.scorer.Score(v1_pb2.ScoreRequest(
                        event=v1_pb2.Event(features=[0.1] * 3)), timeout=5)
                invalid += 1
        sent = ok + invalid

        def scraped_total() -> float | None:
            return prom.scalar(f"sum(scorefleet_requests_total{stable.matchers()})")

        server.wait_for("all requests scraped", lambda: scraped_total() == sent, 20)
        measured = prom.track_metrics(stable, window="30s")
        assert measured.qps is not None and measured.qps > 0
        assert measured.p99_latency_ms is not None and 0 < measured.p99_latency_ms < 1000
        assert measured.error_rate == 0.0
        caller_errors = stable.matchers('code="INVALID_ARGUMENT"')
        invalid_rate = prom.scalar(f"sum(rate(scorefleet_requests_total{caller_errors}[30s]))")
        assert invalid_rate is not None and invalid_rate > 0
        # Another pipeline's series never leak into this one's measurement.
        assert prom.track_metrics(TrackSelector("other", "stable")).qps is None
