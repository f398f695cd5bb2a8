"""The child plan is a pure function of the pipeline."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import ScorerConfig, model_revision
from scorefleet.operator import naming as n
from scorefleet.operator.decide.children import (
    Defaults,
    child_key,
    decide_children,
    parse_quantity,
    plan_children,
    scorer_workers,
)
from scorefleet.operator.decide.tracks import TrackPlan
from scorefleet.operator.decide.validity import InvalidSpec
from tests.operator.conftest import make_pipeline


def _plan(p: ScoringPipeline, replicas: int = 2) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    tracks = [TrackPlan(track="stable", model=p.spec.model, replicas=replicas)]
    return {child_key(m): m for m in plan_children(p, tracks)}


def test_stable_track_children(pipeline: ScoringPipeline) -> None:
    plan = _plan(pipeline)
    assert set(plan) == {("ConfigMap", "phish-stable"), ("Deployment", "phish-stable"),
                         ("Service", "phish"), ("Service", "phish-headless")}
    for m in plan.values():
        ref = m["metadata"]["ownerReferences"][0]
        assert ref == {"apiVersion": "scorefleet.io/v1alpha1", "kind": "ScoringPipeline",
                       "name": "phish", "uid": "uid-1", "controller": True,
                       "blockOwnerDeletion": True}
        assert m["metadata"]["namespace"] == "fraud"
        assert m["metadata"]["labels"][n.LABEL_PIPELINE] == "phish"


def test_deployment_runs_the_scorer_with_its_config(pipeline: ScoringPipeline) -> None:
    dep = _plan(pipeline, replicas=3)[("Deployment", "phish-stable")]
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"]["matchLabels"] == {n.LABEL_PIPELINE: "phish",
                                                      n.LABEL_TRACK: "stable"}
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"][n.LABEL_TRACK] == "stable"
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["--config", "/etc/scorefleet/config.yaml"]
    assert container["readinessProbe"]["grpc"]["port"] == 9000
    # Ready only once this very model is loaded: the probe asks for the model's own service,
    # and the template names the revision, so a new model is a new template.
    revision = model_revision(pipeline.spec.model)
    assert container["readinessProbe"]["grpc"]["service"] == f"scorefleet.model.{revision}"
    assert pod["metadata"]["annotations"][n.ANNOTATION_MODEL_REVISION] == revision
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == "phish-stable"
    # drain 5s + grace 20s + slack
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_config_map_holds_a_valid_scorer_config() -> None:
    p = make_pipeline({"scorer": {"batching": {"maxBatchSize": 128}, "drainDelay": "2s",
                                  "resources": {"requests": {"cpu": "1500m"}}}})
    cm = _plan(p)[("ConfigMap", "phish-stable")]
    config = ScorerConfig.model_validate(yaml.safe_load(cm["data"]["config.yaml"]))
    assert config.pipeline == "phish"
    assert config.track == "stable"
    assert config.model.version == "v1"
    assert config.model.threshold == 0.8
    assert config.batching.max_batch_size == 128
    assert config.drain_delay_seconds == 2.0
    assert config.workers == 2  # ceil(1.5 CPU)


def test_services_select_every_track() -> None:
    plan = _plan(make_pipeline())
    svc, headless = plan[("Service", "phish")], plan[("Service", "phish-headless")]
    assert svc["spec"]["selector"] == {n.LABEL_PIPELINE: "phish"}
    assert headless["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"][0]["appProtocol"] == "kubernetes.io/h2c"


def test_config_maps_come_before_deployments(pipeline: ScoringPipeline) -> None:
    kinds = [m["kind"] for m in plan_children(
        pipeline, [TrackPlan("stable", pipeline.spec.model, 2)])]
    assert kinds.index("ConfigMap") < kinds.index("Deployment")


def test_plan_is_deterministic(pipeline: ScoringPipeline) -> None:
    assert _plan(pipeline) == _plan(pipeline)


@pytest.mark.parametrize(("text", "value"), [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("1Gi", Decimal(2**30)),
    ("1.5", Decimal("1.5")), ("1e3", Decimal(1000)), ("100k", Decimal(100000)),
])
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@given(st.integers(min_value=1, max_value=64000))
def test_workers_follow_cpu_request(millicores: int) -> None:
    p = make_pipeline({"scorer": {"resources": {"requests": {"cpu": f"{millicores}m"}}}})
    assert scorer_workers(p) == -(-millicores // 1000)


@pytest.mark.parametrize("cpu", ["65", "1E", "1e18", "100k"])
def test_workers_stop_at_the_scorers_limit(cpu: str) -> None:
    p = make_pipeline({"scorer": {"resources": {"requests": {"cpu": cpu}}}})
    assert scorer_workers(p) == 64
    assert not isinstance(decide_children(p, (TrackPlan("stable", p.spec.model, 1),)),
                          InvalidSpec)


def test_a_quantity_the_pattern_admits_but_is_no_number_names_the_field() -> None:
    p = make_pipeline({"scorer": {"resources": {"requests": {"cpu": "1e1.5"}}}})
    out = decide_children(p, (TrackPlan("stable", p.spec.model, 1),))
    assert isinstance(out, InvalidSpec)
    assert out.field == "spec.scorer.resources.requests.cpu"


@pytest.mark.parametrize(("scorer", "field"), [
    ({"drainDelay": "10m"}, "spec.scorer.drainDelay"),
    ({"gracePeriod": "11m"}, "spec.scorer.gracePeriod"),
    ({"maxConnectionAge": "500ms"}, "spec.scorer.maxConnectionAge"),
])
def test_a_scorer_bound_the_crd_missed_is_reported_not_raised(scorer: dict[str, str],
                                                             field: str) -> None:
    """The CRD rejects these now (CEL); a pipeline stored before the rule still plans to a
    Degraded condition naming the field instead of a traceback every resync."""
    p = make_pipeline({"scorer": scorer})
    out = decide_children(p, (TrackPlan("stable", p.spec.model, 1),))
    assert isinstance(out, InvalidSpec)
    assert out.field == field


def test_explicit_workers_win() -> None:
    assert scorer_workers(make_pipeline({"scorer": {"workers": 3}})) == 3


def test_scorer_image_defaults_to_the_operators_unless_pinned() -> None:
    defaults = Defaults(scorer_image="registry.local/scorer:2.0", scorer_image_pull_policy="Always")
    p = make_pipeline()
    dep = next(m for m in plan_children(p, [TrackPlan("stable", p.spec.model, 1)], defaults)
               if m["kind"] == "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert (c["image"], c["imagePullPolicy"]) == ("registry.local/scorer:2.0", "Always")
    pinned = make_pipeline({"scorer": {"image": "mine:1", "imagePullPolicy": "Never"}})
    dep = next(m for m in plan_children(pinned, [TrackPlan("stable", p.spec.model, 1)],
                                        defaults) if m["kind"] == "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert (c["image"], c["imagePullPolicy"]) == ("mine:1", "Never")


@pytest.mark.parametrize(("spec", "field", "says"), [
    ({"source": {"kafka": {"bootstrapServers": ["k:9092"], "topic": "t",
                           "verdictTopic": "v", "deadLetterTopic": "d"}},
      "features": {"redis": {"address": "r:6379", "keyTemplate": "000", "features": ["f"]}}},
     "spec.features.redis", "keyTemplate"),
])
def test_stream_sections_the_crd_rules_missed_name_their_section(
        spec: dict[str, Any], field: str, says: str) -> None:
    """Found by the schema-generated property test: rules the CRD checks in CEL but the
    scorer config checks in a validator without a location."""
    p = make_pipeline(spec)
    out = decide_children(p, (TrackPlan("stable", p.spec.model, 1),))
    assert isinstance(out, InvalidSpec)
    assert (out.field, says in out.message) == (field, True), out
