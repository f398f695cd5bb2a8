"""A body the operator cannot plan becomes an InvalidSpec naming the field."""

from __future__ import annotations

from typing import Any

from scorefleet.operator.decide.validity import (
    InvalidSpec,
    field_path,
    last_status,
    parse_pipeline,
)


def body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": spec, "status": status or {}}


MODEL = {"name": "m", "version": "v1", "uri": "file:///m.onnx"}


def test_field_path_reads_like_the_spec() -> None:
    assert field_path(("spec", "rollout", "canary", "steps", 0, "weight")) == (
        "spec.rollout.canary.steps[0].weight")


def test_a_bad_field_is_named() -> None:
    out = parse_pipeline(body({"model": MODEL, "scaling": {"minReplicas": 0}}))
    assert isinstance(out, InvalidSpec)
    assert out.field == "spec.scaling.minReplicas"
    assert out.text.startswith("spec.scaling.minReplicas: ")
    missing = parse_pipeline(body({}))
    assert isinstance(missing, InvalidSpec) and missing.field == "spec.model"


def test_a_good_body_parses() -> None:
    assert not isinstance(parse_pipeline(body({"model": MODEL})), InvalidSpec)


def test_an_unreadable_status_reads_as_empty_and_kopfs_is_dropped() -> None:
    assert last_status(body({}, {"phase": "Nonsense"})).phase == "Pending"
    assert last_status(body({}, {"phase": "Ready", "kopf": {"x": 1}})).phase == "Ready"
