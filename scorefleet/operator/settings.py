"""The operator's own settings, from its environment (the Helm chart sets them)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scorefleet.api.spec import DEFAULT_SCORER_IMAGE
from scorefleet.api.status import TrackMetrics
from scorefleet.operator.decide.children import Defaults
from scorefleet.operator.prometheus import Prometheus, PrometheusError, TrackSelector

# (namespace, pipeline, track) -> the track's measurement, or None when it could not be taken.
Measure = Callable[[str, str, str], TrackMetrics | None]


@dataclass(frozen=True)
class OperatorSettings:
    defaults: Defaults
    prometheus_url: str | None = None
    # The label Prometheus's Kubernetes discovery puts the pod's namespace in ("" = none, as
    # with a static scrape config).
    namespace_label: str = "namespace"
    metrics_window: str = "1m"
    resync_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorSettings:
        return cls(
            defaults=Defaults(
                scorer_image=env.get("SCOREFLEET_SCORER_IMAGE") or DEFAULT_SCORER_IMAGE,
                scorer_image_pull_policy=env.get("SCOREFLEET_SCORER_IMAGE_PULL_POLICY")
                or "IfNotPresent"),
            prometheus_url=env.get("SCOREFLEET_PROMETHEUS_URL") or None,
            namespace_label=env.get("SCOREFLEET_PROMETHEUS_NAMESPACE_LABEL", "namespace"),
            metrics_window=env.get("SCOREFLEET_METRICS_WINDOW") or "1m",
            resync_seconds=float(env.get("SCOREFLEET_RESYNC_SECONDS") or 30),
        )

    def measure(self, logger: logging.Logger) -> Measure | None:
        """A measuring function over Prometheus, or None when no Prometheus is configured."""
        if not self.prometheus_url:
            return None
        prom = Prometheus(self.prometheus_url)

        def measure(namespace: str, pipeline: str, track: str) -> TrackMetrics | None:
            extra = {self.namespace_label: namespace} if self.namespace_label else {}
            try:
                return prom.track_metrics(TrackSelector(pipeline, track, extra),
                                          self.metrics_window)
            except PrometheusError as exc:
                # Keep the last measurement rather than write a made-up one.
                logger.warning("could not measure %s/%s %s: %s", namespace, pipeline, track, exc)
                return None

        return measure
