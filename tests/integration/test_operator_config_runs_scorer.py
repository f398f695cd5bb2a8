"""The contract between operator and scorer: the config the operator renders into the track's
ConfigMap starts a real scorer that serves the pipeline's model with its threshold, and the
readiness probe the operator puts in the Deployment is SERVING only while that model is loaded."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from scorefleet.operator.decide.children import plan_children
from scorefleet.operator.decide.tracks import TrackPlan
from scorefleet.scorer.protos import v1_pb2
from tests.operator.conftest import make_pipeline
from tests.scorer.scorer_process import Models


def rendered(models: Models, threshold: float, version: str = "v1",
             ) -> tuple[dict[str, Any], str]:
    """The stable track's scorer config and its readiness probe's health service."""
    ref = models.ref(version)
    pipeline = make_pipeline({
        "model": {"name": "phishing", "version": version, "uri": ref["uri"],
                  "sha256": ref["sha256"], "threshold": threshold},
        "scorer": {"batching": {"maxBatchSize": 32, "maxQueueDelayUs": 500},
                   "drainDelay": "0s", "gracePeriod": "5s"},
    })
    plan = plan_children(pipeline, [TrackPlan("stable", pipeline.spec.model, 2)])
    (cm,) = [m for m in plan if m["kind"] == "ConfigMap"]
    (dep,) = [m for m in plan if m["kind"] == "Deployment"]
    config: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return config, str(container["readinessProbe"]["grpc"]["service"])


def rendered_config(models: Models, threshold: float) -> dict[str, Any]:
    return rendered(models, threshold)[0]


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_rendered_config_serves_the_model(models: Models, start_scorer: Any,
                                          threshold: float) -> None:
    config = rendered_config(models, threshold)
    assert config["track"] == "stable" and config["pipeline"] == "phish"
    scorer = start_scorer(config).wait_serving()
    n_features = 32
    reply = scorer.scorer.Score(
        v1_pb2.ScoreRequest(event=v1_pb2.Event(features=[0.5] * n_features, event_id="e1")),
        timeout=5)
    assert (reply.model_version, reply.track) == ("v1", "stable")
    assert reply.threshold == pytest.approx(threshold)
    assert 0.0 <= reply.score <= 1.0
    # threshold 0 makes every event positive, threshold 1 none (scores are < 1)
    assert reply.decision is (threshold == 0.0)


def test_readiness_probe_is_serving_only_with_its_model_loaded(models: Models,
                                                               start_scorer: Any) -> None:
    """What makes Deployment status proof that pods loaded their model: the probe's service is
    SERVING only while that very model is the scorer's primary."""
    v1, v1_probe = rendered(models, 0.5)
    broken, broken_probe = rendered(models, 0.5, "broken")
    v2, v2_probe = rendered(models, 0.5, "v2")
    scorer = start_scorer(v1).wait_serving()
    assert scorer.health_status(v1_probe) == "SERVING"
    assert scorer.health_status(v2_probe) is None  # unknown service: the probe fails
    # A config naming a model that fails to load: the scorer keeps serving v1 (its overall
    # health stays SERVING), but a pod whose probe asks for the new model is not Ready.
    scorer.update_config(model=broken["model"])
    scorer.wait_for("load failure counted", lambda: scorer.metric(
        "scorefleet_model_loads_total", role="primary", result="failure") >= 1)
    assert scorer.health_status() == "SERVING"
    assert scorer.health_status(broken_probe) is None
    assert scorer.health_status(v1_probe) == "SERVING"
    # A model that loads: its probe turns SERVING and the old one's stops.
    scorer.update_config(model=v2["model"])
    scorer.wait_for("v2 probe SERVING", lambda: scorer.health_status(v2_probe) == "SERVING")
    assert scorer.health_status(v1_probe) == "NOT_SERVING"
