"""PromQL built for a track: right selectors, escaped values, no data is None."""

from __future__ import annotations

from scorefleet.operator.prometheus import TrackSelector, queries


def test_queries_select_one_track_only() -> None:
    q = queries(TrackSelector("mail-phish", "candidate", {"namespace": "fraud"}), "2m")
    selector = '{pipeline="mail-phish",track="candidate",namespace="fraud"'
    assert all(selector in text for text in q.values())
    assert "[2m]" in q["qps"]
    assert q["p99_latency_ms"].startswith("1000 * histogram_quantile(0.99, sum by (le)")
    assert "scorefleet_request_duration_seconds_bucket" in q["p99_latency_ms"]


def test_caller_errors_are_not_server_errors() -> None:
    errors = queries(TrackSelector("p", "stable"), "1m")["error_rate"]
    assert "INTERNAL" in errors and "RESOURCE_EXHAUSTED" in errors
    assert "INVALID_ARGUMENT" not in errors and "NOT_FOUND" not in errors
    assert "CANCELLED" not in errors


def test_label_values_are_escaped() -> None:
    sel = TrackSelector('we"ird\\', "stable")
    assert sel.matchers() == '{pipeline="we\\"ird\\\\",track="stable"}'
