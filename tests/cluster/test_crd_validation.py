"""The API server itself rejects bad pipelines (OpenAPI schema + CEL), naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from scorefleet.operator.kube import Kube, KubeError

pytestmark = pytest.mark.cluster

BASE: dict[str, Any] = {
    "apiVersion": "scorefleet.io/v1alpha1",
    "kind": "ScoringPipeline",
    "metadata": {"name": "phish"},
    "spec": {"model": {"name": "phishing", "version": "v1", "uri": "file:///m/v1.onnx"}},
}


def create(kube: Kube, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
    return kube._call("POST", f"/apis/scorefleet.io/v1alpha1/namespaces/{namespace}/"
                              "scoringpipelines", body=body)


def with_spec(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    node = body
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(leaf)
    else:
        node[leaf] = value
    return body


_DELETE = object()

INVALID = [
    # (path to set, value, text the API server's message must contain)
    ("spec.scaling", {"minReplicas": 5, "maxReplicas": 2}, "spec.scaling.minReplicas"),
    ("spec.rollout.canary", {"steps": [{"weight": 50, "pause": "1m"}, {"weight": 20}]},
     "spec.rollout.canary.steps"),
    ("spec.rollout.canary", {"steps": [{"weight": 10}, {"weight": 10}]},
     "spec.rollout.canary.steps"),
    ("spec.rollout.canary", {"steps": [{"weight": 10, "pause": "1m", "manualGate": True}]},
     "spec.rollout.canary.steps[0].manualGate"),
    ("spec.rollout.router", {"type": "GRPCRoute"}, "spec.rollout.router.grpcRoute"),
    ("spec.rollout.router", {"type": "GRPCRoute", "grpcRoute": {"parentRefs": []}},
     "spec.rollout.router.grpcRoute.parentRefs"),
    ("spec.scorer", {"port": 9000, "metricsPort": 9000}, "spec.scorer.metricsPort"),
    ("spec.scorer", {"batching": {"maxBatchSize": 4096, "maxQueueSize": 64}},
     "spec.scorer.batching.maxBatchSize"),
    ("spec.model.threshold", 1.5, "spec.model.threshold"),
    ("spec.model.uri", "s3://bucket/model.onnx", "spec.model.uri"),
    ("spec.model.sha256", "not-a-digest", "spec.model.sha256"),
    ("spec.model.format", "pickle", "spec.model.format"),
    ("spec.model", _DELETE, "spec.model"),
    ("spec.rollout.strategy", "BlueGreen", "spec.rollout.strategy"),
    ("spec.slo", {"p99Latency": "fast"}, "spec.slo.p99Latency"),
    ("spec.slo", {"p99Latency": "0s"}, "spec.slo.p99Latency"),
    ("spec.slo", {"maxErrorRate": 2}, "spec.slo.maxErrorRate"),
    ("spec.rollout.shadow", {"sampleRate": 0}, "spec.rollout.shadow.sampleRate"),
    ("spec.rollout.canary", {"steps": [{"weight": 0}]}, "spec.rollout.canary.steps[0].weight"),
    ("spec.scorer", {"resources": {"requests": {"cpu": "lots"}}},
     "spec.scorer.resources.requests"),
    ("spec.scorer", {"env": [{"name": "1BAD"}]}, "spec.scorer.env[0].name"),
    # Bounds the scorer's config shares (scorefleet.api.bounds), and durations where zero
    # means nothing.
    ("spec.scorer", {"drainDelay": "10m"}, "spec.scorer.drainDelay"),
    ("spec.scorer", {"gracePeriod": "601s"}, "spec.scorer.gracePeriod"),
    ("spec.scorer", {"maxConnectionAge": "0s"}, "spec.scorer.maxConnectionAge"),
    ("spec.rollout.analysis", {"interval": "0s"}, "spec.rollout.analysis.interval"),
    ("spec.rollout.analysis", {"maxP99Latency": "0ms"}, "spec.rollout.analysis.maxP99Latency"),
    ("spec.rollout.canary", {"steps": [{"weight": 10, "pause": "0s"}]},
     "spec.rollout.canary.steps[0].pause"),
    ("spec.source", {"kafka": {"bootstrapServers": ["k:9092"], "topic": "t", "verdictTopic": "v",
                               "deadLetterTopic": "d", "maxPollInterval": "25h"}},
     "spec.source.kafka.maxPollInterval"),
    ("metadata.name", "x" * 51, "metadata.name"),
    ("metadata.name", "9lives", "metadata.name"),
]


@pytest.mark.parametrize(("path", "value", "names"), INVALID,
                         ids=[f"{p}={str(v)[:30]}" for p, v, _ in INVALID])
def test_invalid_pipeline_is_rejected_naming_the_field(
        kube: Kube, namespace: str, path: str, value: Any, names: str) -> None:
    with pytest.raises(KubeError) as err:
        create(kube, namespace, with_spec(path, value))
    assert err.value.status == 422, err.value
    assert names in str(err.value), str(err.value)


def test_valid_minimal_pipeline_gets_server_side_defaults(kube: Kube, namespace: str) -> None:
    created = create(kube, namespace, copy.deepcopy(BASE))
    assert created is not None
    spec = created["spec"]
    assert spec["scaling"]["minReplicas"] == 2
    assert spec["scorer"]["batching"]["maxBatchSize"] == 256
    assert spec["scorer"]["resources"]["requests"]["cpu"] == "1"
    assert [s["weight"] for s in spec["rollout"]["canary"]["steps"]] == [5, 25, 50]
    assert spec["rollout"]["router"]["type"] == "Replicas"
    assert spec["model"]["threshold"] == 0.5


def test_bounds_are_inclusive(kube: Kube, namespace: str) -> None:
    """The limits themselves are admitted, and the scorer config accepts what they render."""
    body = with_spec("spec.scorer", {"drainDelay": "5m", "gracePeriod": "10m",
                                     "maxConnectionAge": "1s"})
    body["spec"]["rollout"] = {"analysis": {"interval": "1s", "maxP99Latency": "1ms"},
                               "canary": {"steps": [{"weight": 10, "pause": "1s"}]}}
    created = create(kube, namespace, body)
    assert created is not None
    assert created["spec"]["scorer"]["drainDelay"] == "5m"


def test_unknown_fields_are_pruned_not_stored(kube: Kube, namespace: str) -> None:
    body = with_spec("spec.surprise", {"x": 1})
    created = create(kube, namespace, body)
    assert created is not None and "surprise" not in created["spec"]
