"""Lag as KEDA's Kafka scaler reads it: pure sizing rules, and the offsets read from the real
broker for a group that committed part of a topic."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from scorefleet.dev.kafka import KafkaBroker
from scorefleet.operator.decide.stream_lag import PartitionOffsets, group_lag, replicas_for_lag
from scorefleet.operator.kafka_lag import LagUnavailable, read_offsets
from tests.stream.harness import create_topics


def test_lag_per_partition_and_reset_policy() -> None:
    offsets = [PartitionOffsets(0, 0, 100, 40), PartitionOffsets(1, 10, 50, None),
               PartitionOffsets(2, 0, 7, 9)]
    assert group_lag(offsets).per_partition == {0: 60, 1: 40, 2: 0}
    assert group_lag(offsets, reset="latest").per_partition == {0: 60, 1: 0, 2: 0}


def test_keda_sizing_and_partition_cap() -> None:
    reading = group_lag([PartitionOffsets(p, 0, 1000, 0) for p in range(4)])  # lag 4000
    assert replicas_for_lag(reading, 500).desired == 4  # capped: 4 x 500 = 2000
    assert replicas_for_lag(reading, 500).partition_limited
    assert replicas_for_lag(reading, 500, allow_idle_consumers=True).desired == 8
    small = group_lag([PartitionOffsets(p, 0, 100, 0) for p in range(4)])  # lag 400
    decision = replicas_for_lag(small, 150)
    assert (decision.desired, decision.partition_limited) == (3, False)
    assert replicas_for_lag(small, 150, consumers_per_replica=2).desired == 2


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=32), st.integers(1, 10**5),
       st.integers(1, 8))
def test_never_more_consumers_than_partitions(lags: list[int], threshold: int,
                                              per_replica: int) -> None:
    reading = group_lag([PartitionOffsets(i, 0, lag, 0) for i, lag in enumerate(lags)])
    decision = replicas_for_lag(reading, threshold, per_replica)
    assert decision.desired * per_replica < len(lags) + per_replica
    assert decision.desired >= (1 if reading.total else 0)


@pytest.mark.stream
def test_offsets_read_from_the_real_broker(kafka: KafkaBroker, topic_prefix: str) -> None:
    topics = create_topics(kafka.bootstrap, topic_prefix, partitions=3)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for partition, n in ((0, 10), (1, 20), (2, 30)):
        for i in range(n):
            producer.produce(topics.events, f"{partition}-{i}".encode(), partition=partition)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": topics.group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topics.events, 0, 4),
                             TopicPartition(topics.events, 1, 20)], asynchronous=False)
    consumer.close()
    offsets = read_offsets([kafka.bootstrap], topics.group, topics.events)
    assert [(o.partition, o.end, o.committed) for o in offsets] == [(0, 10, 4), (1, 20, 20),
                                                                    (2, 30, None)]
    assert group_lag(offsets).total == 6 + 0 + 30
    with pytest.raises(LagUnavailable):
        read_offsets([kafka.bootstrap], topics.group, f"{topic_prefix}-missing", timeout=3)

    # What a measuring reconcile writes as status.streamLag for a pipeline on that topic.
    from datetime import UTC, datetime

    from scorefleet.operator.kafka_lag import stream_lag_status
    from tests.operator.conftest import make_pipeline

    kafka_spec = {"bootstrapServers": [kafka.bootstrap], "topic": topics.events,
                  "consumerGroup": topics.group, "verdictTopic": topics.verdicts,
                  "deadLetterTopic": topics.dead, "maxBatchSize": 10}
    now = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    status = stream_lag_status(make_pipeline({"source": {"kafka": kafka_spec}}), 2, now)
    assert status is not None
    assert (status.lag, status.lag_threshold, status.partitions, status.desired_replicas,
            status.max_useful_replicas, status.partition_limited) == (36, 10, 3, 2, 2, True)
    assert status.measured_at == "2026-11-29T10:00:00Z"
    # The autoscaler takes that reading: 900 qps asks for 6 pods, but 3 partitions with 2
    # workers per pod feed only 2, so the stable track gets 2 and says why.
    from scorefleet.operator.decide.autoscaling import decide_autoscaling
    from scorefleet.operator.decide.stream_lag import stream_input
    from tests.operator.test_autoscaling_wiring import dep, load

    scaled = decide_autoscaling(
        make_pipeline({"source": {"kafka": kafka_spec},
                       "scaling": {"minReplicas": 1, "maxReplicas": 20,
                                   "targetQPSPerReplica": 100}}),
        dep(1), load(900, now), None, now, stream=stream_input(status))
    assert scaled.stable_replicas == 2 and scaled.status is not None
    assert scaled.status.stable is not None and scaled.status.stable.partition_limited
    assert [t.reason for t in scaled.transitions] == ["PartitionLimited"]
    gone = stream_lag_status(make_pipeline({"source": {"kafka": {
        **kafka_spec, "bootstrapServers": ["127.0.0.1:1"]}}}), 2, now, timeout=1)
    assert gone is not None and gone.lag is None
    assert gone.message.startswith("lag unavailable: ")
    assert stream_lag_status(make_pipeline({}), 2, now) is None


def test_lag_is_a_floor_and_partitions_a_ceiling() -> None:
    from scorefleet.operator.decide.stream_lag import bound_replicas

    lag = replicas_for_lag(group_lag([PartitionOffsets(p, 0, 400, 0) for p in range(6)]), 500,
                           consumers_per_replica=2)  # lag 2400 -> 5 consumers -> 3 pods
    assert (lag.desired, lag.partition_limited) == (3, False)
    up = bound_replicas(1, lag, partitions=6, consumers_per_replica=2)
    assert (up.replicas, up.floor, up.ceiling, up.partition_limited) == (3, 3, 3, False)
    assert "lag asks for 3" in up.reason
    # The SLO asks for more than 6 partitions / 2 workers can use: capped, and said so.
    capped = bound_replicas(5, lag, partitions=6, consumers_per_replica=2)
    assert (capped.replicas, capped.partition_limited) == (3, True)
    assert "partitions, not pods, are the limit" in capped.reason
    # No lag reading: only the ceiling applies, nothing is guessed.
    blind = bound_replicas(2, None, partitions=6, consumers_per_replica=2)
    assert (blind.replicas, blind.floor, blind.partition_limited) == (2, 0, False)


@given(st.integers(0, 50), st.lists(st.integers(0, 10**5), min_size=1, max_size=24),
       st.integers(1, 10**4), st.integers(1, 8))
def test_bound_never_exceeds_useful_replicas(proposed: int, lags: list[int], threshold: int,
                                             per_replica: int) -> None:
    from scorefleet.operator.decide.stream_lag import bound_replicas, max_useful_replicas

    lag = replicas_for_lag(group_lag([PartitionOffsets(i, 0, v, 0) for i, v in enumerate(lags)]),
                           threshold, per_replica)
    bound = bound_replicas(proposed, lag, len(lags), per_replica)
    assert bound.replicas <= max_useful_replicas(len(lags), per_replica)
    assert bound.replicas >= min(max(proposed, lag.desired), bound.ceiling)
    assert bound.partition_limited == (max(proposed, lag.desired) > bound.ceiling
                                       or lag.partition_limited)


def test_status_shows_lag_beside_threshold_or_why_not() -> None:
    from scorefleet.operator.decide.stream_lag import lag_status

    offsets = [PartitionOffsets(p, 0, 5000, 0) for p in range(2)]
    status = lag_status(offsets, topic="t", group="g", threshold=500, consumers_per_replica=1,
                        measured_at="2026-11-29T10:00:00Z")
    assert (status.lag, status.lag_threshold, status.desired_replicas,
            status.max_useful_replicas, status.partition_limited) == (10000, 500, 2, 2, True)
    assert "partitions, not pods, are the limit" in status.message
    wire = status.wire()
    assert wire["partitionLimited"] is True and wire["maxUsefulReplicas"] == 2
    down = lag_status("broker unreachable", topic="t", group="g", threshold=500,
                      consumers_per_replica=1, measured_at="2026-11-29T10:00:00Z")
    assert down.lag is None and down.desired_replicas is None
    assert down.message == "lag unavailable: broker unreachable"
