"""The pydantic models accept what users write and refuse what they must not."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from scorefleet.api.common import duration_seconds
from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.spec import PipelineSpec

MODEL = {"name": "phishing", "version": "v1", "uri": "file:///models/v1.onnx"}


def test_minimal_spec_gets_defaults() -> None:
    spec = PipelineSpec.model_validate({"model": MODEL})
    assert spec.scaling.min_replicas == 2
    assert spec.rollout.strategy == "Canary"
    assert [s.weight for s in spec.rollout.canary.steps] == [5, 25, 50]
    assert spec.scorer.batching.enabled


def test_wire_round_trip_uses_camel_case() -> None:
    spec = PipelineSpec.model_validate({"model": MODEL, "scaling": {"targetQPSPerReplica": 900}})
    wire = spec.wire()
    assert wire["scaling"]["targetQPSPerReplica"] == 900
    assert "minReplicas" in wire["scaling"]
    assert PipelineSpec.model_validate(wire) == spec


@pytest.mark.parametrize("patch", [
    {"model": {**MODEL, "threshold": 1.5}},
    {"model": {**MODEL, "uri": "s3://bucket/m.onnx"}},
    {"model": {**MODEL, "sha256": "XYZ"}},
    {"scaling": {"minReplicas": 0}},
    {"slo": {"p99Latency": "fast"}},
    {"rollout": {"strategy": "BlueGreen"}},
    {"scorer": {"port": 80}},
    {"unknownField": 1},
])
def test_invalid_values_name_the_field(patch: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as err:
        PipelineSpec.model_validate({"model": MODEL, **patch})
    field = next(iter(patch))
    assert field in str(err.value)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1.5s", 1.5),
])
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@given(st.text(max_size=12))
def test_duration_rejects_garbage_or_parses(text: str) -> None:
    try:
        value = duration_seconds(text)
    except ValueError:
        return
    assert value >= 0


def test_from_body_ignores_kopf_status() -> None:
    body = {"apiVersion": "scorefleet.io/v1alpha1", "kind": "ScoringPipeline",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "generation": 3},
            "spec": {"model": MODEL}, "status": {"kopf": {"progress": {}}, "phase": "Ready"}}
    pipeline = ScoringPipeline.from_body(body)
    assert pipeline.status.phase == "Ready"
    assert pipeline.metadata.generation == 3
