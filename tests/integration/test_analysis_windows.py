"""Analysis inputs from a real scrape: a real scorer serving v1 with v2 as paired shadow, a real
Prometheus, the window queries of scorefleet.operator.prometheus, and the pure judges."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scorefleet.api.spec import AnalysisSpec, ShadowSpec, SLOSpec
from scorefleet.operator.decide.analysis import (
    CanaryWindow,
    bucket_counts,
    judge_canary,
    judge_shadow,
)
from scorefleet.operator.prometheus import Prometheus, TrackSelector
from scorefleet.scorer.example_model import synthetic_features
from scorefleet.scorer.metrics import SCORE_BUCKETS
from scorefleet.scorer.protos import v1_pb2
from tests.prometheus_server import PrometheusServer
from tests.scorer.scorer_process import Models

pytestmark = pytest.mark.prometheus

BATCHES, ROWS = 20, 100


def test_shadow_and_canary_windows_from_a_real_scrape(models: Models, start_scorer: Any,
                                                     tmp_path: Path) -> None:
    scorer = start_scorer({
        "model": models.ref("v1"), "pipeline": "mail-phish",
        "shadow": {"model": models.ref("v2"), "sampleRate": 1.0, "maxCpuFraction": 1.0},
    }).wait_serving()
    with PrometheusServer(tmp_path, [f"127.0.0.1:{scorer.metrics_port}"]) as server:
        server.wait_for("scorer target up", server.targets_up, 30)
        prom = Prometheus(server.url)
        sel = TrackSelector("mail-phish", "stable")
        x = synthetic_features((BATCHES + 1) * ROWS, seed=5).astype(np.float32)

        def send(b: int) -> None:
            rows = x[b * ROWS:(b + 1) * ROWS]
            scorer.scorer.ScoreBatch(v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(
                num_features=rows.shape[1], features=rows.reshape(-1).tolist())), timeout=10)

        def pairs_scraped(n: int) -> bool:
            total = prom.scalar("sum(scorefleet_shadow_pairs_total)")
            return total is not None and total >= n * 0.95

        # Series must exist before the window for increase() to count what follows, as they
        # do in a live fleet: one batch first, scraped, then the measured traffic.
        send(BATCHES)
        server.wait_for("first pairs scraped", lambda: pairs_scraped(ROWS), 30)
        started = time.monotonic()
        for b in range(BATCHES):
            send(b)

        server.wait_for("shadow pairs scraped", lambda: pairs_scraped((BATCHES + 1) * ROWS), 30)
        time.sleep(2)  # one more scrape, so increase() sees the final values
        # The window must reach back to a scrape from before the traffic (1 s scrapes here).
        since = time.monotonic() - started + 3
        shadow = prom.shadow_window(sel, "v1", "v2", interval=since, since=since)
        total = sum(shadow.outcomes.values())
        # increase() extrapolates to the window's edges: close to what was sent, not exact.
        assert BATCHES * ROWS * 0.8 <= total <= BATCHES * ROWS * 1.3, shadow.outcomes
        assert shadow.resets == 0
        assert len(shadow.stable_scores) == len(SCORE_BUCKETS) + 1
        assert sum(bucket_counts(shadow.candidate_scores)) == pytest.approx(total, rel=0.05)

        verdict = judge_shadow(ShadowSpec(min_agreement=0.8, max_score_drift=0.1), 200, shadow)
        checks = {c.metric: c for c in verdict.checks}
        # v2 is v1 retrained on another sample: ~5% of decisions differ, scores barely drift.
        assert checks["agreement"].measured is not None
        assert 0.85 < checks["agreement"].measured < 1.0
        assert checks["scoreDrift"].measured is not None
        assert 0.0 < checks["scoreDrift"].measured < 0.1
        assert verdict.result == "Successful", verdict.summary()

        window = prom.track_window(sel, since)
        assert window.requests is not None
        assert BATCHES * 0.8 <= window.requests <= BATCHES * 1.3
        assert window.errors == 0.0 and window.resets == 0
        assert window.p99_ms is not None and window.p99_ms > 0
        # Judged against itself (the same numbers as stable): every check passes with 20
        # requests and a minimum of 10.
        slo = SLOSpec.model_validate({"p99Latency": "2s"})
        same = judge_canary(AnalysisSpec(min_request_count=10), slo,
                            CanaryWindow(stable=window, candidate=window))
        assert same.result == "Successful", same.summary()
        # A track with no series is no data, not zero: Inconclusive.
        quiet = prom.track_window(TrackSelector("mail-phish", "candidate"), since)
        assert quiet.requests is None
        assert judge_canary(AnalysisSpec(), SLOSpec(), CanaryWindow(
            stable=window, candidate=quiet)).result == "Inconclusive"


def test_an_interval_that_began_before_prometheus_started_is_not_judged(tmp_path: Path) -> None:
    """A restarted Prometheus lost (or never had) the start of the interval; the scorers'
    counters did not reset, so resets() cannot tell. Its own start time does."""
    import logging

    from scorefleet.operator.settings import Analyst

    with PrometheusServer(tmp_path, ["127.0.0.1:9"]) as server:
        prom = Prometheus(server.url)
        started = prom.started_at()
        assert started is not None and abs(started - time.time()) < 120
        analyst = Analyst(prom, "", logging.getLogger("test"))
        time.sleep(2.0)
        before = analyst.canary("ns", "phish", 600)  # began ~10 min before the restart
        assert before is not None and 590 < before.unobserved_seconds <= 600
        verdict = judge_canary(AnalysisSpec(), SLOSpec(), before)
        assert verdict.result is None and verdict.checks[0].metric == "prometheusRestart"
        within = analyst.canary("ns", "phish", 1)  # began after it started: seen whole
        assert within is not None and within.unobserved_seconds == 0.0
    # A store that cannot say when it started: unknown, never an error.
    assert Prometheus("http://127.0.0.1:9", timeout=1).started_at() is None


def test_prometheus_times_parse_with_nanoseconds() -> None:
    from scorefleet.operator.prometheus import parse_rfc3339

    assert parse_rfc3339("1970-01-01T00:00:10.5Z") == 10.5
    assert parse_rfc3339("1970-01-01T01:00:10.123456789+01:00") == pytest.approx(10.123456789)
    assert parse_rfc3339("yesterday") is None
