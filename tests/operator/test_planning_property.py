"""Any pipeline the CRD's own schema admits is planned, or ends Degraded naming the field.

Pipelines are generated from the OpenAPI schema in the generated CRD (the very text the API
server validates against), not from the pydantic models, so a bound the models enforce but the
schema does not is found here. CEL rules are not evaluated by the generator: pipelines that
break them are generated too, which is stricter than the API server (a pipeline stored before a
rule existed must not crash the operator either).

The generator is `schema_strategy` below, not hypothesis-jsonschema: its 0.23.1 (the latest)
fails with the Hypothesis this project runs (6.170: `'many' object has no attribute 'more'`).
The CRD uses few keywords (type, properties, required, items, additionalProperties, enum,
pattern, min/max, lengths, anyOf for int-or-string), and a keyword it does not know fails the
test rather than being skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorefleet.api import crd
from scorefleet.operator.decide.children import decide_children
from scorefleet.operator.decide.observed import Observed
from scorefleet.operator.decide.status import StatusInputs, decide_invalid_status, decide_status
from scorefleet.operator.decide.tracks import plan_tracks
from scorefleet.operator.decide.validity import InvalidSpec, last_status, parse_pipeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


_KNOWN = {"type", "properties", "required", "items", "additionalProperties", "enum",
          "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
          "minLength", "maxLength", "minItems", "maxItems", "maxProperties", "anyOf",
          "default", "description"}


def schema_strategy(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid against one node of a Kubernetes structural (OpenAPI v3.0) schema."""
    unknown = {k for k in node if not k.startswith("x-kubernetes-")} - _KNOWN
    assert not unknown, f"the generator does not know {unknown}"
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "anyOf" in node:  # int-or-string: the pattern applies to the string branch
        string = {k: v for k, v in node.items() if k not in ("anyOf",)} | {"type": "string"}
        return st.one_of(st.integers(0, 10**6), schema_strategy(string))
    kind = node.get("type")
    if kind == "object":
        if "properties" not in node:
            values = schema_strategy(node.get("additionalProperties") or {"type": "string"})
            keys = st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True)
            return st.dictionaries(keys, values, max_size=min(node.get("maxProperties", 4), 4))
        required = set(node.get("required", []))
        props = node["properties"]
        return st.fixed_dictionaries(
            {k: schema_strategy(v) for k, v in props.items() if k in required},
            optional={k: schema_strategy(v) for k, v in props.items() if k not in required})
    if kind == "array":
        return st.lists(schema_strategy(node["items"]), min_size=node.get("minItems", 0),
                        max_size=min(node.get("maxItems", 5), 5))
    if kind == "string":
        lo, hi = node.get("minLength", 0), node.get("maxLength", 64)
        if "pattern" in node:
            # fullmatch: the API server's RE2 `$` matches only at the very end, while
            # Python's also matches before a final newline.
            pattern = st.from_regex(node["pattern"], fullmatch=True)
            return pattern.filter(lambda s: lo <= len(s) <= hi)
        return st.text(min_size=lo, max_size=min(hi, 64))
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        low, high = node.get("minimum"), node.get("maximum")
        if kind == "integer":
            return st.integers(low, high)
        return st.floats(low, high, exclude_min=bool(node.get("exclusiveMinimum")),
                         exclude_max=bool(node.get("exclusiveMaximum")),
                         allow_nan=False, allow_infinity=False)
    raise AssertionError(f"the generator does not know type {kind!r}")


SPEC_SCHEMA: dict[str, Any] = (
    crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


def body(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "scorefleet.io/v1alpha1", "kind": "ScoringPipeline",
            "metadata": {"name": "gen", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": spec}


@given(schema_strategy(SPEC_SCHEMA["properties"]["rollout"]["properties"]["shadow"]))
def test_the_generator_keeps_the_bounds(shadow: dict[str, Any]) -> None:
    assert 0 < shadow.get("sampleRate", 1) <= 1
    assert 1 <= shadow.get("minSamples", 1) <= 1_000_000_000


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(schema_strategy(SPEC_SCHEMA))
def test_every_admitted_pipeline_is_planned_or_degraded_naming_the_field(
        spec: dict[str, Any]) -> None:
    raw = body(spec)
    parsed = parse_pipeline(raw)
    outcome: list[Any] | InvalidSpec
    if isinstance(parsed, InvalidSpec):
        outcome = parsed
    else:
        tracks = plan_tracks(parsed)
        outcome = decide_children(parsed, tracks.tracks)
        if not isinstance(outcome, InvalidSpec):
            assert {m["kind"] for m in outcome} == {"ConfigMap", "Deployment", "Service"}
            status, _ = decide_status(StatusInputs(parsed, tracks,
                                                   Observed(MappingProxyType({})), T0))
            assert status.phase == "Pending"
            return
    assert outcome.field.startswith(("spec.", "metadata.")), outcome
    status, _ = decide_invalid_status(last_status(raw), 1, outcome, T0)
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert (status.phase, degraded.status, degraded.reason) == ("Degraded", "True",
                                                                "InvalidSpec")
    assert outcome.field in degraded.message
