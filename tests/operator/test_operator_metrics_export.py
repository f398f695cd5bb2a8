"""Autoscaling decisions exported as the operator's own metrics (scorefleet/operator/metrics.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from scorefleet.operator.decide.autoscaling import decide_autoscaling
from scorefleet.operator.decide.scaling_inputs import ScalingReadings
from scorefleet.operator.metrics import OperatorMetrics
from tests.operator.test_autoscaling_wiring import dep, load, pipeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def value(m: OperatorMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, {"namespace": "fraud", "pipeline": "phish",
                                              "track": "stable", **labels})


def test_a_decision_is_exported_and_a_hold_says_so() -> None:
    m = OperatorMetrics()
    up = decide_autoscaling(pipeline(), dep(2), load(900, T0), None, T0)
    m.record("fraud", "phish", up)
    assert value(m, "scorefleet_operator_autoscaler_desired_replicas") == 6
    assert value(m, "scorefleet_operator_autoscaler_current_replicas") == 2
    assert value(m, "scorefleet_operator_autoscaler_demand_qps") == 900
    assert value(m, "scorefleet_operator_autoscaler_metrics_available") == 1
    assert value(m, "scorefleet_operator_autoscaler_scale_changes_total", direction="up") == 1
    assert value(m, "scorefleet_operator_autoscaler_decisions_total", reason="ScaleUp") == 1

    held = decide_autoscaling(pipeline(), dep(6), ScalingReadings(error="x"), None, T0)
    m.record("fraud", "phish", held)
    assert value(m, "scorefleet_operator_autoscaler_metrics_available") == 0
    assert value(m, "scorefleet_operator_autoscaler_demand_qps") is None  # not a made-up 0
    assert value(m, "scorefleet_operator_autoscaler_decisions_total", reason="NoMetrics") == 1
    assert value(m, "scorefleet_operator_autoscaler_scale_changes_total", direction="up") == 1

    m.forget("fraud", "phish")
    assert b'desired_replicas{' not in generate_latest(m.registry)


def test_a_reconcile_that_does_not_decide_exports_nothing() -> None:
    m = OperatorMetrics()
    m.record("fraud", "phish", decide_autoscaling(pipeline(), dep(2), None, None, T0))
    assert value(m, "scorefleet_operator_autoscaler_desired_replicas") is None
