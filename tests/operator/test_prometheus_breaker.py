"""Prometheus down must not stall the operator's loop: one failed request, then every query
fails at once until the cool-down has passed (no network, no retry back-off)."""

from __future__ import annotations

import socket
import time

import pytest

from scorefleet.operator.prometheus import Prometheus, PrometheusError


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on exit: connections are refused


def test_unreachable_prometheus_fails_fast_then_cools_down() -> None:
    now = [100.0]
    prom = Prometheus(f"http://127.0.0.1:{closed_port()}", timeout=2, cooldown=5,
                      clock=lambda: now[0])
    started = time.monotonic()
    with pytest.raises(PrometheusError, match="Connection"):
        prom.scalar("up")
    assert time.monotonic() - started < 2  # refused at once: no retry back-off
    with pytest.raises(PrometheusError, match="unavailable") as info:
        prom.scalar("up")
    assert info.value.__cause__ is not None  # the original failure, for the log
    now[0] += 5.1
    with pytest.raises(PrometheusError, match="Connection"):  # asks again after the cool-down
        prom.vector("up", "job")
