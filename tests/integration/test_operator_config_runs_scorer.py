"""The contract between operator and scorer: the config the operator renders into the track's
ConfigMap starts a real scorer that serves the pipeline's model with its threshold."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from scorefleet.operator.children import TrackPlan, plan_children
from scorefleet.scorer.protos import v1_pb2
from tests.operator.conftest import make_pipeline
from tests.scorer.scorer_process import Models


def rendered_config(models: Models, threshold: float) -> dict[str, Any]:
    ref = models.ref("v1")
    pipeline = make_pipeline({
        "model": {"name": "phishing", "version": "v1", "uri": ref["uri"],
                  "sha256": ref["sha256"], "threshold": threshold},
        "scorer": {"batching": {"maxBatchSize": 32, "maxQueueDelayUs": 500},
                   "drainDelay": "0s", "gracePeriod": "5s"},
    })
    plan = plan_children(pipeline, [TrackPlan("stable", pipeline.spec.model, 2)])
    (cm,) = [m for m in plan if m["kind"] == "ConfigMap"]
    config: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return config


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
