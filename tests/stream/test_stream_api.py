"""spec.source.kafka and spec.features.redis: accepted as documented, resolved into the scorer's
config by the operator's child plan, credentials mounted from the Secret."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import ScorerConfig
from scorefleet.operator import naming as n
from scorefleet.operator.decide.children import plan_children
from scorefleet.operator.decide.tracks import TrackPlan

MODEL = {"name": "phishing", "version": "v1", "uri": "file:///models/v1.onnx"}
KAFKA = {"bootstrapServers": ["kafka-0.kafka:9092"], "topic": "mail-events",
         "verdictTopic": "mail-verdicts", "deadLetterTopic": "mail-dead"}
REDIS = {"address": "redis.features:6379", "keyTemplate": "sender:{sender}",
         "features": ["reputation", "age_days"]}


def pipeline(spec: dict[str, Any]) -> ScoringPipeline:
    return ScoringPipeline.from_body({
        "metadata": {"name": "phish", "namespace": "mail", "uid": "u1", "generation": 1},
        "spec": {"model": MODEL, **spec}})


def rendered(p: ScoringPipeline) -> tuple[ScorerConfig, dict[str, Any]]:
    plan = plan_children(p, [TrackPlan(track="stable", model=p.spec.model, replicas=2)])
    cm = next(m for m in plan if m["kind"] == "ConfigMap")
    deploy = next(m for m in plan if m["kind"] == "Deployment")
    return ScorerConfig.model_validate(yaml.safe_load(cm["data"][n.CONFIG_FILE])), deploy


def test_stream_settings_reach_the_scorer_config() -> None:
    p = pipeline({"source": {"kafka": {**KAFKA, "maxBatchSize": 300, "maxBatchWait": "50ms",
                                       "sessionTimeout": "20s"}},
                  "features": {"redis": {**REDIS, "timeout": "30ms", "maxStaleness": "1h",
                                         "onMiss": "DeadLetter", "defaults": [0.5, 10]}}})
    config, deploy = rendered(p)
    stream, feats = config.stream, config.online_features
    assert stream is not None and feats is not None
    assert stream.consumer_group == "scorefleet.mail.phish"
    assert (stream.topic, stream.verdict_topic, stream.dead_letter_topic) == (
        "mail-events", "mail-verdicts", "mail-dead")
    assert stream.max_batch_size == 300
    assert stream.max_batch_wait_seconds == pytest.approx(0.05)
    assert stream.session_timeout_seconds == pytest.approx(20)
    assert stream.max_poll_interval_seconds == pytest.approx(300)
    assert stream.credentials_dir is None
    assert feats.timeout_seconds == pytest.approx(0.03)
    assert feats.max_staleness_seconds == pytest.approx(3600)
    assert feats.on_miss == "DeadLetter" and feats.defaults == [0.5, 10.0]
    assert feats.key_field() == "sender"
    volumes = deploy["spec"]["template"]["spec"]["volumes"]
    assert [v["name"] for v in volumes] == ["config"]


def test_credentials_secret_is_mounted_and_named_in_the_config() -> None:
    p = pipeline({"source": {"kafka": {**KAFKA, "consumerGroup": "mail-scorers",
                                       "securityProtocol": "SASL_SSL",
                                       "credentialsSecret": {"name": "kafka-login"}}}})
    config, deploy = rendered(p)
    assert config.stream is not None
    assert config.stream.consumer_group == "mail-scorers"
    assert config.stream.credentials_dir == n.KAFKA_CREDENTIALS_DIR
    pod = deploy["spec"]["template"]["spec"]
    assert {"name": "kafka-credentials", "secret": {"secretName": "kafka-login"}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "kafka-credentials", "readOnly": True,
            "mountPath": n.KAFKA_CREDENTIALS_DIR} in mounts


def test_online_features_without_a_stream_reach_the_grpc_scorer() -> None:
    config, _ = rendered(pipeline({"features": {"redis": REDIS}}))
    assert config.stream is None and config.online_features is not None
    assert config.online_features.features == ["reputation", "age_days"]


def test_pipeline_without_stream_renders_as_before() -> None:
    config, _ = rendered(pipeline({}))
    assert config.stream is None and config.online_features is None
    assert "stream" not in config.wire()


@pytest.mark.parametrize("bad", [
    {"onlineFeatures": {**REDIS, "keyTemplate": "sender"}},
    {"onlineFeatures": {**REDIS, "keyTemplate": "{a}:{b}"}},
    {"onlineFeatures": {**REDIS, "defaults": [1.0]}},
    {"onlineFeatures": {**REDIS, "features": ["a", "a"]}},
])
def test_scorer_config_refuses_inconsistent_features(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ScorerConfig.model_validate({"pipeline": "p", "model": MODEL, **bad})


def test_sasl_without_credentials_is_refused_by_the_scorer(tmp_path: Any) -> None:
    from scorefleet.api.scorer_config import KafkaStreamConfig
    from scorefleet.scorer.stream.clients import (
        CredentialsError,
        consumer_settings,
        producer_settings,
    )

    base = dict(bootstrap_servers=["k:9092"], topic="a", consumer_group="g",
                verdict_topic="b", dead_letter_topic="c", security_protocol="SASL_SSL",
                sasl_mechanism="SCRAM-SHA-256")
    with pytest.raises(CredentialsError):
        consumer_settings(KafkaStreamConfig(**base), "c1")  # type: ignore[arg-type]
    (tmp_path / "username").write_text("scorer\n")
    (tmp_path / "password").write_text("s3cret\n")
    cfg = KafkaStreamConfig(**base, credentials_dir=str(tmp_path))  # type: ignore[arg-type]
    for settings in (consumer_settings(cfg, "c1"), producer_settings(cfg, "c1")):
        assert settings["security.protocol"] == "sasl_ssl"
        assert settings["sasl.mechanism"] == "SCRAM-SHA-256"
        assert (settings["sasl.username"], settings["sasl.password"]) == ("scorer", "s3cret")


def test_a_stream_canary_is_a_key_hash_share_given_to_the_stable_consumers() -> None:
    """The stable track keeps the only consumer group and gets the candidate's weight and
    address; the candidate has no stream section (it never consumes); a rollback (weight 0,
    candidate at zero) leaves the stable track scoring everything."""
    from dataclasses import replace

    from scorefleet.operator.decide.revision import desired_revision
    from scorefleet.operator.decide.rollout import TrafficPlan
    from scorefleet.operator.decide.rollout_plan import plan_for

    p = pipeline({"source": {"kafka": KAFKA}, "scaling": {"minReplicas": 4}})
    v2 = desired_revision(p.spec, "img")
    v1 = replace(v2, model=v2.model.model_copy(update={"version": "v0"}))

    def configs(traffic: TrafficPlan) -> tuple[dict[str, ScorerConfig], Any]:
        tracks, route = plan_for(p, traffic, v1, v2)
        cms = [m for m in plan_children(p, list(tracks)) if m["kind"] == "ConfigMap"]
        out: dict[str, ScorerConfig] = {}
        for cm in cms:
            cfg = ScorerConfig.model_validate(yaml.safe_load(cm["data"][n.CONFIG_FILE]))
            out[cfg.track] = cfg
        return out, route

    cfg, route = configs(TrafficPlan(candidate_weight=20, candidate_track="serving"))
    stable, candidate = cfg["stable"], cfg["candidate"]
    assert stable.stream is not None and stable.stream.canary is not None
    assert stable.stream.canary.weight == 20
    assert stable.stream.canary.address == "phish-candidate.mail.svc:9000"
    assert stable.model.version == "v0" and candidate.model.version == "v1"
    assert candidate.stream is None
    assert any(m["kind"] == "Service" and m["metadata"]["name"] == "phish-candidate"
               for m in route.manifests)
    assert route.effective_weight == 20.0 and route.candidate_replicas >= 1
    assert "20% of stream events by key hash" in route.note

    cfg, route = configs(TrafficPlan(candidate_track="zero"))
    assert cfg["stable"].stream is not None and cfg["stable"].stream.canary is None
    assert route.candidate_replicas == 0
