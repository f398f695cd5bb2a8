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
    assert s.measure(logging.getLogger("t")) is None  # no Prometheus: nothing is measured


def test_environment_overrides() -> None:
    s = OperatorSettings.from_env({
        "SCOREFLEET_SCORER_IMAGE": "reg/scorer:2", "SCOREFLEET_PROMETHEUS_URL": "http://p:9090",
        "SCOREFLEET_PROMETHEUS_NAMESPACE_LABEL": "", "SCOREFLEET_RESYNC_SECONDS": "5",
        "SCOREFLEET_METRICS_WINDOW": "2m"})
    assert (s.defaults.scorer_image, s.prometheus_url, s.namespace_label, s.resync_seconds,
            s.metrics_window) == ("reg/scorer:2", "http://p:9090", "", 5.0, "2m")
    assert s.measure(logging.getLogger("t")) is not None
