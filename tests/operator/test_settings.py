"""The operator's settings come from its environment, with safe defaults."""

from __future__ import annotations

import logging

from scorefleet.api.spec import DEFAULT_SCORER_IMAGE
from scorefleet.operator.settings import OperatorSettings


def test_defaults_without_environment() -> None:
    s = OperatorSettings.from_env({})
    assert s.defaults.scorer_image == DEFAULT_SCORER_IMAGE
    assert s.prometheus_url is None
    assert s.resync_seconds == 30.0
    assert (s.autoscale_seconds, s.panic_window, s.metrics_port) == (15.0, "30s", None)
    assert s.pass_seconds == 30.0  # no Prometheus: nothing to decide from, the resync's period
    assert s.measure(logging.getLogger("t")) is None  # no Prometheus: nothing is measured


def test_environment_overrides() -> None:
    s = OperatorSettings.from_env({
        "SCOREFLEET_SCORER_IMAGE": "reg/scorer:2", "SCOREFLEET_PROMETHEUS_URL": "http://p:9090",
        "SCOREFLEET_PROMETHEUS_NAMESPACE_LABEL": "", "SCOREFLEET_RESYNC_SECONDS": "5",
        "SCOREFLEET_METRICS_WINDOW": "2m"})
    assert (s.defaults.scorer_image, s.prometheus_url, s.namespace_label, s.resync_seconds,
            s.metrics_window) == ("reg/scorer:2", "http://p:9090", "", 5.0, "2m")
    assert s.measure(logging.getLogger("t")) is not None
    assert s.pass_seconds == 5.0  # the resync is shorter than the autoscaler's 15 s


def test_autoscaler_settings() -> None:
    s = OperatorSettings.from_env({
        "SCOREFLEET_PROMETHEUS_URL": "http://p:9090", "SCOREFLEET_AUTOSCALE_SECONDS": "2",
        "SCOREFLEET_PANIC_WINDOW": "5s", "SCOREFLEET_OPERATOR_METRICS_PORT": "9102"})
    assert (s.pass_seconds, s.panic_window, s.metrics_port, s.metrics_address) == (
        2.0, "5s", 9102, "127.0.0.1")
