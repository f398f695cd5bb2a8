"""The Kubernetes HPA's algorithm, as in kube-controller-manager (pkg/controller/podautoscaler).

* Resource (CPU) metric, `replica_calculator.go` GetResourceReplicas: usage ratio = mean
  utilisation of ready pods / target; within the 10 % tolerance -> keep; when scaling up with
  not-yet-ready pods, those count as 0 % and the ratio is recomputed (no scale if it then falls
  within tolerance or flips direction); desired = ceil(ratio x pods with metrics).
* External metric with AverageValue (what KEDA's Prometheus scaler creates),
  GetExternalPerPodMetricReplicas: ratio = value / (target x current replicas); within
  tolerance -> keep; desired = ceil(value / target).
* Behaviour (`horizontal.go` normalizeDesiredReplicasWithBehaviors), defaults: scale-up window
  0 s, policies +100 % or +4 pods per 15 s (selectPolicy Max); scale-down window 300 s, -100 %
  per 15 s. Stabilization: up to the lowest, down to the highest recommendation in the window.
  Rate limits count replicas added/removed by this HPA within the policy period.
* The loop runs every 15 s (--horizontal-pod-autoscaler-sync-period).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TOLERANCE = 0.1


def resource_replicas(current: int, ready: int, unready: int, utilization: float,
                      target: float) -> int:
    ratio = utilization / target
    if not (unready > 0 and ratio > 1.0):
        if abs(1.0 - ratio) <= TOLERANCE:
            return current
        return math.ceil(ratio * ready)
    new_ratio = utilization * ready / (target * (ready + unready))
    if abs(1.0 - new_ratio) <= TOLERANCE or (ratio > 1.0) != (new_ratio > 1.0):
        return current
    new = math.ceil(new_ratio * (ready + unready))
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return current
    return new


def external_average_value_replicas(current: int, value: float, target: float) -> int:
    ratio = value / (target * current) if current else math.inf
    if abs(1.0 - ratio) <= TOLERANCE:
        return current
    return math.ceil(value / target)


@dataclass
class Behavior:
    min_replicas: int
    max_replicas: int
    up_window_s: float = 0.0
    up_pods: int = 4
    up_percent: float = 100.0
    down_window_s: float = 300.0
    down_percent: float = 100.0
    period_s: float = 15.0
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, +added/-removed)

    def normalize(self, now: float, current: int, proposed: int) -> int:
        older = [r for r in self.recommendations if r[0] < now]
        up = min([proposed, *(n for t, n in older if t > now - self.up_window_s)])
        down = max([proposed, *(n for t, n in older if t > now - self.down_window_s)])
        keep = max(self.up_window_s, self.down_window_s)
        self.recommendations = [r for r in older if r[0] > now - keep] + [(now, proposed)]
        desired = current
        if desired < up:
            desired = up
        if desired > down:
            desired = down
        recent = [d for t, d in self.events if t > now - self.period_s]
        if desired > current:
            start = current - sum(d for d in recent if d > 0)  # replicas at the period's start
            limit = max(start + self.up_pods, math.ceil(start * (1 + self.up_percent / 100)))
            desired = min(desired, limit)
        elif desired < current:
            start = current - sum(d for d in recent if d < 0)
            desired = max(desired, math.floor(start * (1 - self.down_percent / 100)))
        desired = min(max(desired, self.min_replicas), self.max_replicas)
        if desired != current:
            self.events = [e for e in self.events if e[0] > now - self.period_s]
            self.events.append((now, desired - current))
        return desired
