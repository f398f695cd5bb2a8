"""The real API server validates spec.source.kafka and spec.features.redis (schema + CEL),
naming the field, applies their defaults, and `kubectl explain` documents them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from scorefleet.operator.kube import Kube, KubeError
from tests.conftest import kubectl

pytestmark = pytest.mark.cluster

KAFKA = {"bootstrapServers": ["kafka:9092"], "topic": "events", "verdictTopic": "verdicts",
         "deadLetterTopic": "dead"}
REDIS = {"address": "redis:6379", "keyTemplate": "sender:{sender}", "features": ["a", "b"]}


def body(source: dict[str, Any] | None = None, features: dict[str, Any] | None = None,
         ) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"name": "phishing", "version": "v1",
                                      "uri": "file:///m/v1.onnx"}}
    if source is not None:
        spec["source"] = {"kafka": source}
    if features is not None:
        spec["features"] = {"redis": features}
    return {"apiVersion": "scorefleet.io/v1alpha1", "kind": "ScoringPipeline",
            "metadata": {"name": "stream"}, "spec": copy.deepcopy(spec)}


def with_slo(obj: dict[str, Any], **slo: Any) -> dict[str, Any]:
    obj["spec"]["slo"] = slo
    return obj


def create(kube: Kube, namespace: str, obj: dict[str, Any]) -> dict[str, Any] | None:
    return kube._call("POST", f"/apis/scorefleet.io/v1alpha1/namespaces/{namespace}/"
                              "scoringpipelines", body=obj)


INVALID = [
    (body({**KAFKA, "verdictTopic": "events"}), "spec.source.kafka.verdictTopic"),
    (body({**KAFKA, "topic": "bad topic"}), "spec.source.kafka.topic"),
    (body({**KAFKA, "bootstrapServers": []}), "spec.source.kafka.bootstrapServers"),
    (body({**KAFKA, "bootstrapServers": ["no-port"]}), "spec.source.kafka.bootstrapServers[0]"),
    (body({**KAFKA, "securityProtocol": "SASL_SSL"}), "spec.source.kafka.credentialsSecret"),
    (body({**KAFKA, "credentialsSecret": {"name": "s"}}), "spec.source.kafka.credentialsSecret"),
    (body({**KAFKA, "sessionTimeout": "1s"}), "spec.source.kafka.sessionTimeout"),
    (body({**KAFKA, "sessionTimeout": "2m", "maxPollInterval": "1m"}),
     "spec.source.kafka.maxPollInterval"),
    (body({**KAFKA, "maxBatchSize": 0}), "spec.source.kafka.maxBatchSize"),
    (body({**KAFKA, "maxBatchWait": "1m"}), "spec.source.kafka.maxBatchWait"),
    (body(KAFKA, {**REDIS, "keyTemplate": "sender"}), "spec.features.redis.keyTemplate"),
    (body(KAFKA, {**REDIS, "keyTemplate": "{a}{b}"}), "spec.features.redis.keyTemplate"),
    (body(KAFKA, {**REDIS, "features": ["a", "a"]}), "spec.features.redis.features[1]"),
    (body(KAFKA, {**REDIS, "defaults": [1.0]}), "spec.features.redis.defaults"),
    (body(KAFKA, {**REDIS, "timeout": "0s"}), "spec.features.redis.timeout"),
    (body(KAFKA, {**REDIS, "onMiss": "Drop"}), "spec.features.redis.onMiss"),
    (body(KAFKA, {**REDIS, "maxStaleness": "0s"}), "spec.features.redis.maxStaleness"),
    (with_slo(body(KAFKA), endToEndP99Latency="0s"), "spec.slo.endToEndP99Latency"),
    # An end-to-end target on a pipeline without a stream would be a promise never kept.
    (with_slo(body(None, REDIS), endToEndP99Latency="1s"), "spec.slo.endToEndP99Latency"),
]


@pytest.mark.parametrize(("obj", "names"), INVALID, ids=[n for _, n in INVALID])
def test_invalid_stream_pipeline_is_rejected_naming_the_field(
        kube: Kube, namespace: str, obj: dict[str, Any], names: str) -> None:
    with pytest.raises(KubeError) as err:
        create(kube, namespace, obj)
    assert err.value.status == 422, err.value
    assert names in str(err.value), str(err.value)


def test_valid_stream_pipeline_gets_defaults(kube: Kube, namespace: str) -> None:
    created = create(kube, namespace, body(
        {**KAFKA, "securityProtocol": "SASL_PLAINTEXT", "credentialsSecret": {"name": "k"}},
        REDIS))
    assert created is not None
    kafka = created["spec"]["source"]["kafka"]
    assert (kafka["maxBatchSize"], kafka["maxBatchWait"], kafka["sessionTimeout"]) == (
        500, "20ms", "10s")
    assert kafka["eventIdField"] == "id" and kafka["saslMechanism"] == "SCRAM-SHA-512"
    redis = created["spec"]["features"]["redis"]
    assert (redis["onMiss"], redis["timeout"], redis["timestampField"]) == (
        "Defaults", "50ms", "_ts")
    assert "maxStaleness" not in redis


def test_online_features_without_a_stream_are_accepted(kube: Kube, namespace: str) -> None:
    """gRPC requests carrying entity keys read them (docs/streaming.md)."""
    created = create(kube, namespace, body(None, REDIS))
    assert created is not None and "source" not in created["spec"]
    assert created["spec"]["features"]["redis"]["onMiss"] == "Defaults"


@pytest.mark.parametrize(("path", "text"), [
    ("scoringpipelines.spec.source.kafka.deadLetterTopic", "scorefleet.reason"),
    ("scoringpipelines.spec.source.kafka.consumerGroup", "scorefleet.<namespace>.<pipeline"),
    ("scoringpipelines.spec.features.redis.onMiss", "featuresMissing"),
    ("scoringpipelines.spec.features.redis.keyTemplate", "sender:{sender}"),
    ("scoringpipelines.spec.slo.endToEndP99Latency", "verdict acknowledged"),
])
def test_kubectl_explain_documents_the_fields(control_plane: Any, path: str,
                                              text: str) -> None:
    assert text in kubectl("explain", path)
