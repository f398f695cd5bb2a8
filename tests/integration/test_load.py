"""The bounded load generator against real scorer processes: it offers the rate it is asked
for, stops on time, counts codes and latency, and spreads RPCs over every address (per request,
round_robin) when a name resolves to several."""

from __future__ import annotations

from typing import Any

import pytest

from scorefleet import load
from tests.scorer.scorer_process import Models


def test_offers_the_rate_for_the_duration_and_balances_per_request(
        models: Models, start_scorer: Any) -> None:
    a = start_scorer({"model": models.ref("v1")}).wait_serving()
    b = start_scorer({"model": models.ref("v1")}).wait_serving()
    # ipv4: lists several addresses in one target, as DNS would for a headless Service.
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    result = load.run(target, rate=100, duration=3, concurrency=4)
    assert result.failed == 0, result.summary()
    assert 250 <= result.sent <= 300 + 4  # bounded: rate x duration (+1 per worker at most)
    assert 2.9 < result.seconds < 15  # stops on schedule (slack for a loaded machine)
    served = [s.metric("scorefleet_requests_total", code="OK") for s in (a, b)]
    assert sum(served) == result.sent
    assert min(served) >= 0.4 * result.sent  # per request, not per connection
    assert 0 < result.quantile_ms(0.5) <= result.quantile_ms(0.99) < 2000
    assert "RPC/s; codes: OK=" in result.summary()


def test_counts_rejected_requests_by_code(models: Models, start_scorer: Any) -> None:
    a = start_scorer({"model": models.ref("v1")}).wait_serving()
    # A deadline almost no RPC can meet (gRPC still lets the odd one through): the failures
    # are counted under their code, with the first few details kept.
    result = load.run(f"ipv4:127.0.0.1:{a.port}", rate=20, duration=1, concurrency=1,
                      timeout=0.000001)
    assert result.codes["DEADLINE_EXCEEDED"] >= 0.5 * result.sent > 0, result.codes
    assert result.failed == result.sent - result.codes["OK"]
    assert 0 < len(result.failures) <= 5  # the first few details, not all of them
    assert all(f.startswith("DEADLINE_EXCEEDED: ") for f in result.failures)


def test_rejects_unbounded_settings() -> None:
    with pytest.raises(ValueError):
        load.run("127.0.0.1:1", rate=0, duration=1)


def test_headless_target_names_the_cluster_dns_server() -> None:
    assert load.headless_target("phishing", "default", "10.150.0.1") == (
        "dns://10.150.0.1:53/phishing-headless.default.svc.cluster.local:9000")
