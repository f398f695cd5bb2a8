"""Bounds shared by the CRD (schema and CEL) and the scorer's config file: one number each.

A bound that lived twice drifted once: `scorer.drainDelay: 10m` passed the CRD while the scorer
config refused anything above 300 s, so an admitted pipeline could not be planned. Both sides
now read the constants below, and `cel_*` renders them into the CRD's rules.
"""

from __future__ import annotations

from typing import Any

# Scorer lifecycle (seconds).
MAX_DRAIN_DELAY_SECONDS = 300
MAX_GRACE_PERIOD_SECONDS = 600
MIN_CONNECTION_AGE_SECONDS = 1
# Scorer processes and onnxruntime threads per pod.
MAX_WORKERS = 64
MAX_INTRA_OP_THREADS = 64
# Kafka stream: the longest a batch may take before the broker reassigns partitions.
MAX_POLL_INTERVAL_SECONDS = 86400


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One CEL validation rule as Kubernetes expects it in x-kubernetes-validations."""
    out: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def _seconds(value: float) -> str:
    return f"duration('{value:g}s')"


def cel_positive_duration(field: str, optional: bool = False) -> dict[str, Any]:
    """`field` (a Duration of the model carrying the rule) must be more than zero."""
    check = f"duration(self.{field}) > duration('0s')"
    rule = f"!has(self.{field}) || {check}" if optional else check
    return cel(rule, f"{field} must be more than 0s", f".{field}")


def cel_duration_at_most(field: str, seconds: float) -> dict[str, Any]:
    return cel(f"duration(self.{field}) <= {_seconds(seconds)}",
               f"{field} must be at most {seconds:g}s", f".{field}")


def cel_duration_at_least(field: str, seconds: float) -> dict[str, Any]:
    return cel(f"duration(self.{field}) >= {_seconds(seconds)}",
               f"{field} must be at least {seconds:g}s", f".{field}")
