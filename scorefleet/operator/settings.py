"""The operator's own settings, from its environment (the Helm chart sets them)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from scorefleet.api.spec import DEFAULT_SCORER_IMAGE
from scorefleet.api.status import TrackMetrics
from scorefleet.operator.decide.analysis import CanaryWindow, ShadowWindow, TrackWindow
from scorefleet.operator.decide.children import Defaults
from scorefleet.operator.decide.scaling_inputs import ScalingReadings
from scorefleet.operator.prometheus import Prometheus, PrometheusError, TrackSelector


class Measure(Protocol):
    """(namespace, pipeline, track; a stream pipeline?) -> the track's measurement for status
    (None when it could not be taken: the last one stays) and the autoscaler's readings (which
    say why when they could not be taken)."""

    def __call__(self, namespace: str, pipeline: str, track: str, stream: bool = False,
                 ) -> tuple[TrackMetrics | None, ScalingReadings]: ...


@dataclass(frozen=True)
class Analyst:
    """Measures analysis intervals from Prometheus; None answers when it cannot (logged)."""

    prom: Prometheus
    namespace_label: str
    logger: logging.Logger

    def _sel(self, namespace: str, pipeline: str, track: str) -> TrackSelector:
        extra = {self.namespace_label: namespace} if self.namespace_label else {}
        return TrackSelector(pipeline, track, extra)

    def _unobserved(self, seconds: float) -> float:
        """Seconds at the start of the interval ending now that Prometheus was not running."""
        started = self.prom.started_at()
        return 0.0 if started is None else max(0.0, started - (time.time() - seconds))

    def canary(self, namespace: str, pipeline: str, seconds: float) -> CanaryWindow | None:
        try:
            return CanaryWindow(
                stable=self.prom.track_window(self._sel(namespace, pipeline, "stable"), seconds),
                candidate=self.prom.track_window(self._sel(namespace, pipeline, "candidate"),
                                                 seconds),
                unobserved_seconds=self._unobserved(seconds))
        except PrometheusError as exc:
            self.logger.warning("could not analyse %s/%s: %s", namespace, pipeline, exc)
            return None

    def shadow(self, namespace: str, pipeline: str, primary_version: str,
               shadow_version: str, interval: float, since: float) -> ShadowWindow | None:
        try:
            window = self.prom.shadow_window(self._sel(namespace, pipeline, "stable"),
                                             primary_version, shadow_version, interval, since)
            return replace(window, unobserved_seconds=self._unobserved(interval))
        except PrometheusError as exc:
            self.logger.warning("could not analyse %s/%s: %s", namespace, pipeline, exc)
            return None


@dataclass(frozen=True)
class OperatorSettings:
    defaults: Defaults
    prometheus_url: str | None = None
    # The label Prometheus's Kubernetes discovery puts the pod's namespace in ("" = none, as
    # with a static scrape config).
    namespace_label: str = "namespace"
    metrics_window: str = "1m"
    # The autoscaler's panic window (its stable window is metrics_window).
    panic_window: str = "30s"
    resync_seconds: float = 30.0
    # How often the autoscaler decides (each decision is a measuring reconcile), as HPA's loop.
    autoscale_seconds: float = 15.0
    # Operator metrics (autoscaling decisions) served on this port; None = not served.
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"

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
            panic_window=env.get("SCOREFLEET_PANIC_WINDOW") or "30s",
            autoscale_seconds=float(env.get("SCOREFLEET_AUTOSCALE_SECONDS") or 15),
            metrics_port=int(env["SCOREFLEET_OPERATOR_METRICS_PORT"])
            if env.get("SCOREFLEET_OPERATOR_METRICS_PORT") else None,
            metrics_address=env.get("SCOREFLEET_OPERATOR_METRICS_ADDRESS") or "127.0.0.1",
        )

    @property
    def pass_seconds(self) -> float:
        """The periodic pass's period: the autoscaler's when there is Prometheus to decide
        from (or the resync's, if shorter), else the resync's."""
        if self.prometheus_url:
            return min(self.resync_seconds, self.autoscale_seconds)
        return self.resync_seconds

    def measure(self, logger: logging.Logger) -> Measure | None:
        """A measuring function over Prometheus, or None when no Prometheus is configured."""
        if not self.prometheus_url:
            return None
        prom = Prometheus(self.prometheus_url)

        def measure(namespace: str, pipeline: str, track: str, stream: bool = False,
                    ) -> tuple[TrackMetrics | None, ScalingReadings]:
            extra = {self.namespace_label: namespace} if self.namespace_label else {}
            try:
                return prom.scaling_readings(TrackSelector(pipeline, track, extra),
                                             self.metrics_window, self.panic_window, stream)
            except PrometheusError as exc:
                # Keep the last measurement rather than write a made-up one; the autoscaler
                # holds and says why.
                logger.warning("could not measure %s/%s %s: %s", namespace, pipeline, track, exc)
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
                return None, ScalingReadings(error=f"{prom.url} ({cause})")

        return measure

    def analyst(self, logger: logging.Logger) -> Analyst | NoMetrics:
        """Rollout analysis over Prometheus; without one, every interval measures no data, so
        a rollout is judged Inconclusive and pauses rather than advance unjudged."""
        if not self.prometheus_url:
            return NoMetrics()
        return Analyst(Prometheus(self.prometheus_url), self.namespace_label, logger)


class NoMetrics:
    """No Prometheus configured: intervals have no data (never zeros)."""

    def canary(self, namespace: str, pipeline: str, seconds: float) -> CanaryWindow:
        return CanaryWindow(stable=TrackWindow(None, None, None),
                            candidate=TrackWindow(None, None, None))

    def shadow(self, namespace: str, pipeline: str, primary_version: str,
               shadow_version: str, interval: float, since: float) -> ShadowWindow:
        return ShadowWindow(interval_pairs=None, outcomes={}, stable_scores=(),
                            candidate_scores=())
