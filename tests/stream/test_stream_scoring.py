"""Stream mode end to end on the real broker and Redis: every event gets a verdict or a dead
letter, verdicts equal onnxruntime on the same features, misses are flagged, metrics add up."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis

from scorefleet.dev.kafka import KafkaBroker
from scorefleet.dev.redis import RedisServer
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models
from tests.stream.conftest import Collect
from tests.stream.harness import (
    create_topics,
    encode,
    event_rows,
    features_config,
    full_rows,
    make_events,
    produce,
    put_sender_features,
    stream_config,
)

pytestmark = [pytest.mark.stream, pytest.mark.slow]


def local_scores(models: Models, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    session = ort.InferenceSession(str(models.dir / "model-v1.onnx"))
    out = session.run(None, {session.get_inputs()[0].name: rows})[0]
    return np.asarray(out[:, 1] if out.ndim == 2 else out, dtype=np.float32).reshape(-1)


def test_verdicts_match_local_scores_and_misses_are_flagged(
        kafka: KafkaBroker, redis_server: RedisServer, start_scorer: StartScorer,
        models: Models, topic_prefix: str, collect: Collect) -> None:
    topics = create_topics(kafka.bootstrap, topic_prefix)
    rows = event_rows(1000)
    client = redis.Redis.from_url(redis_server.url)
    put_sender_features(client, topic_prefix, rows, senders=50)
    events = make_events(rows, senders=50)
    # Senders 50..52 have no hash in Redis: scored with defaults, flagged.
    for i in range(3):
        events[i * 10]["sender"] = f"s{50 + i}"
    poison = [b"not json", json.dumps({"id": "short", "sender": "s1",
                                       "features": [1.0]}).encode(), b"[1,2]"]
    collector = collect(topics)
    scorer = start_scorer({"model": models.ref("v1"), "workers": 2,
                           "stream": stream_config(kafka.bootstrap, topics),
                           "onlineFeatures": features_config(redis_server.address, topic_prefix)}
                          ).wait_serving()
    produce(kafka.bootstrap, topics.events, encode(events) + poison)
    out = collector.wait_for(len(events) + len(poison), timeout=90)

    assert set(out.verdicts) == {e["id"] for e in events}
    assert out.duplicates == 0
    assert len(out.dead) == 3
    assert sorted(value or b"" for value, _ in out.dead) == sorted(poison)
    reasons = " | ".join(reason for _, reason in out.dead)
    assert "not JSON" in reasons and "expected 24 features" in reasons
    assert "must be a JSON object" in reasons

    want = local_scores(models, full_rows(rows, senders=50))
    flagged = {f"e{i * 10}" for i in range(3)}
    for i, event in enumerate(events):
        verdict = out.verdicts[event["id"]][0]
        assert verdict["modelVersion"] == "v1" and verdict["track"] == "stable"
        assert verdict["featuresMissing"] == (event["id"] in flagged)
        if event["id"] not in flagged:
            assert verdict["score"] == pytest.approx(float(want[i]), abs=1e-5)
            assert verdict["decision"] == bool(want[i] >= np.float32(0.5))

    assert scorer.metric("scorefleet_stream_consumed_events_total") == len(events) + 3
    assert scorer.metric("scorefleet_stream_verdicts_total") == len(events)
    assert scorer.metric("scorefleet_stream_dead_lettered_events_total") == 3
    assert scorer.metric("scorefleet_stream_features_missing_events_total",
                         reason="absent") == 3
    assert scorer.metric("scorefleet_stream_end_to_end_seconds_count") == len(events)
    assert scorer.metric("scorefleet_stream_duplicate_events_total") == 0
    client.close()


def test_dead_letter_miss_policy_and_sigterm_leaves_the_group(
        kafka: KafkaBroker, redis_server: RedisServer, start_scorer: StartScorer,
        models: Models, topic_prefix: str, collect: Collect) -> None:
    topics = create_topics(kafka.bootstrap, topic_prefix, partitions=2)
    rows = event_rows(200, seed=3)
    client = redis.Redis.from_url(redis_server.url)
    put_sender_features(client, topic_prefix, rows, senders=10)
    events = make_events(rows, senders=20)  # senders 10..19 are unknown
    collector = collect(topics)
    scorer = start_scorer({"model": models.ref("v1"),
                           "stream": stream_config(kafka.bootstrap, topics),
                           "onlineFeatures": features_config(redis_server.address,
                                                             topic_prefix, onMiss="DeadLetter")}
                          ).wait_serving()
    produce(kafka.bootstrap, topics.events, encode(events))
    out = collector.wait_for(len(events), timeout=60)
    unknown = {e["id"] for e in events if int(e["sender"][1:]) >= 10}
    assert set(out.verdicts) == {e["id"] for e in events} - unknown
    assert len(out.dead) == len(unknown)
    assert {json.loads(v or b"")["id"] for v, _ in out.dead} == unknown
    want = f"online features absent for key {topic_prefix}:sender:s"
    assert all(r.startswith(want) for _, r in out.dead)
    assert all(not v[0]["featuresMissing"] for v in out.verdicts.values())

    scorer.terminate()
    assert scorer.wait_exit(30) == 0
    assert "left group" in scorer.log()
    client.close()


def test_shadow_pairs_streamed_events_and_only_primary_verdicts_are_produced(
        kafka: KafkaBroker, start_scorer: StartScorer, models: Models, topic_prefix: str,
        collect: Collect) -> None:
    """A track with a shadow model (what a Shadow rollout renders) pairs the very events it
    consumed, as on the gRPC path; the verdict topic carries the primary's verdicts only."""
    topics = create_topics(kafka.bootstrap, topic_prefix, partitions=2)
    rows = event_rows(300, seed=21)
    events = make_events(rows, inline=32)
    collector = collect(topics)
    scorer = start_scorer({"model": models.ref("v1"),
                           "shadow": {"model": models.ref("v2", threshold=0.4),
                                      "sampleRate": 1.0, "maxCpuFraction": 1.0},
                           "stream": stream_config(kafka.bootstrap, topics)}).wait_serving()
    produce(kafka.bootstrap, topics.events, encode(events))
    out = collector.wait_for(len(events), timeout=60)
    assert {v[0]["modelVersion"] for v in out.verdicts.values()} == {"v1"}
    assert len(out.verdicts) == len(events)
    scorer.wait_for("every streamed event paired", lambda: scorer.metric(
        "scorefleet_shadow_pairs_total", primary_version="v1", shadow_version="v2")
        == len(events), timeout=20)
    want = local_scores(models, rows)
    got = np.array([out.verdicts[e["id"]][0]["score"] for e in events], dtype=np.float32)
    assert np.allclose(got, want, atol=1e-5)
