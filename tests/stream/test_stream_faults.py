"""Faults against the real broker and Redis, nothing lost: each test ends with every input
event having a verdict or a dead-letter entry, and reports the duplicates (at-least-once
replays) it saw on the verdict topic.

Bounded: a few thousand events at a few hundred per second, each wait with a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from scorefleet.dev.kafka import KafkaBroker
from scorefleet.dev.redis import RedisServer
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models, ScorerProcess
from tests.stream.conftest import Collect
from tests.stream.harness import (
    Background,
    Collector,
    Outcome,
    create_topics,
    encode,
    event_rows,
    features_config,
    make_events,
    put_sender_features,
    stream_config,
)

pytestmark = [pytest.mark.stream, pytest.mark.slow, pytest.mark.timeout(600)]


def report(record_property: Any, name: str, out: Outcome, sent: int) -> None:
    record_property(f"{name}_duplicates", out.duplicates)
    print(f"\n{name}: {sent} events -> {len(out.verdicts)} with a verdict, "
          f"{len({v for v, _ in out.dead})} dead-lettered, {out.duplicates} duplicates")


def workers_of(scorer: ScorerProcess) -> list[int]:
    pid = scorer.proc.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def events_for(n: int, seed: int) -> list[dict[str, Any]]:
    """Events with all 32 features inline (scorers without online features)."""
    return make_events(event_rows(n, seed=seed), senders=50, inline=32)


def stream_scorer(start_scorer: StartScorer, models: Models, bootstrap: str, topics: Any,
                  workers: int = 1, **features: Any) -> ScorerProcess:
    config: dict[str, Any] = {"model": models.ref("v1"), "workers": workers,
                              "stream": stream_config(bootstrap, topics)}
    if features:
        config["onlineFeatures"] = features
    return start_scorer(config).wait_serving()


def test_broker_restart_mid_stream(tmp_path: Path, start_scorer: StartScorer, models: Models,
                                   topic_prefix: str, record_property: Any) -> None:
    with KafkaBroker(tmp_path / "kafka") as broker:
        topics = create_topics(broker.bootstrap, topic_prefix, partitions=3)
        collector = Collector(broker.bootstrap, topics)
        try:
            scorer = stream_scorer(start_scorer, models, broker.bootstrap, topics)
            events = events_for(3000, seed=11)
            feed = Background(broker.bootstrap, topics.events, encode(events), rate_per_s=400)
            collector.wait_verdicts(300, timeout=60)
            broker.stop()   # SIGTERM: a rolling restart of the only broker
            time.sleep(2.0)
            broker.start()
            feed.join(180)
            out = collector.wait_for(len(events), timeout=180)
            assert scorer.proc.poll() is None, "scorer died with the broker"
            scorer.kill()  # while the broker is up: it commits and leaves the group
        finally:
            collector.close()
    assert set(out.verdicts) == {e["id"] for e in events}
    assert out.dead == []
    report(record_property, "broker_restart", out, len(events))


def test_scorer_killed_mid_batch(kafka: KafkaBroker, start_scorer: StartScorer, models: Models,
                                 topic_prefix: str, collect: Collect,
                                 record_property: Any) -> None:
    topics = create_topics(kafka.bootstrap, topic_prefix, partitions=3)
    collector = collect(topics)
    scorer = stream_scorer(start_scorer, models, kafka.bootstrap, topics, workers=2)
    # Faster than two workers keep up with on this machine, so they are always mid-batch.
    events = events_for(6000, seed=12)
    feed = Background(kafka.bootstrap, topics.events, encode(events), rate_per_s=3000)
    collector.wait_verdicts(1000, timeout=60)
    victims = workers_of(scorer)
    assert len(victims) == 2
    for pid in victims:
        os.kill(pid, signal.SIGKILL)  # no drain, no commit, no leaving the group
    feed.join(120)
    # The supervisor restarts the workers; the dead members' partitions are reassigned after
    # the session timeout (6 s here) and replayed from the last commit.
    out = collector.wait_for(len(events), timeout=180)
    assert set(out.verdicts) == {e["id"] for e in events}
    assert out.dead == []
    assert not set(victims) & set(workers_of(scorer))
    report(record_property, "sigkill", out, len(events))


def test_redis_stopped_applies_the_miss_policy(
        tmp_path: Path, kafka: KafkaBroker, start_scorer: StartScorer, models: Models,
        topic_prefix: str, collect: Collect, record_property: Any) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(server.url)
        rows = event_rows(600, seed=13)
        put_sender_features(client, topic_prefix, rows, senders=50)
        topics = create_topics(kafka.bootstrap, topic_prefix, partitions=2)
        collector = collect(topics)
        scorer = stream_scorer(start_scorer, models, kafka.bootstrap, topics,
                               **features_config(server.address, topic_prefix))
        events = make_events(rows, senders=50)
        first, second, third = events[:200], events[200:400], events[400:]
        Background(kafka.bootstrap, topics.events, encode(first), rate_per_s=1000).join()
        collector.wait_for(200, timeout=60)
        server.stop()
        Background(kafka.bootstrap, topics.events, encode(second), rate_per_s=1000).join()
        collector.wait_for(400, timeout=60)
        server.start()  # empty after the restart (no persistence): features put back
        put_sender_features(client, topic_prefix, rows, senders=50)
        Background(kafka.bootstrap, topics.events, encode(third), rate_per_s=1000).join()
        out = collector.wait_for(600, timeout=60)
        client.close()
    finally:
        server.stop()
    missing = {i for i, v in out.verdicts.items() if v[0]["featuresMissing"]}
    assert set(out.verdicts) == {e["id"] for e in events}
    assert missing == {e["id"] for e in second}, "exactly the events scored while Redis was down"
    assert scorer.metric("scorefleet_stream_features_missing_events_total",
                         reason="unavailable") == len(second)
    assert scorer.metric("scorefleet_stream_verdicts_total") == len(events) + out.duplicates
    report(record_property, "redis_down", out, len(events))


def test_poison_messages_are_dead_lettered_without_a_restart(
        kafka: KafkaBroker, start_scorer: StartScorer, models: Models, topic_prefix: str,
        collect: Collect, record_property: Any) -> None:
    topics = create_topics(kafka.bootstrap, topic_prefix, partitions=3)
    collector = collect(topics)
    scorer = stream_scorer(start_scorer, models, kafka.bootstrap, topics, workers=2)
    before = workers_of(scorer)
    events = events_for(1000, seed=14)
    values = encode(events)
    kinds = [b"\x00\xff garbage", b"null", b'{"id": "p", "features": "x"}',
             json.dumps({"id": "nan", "features": [float("nan")] * 32}).encode(),
             b'{"features": []}', b'"just a string"', b"{" * 10000]
    # Distinct bytes (trailing spaces) so each dead letter can be matched to its message.
    poison = [b""] + [kind + b" " * i for i, kind in enumerate(kinds * 5)]
    mixed = [v for pair in zip(values[:len(poison)], poison, strict=True) for v in pair]
    mixed += values[len(poison):]
    Background(kafka.bootstrap, topics.events, mixed, rate_per_s=2000).join()
    out = collector.wait_for(len(events) + len(poison), timeout=90)
    assert set(out.verdicts) == {e["id"] for e in events}
    assert sorted(v or b"" for v, _ in out.dead) == sorted(poison)
    assert workers_of(scorer) == before, "a poison message restarted a worker"
    assert "Traceback" not in scorer.log()
    report(record_property, "poison", out, len(mixed))


def test_rebalance_during_scale_up_then_graceful_scale_down(
        kafka: KafkaBroker, start_scorer: StartScorer, models: Models, topic_prefix: str,
        collect: Collect, record_property: Any) -> None:
    topics = create_topics(kafka.bootstrap, topic_prefix, partitions=4)
    collector = collect(topics)
    first = stream_scorer(start_scorer, models, kafka.bootstrap, topics)
    # 30 s of events: the feed outlasts the second scorer's start (seconds on a loaded machine)
    # and the rebalance, so both scorers have events to score.
    events = events_for(9000, seed=15)
    feed = Background(kafka.bootstrap, topics.events, encode(events), rate_per_s=300)
    collector.wait_verdicts(300, timeout=60)
    second = stream_scorer(start_scorer, models, kafka.bootstrap, topics)  # joins: rebalance
    second.wait_for("second scorer produces verdicts",
                    lambda: second.metric("scorefleet_stream_verdicts_total") > 0, timeout=60)
    first.terminate()  # scale down again: finish the batch, commit, leave
    assert first.wait_exit(60) == 0
    feed.join(120)
    out = collector.wait_for(len(events), timeout=120)
    assert set(out.verdicts) == {e["id"] for e in events}
    assert out.dead == []
    # Both handovers were graceful (commit on revoke, commit before leaving): no replays.
    assert out.duplicates == 0
    report(record_property, "rebalance", out, len(events))
