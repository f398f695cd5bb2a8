"""Reads a consumer group's offsets from Kafka for the lag-based scaling input (the only
operator module that talks to Kafka). What KEDA's Kafka scaler reads: committed offsets of the
group and the beginning/end offsets of every partition of the topic. The measuring pass of the
reconcile turns them into status.streamLag (decide/stream_lag.py judges them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.status import StreamLagStatus
from scorefleet.operator.decide.conditions import timestamp
from scorefleet.operator.decide.stream_lag import (
    PartitionOffsets,
    lag_status,
    lag_threshold,
)


class LagUnavailable(Exception):
    """The broker could not be asked (down, unknown topic): the scaler must hold, not guess."""


def _committed(bootstrap: list[str], group: str, tps: list[Any], timeout: float,
               extra: dict[str, Any] | None) -> list[Any]:
    """The group's committed offsets, asked by a consumer that never joins the group.

    Not AdminClient.list_consumer_group_offsets: librdkafka 2.16's admin client segfaults when
    the broker answers that request with NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS (a
    fresh broker's group coordinator is still loading): it hands the retry to a consumer group
    the admin client does not have. Reproduced here on fresh brokers (1 segfault and 2 such
    answers in 6 runs; the operator of `scorefleet up --streams` died of it silently); a
    consumer retries those answers through its own group coordinator.
    """
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": ",".join(bootstrap), "group.id": group,
                         "enable.auto.commit": False, "log_level": 0, **(extra or {})})
    try:
        return list(consumer.committed(tps, timeout=timeout))
    finally:
        consumer.close()


def read_offsets(bootstrap: list[str], group: str, topic: str, timeout: float = 5.0,
                 extra: dict[str, Any] | None = None) -> list[PartitionOffsets]:
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._listoffsets import OffsetSpec

    admin = AdminClient({"bootstrap.servers": ",".join(bootstrap), **(extra or {})})
    try:
        meta = admin.list_topics(topic, timeout=timeout)
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            raise LagUnavailable(f"topic {topic}: {info.error if info else 'not found'}")
        tps = [TopicPartition(topic, p) for p in sorted(info.partitions)]
        committed = _committed(bootstrap, group, tps, timeout, extra)
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        begins = admin.list_offsets({tp: earliest for tp in tps}, request_timeout=timeout)
        ends = admin.list_offsets({tp: latest for tp in tps}, request_timeout=timeout)
        by_partition = {tp.partition: tp.offset for tp in committed}
        return [PartitionOffsets(
            tp.partition, begins[tp].result(timeout).offset, ends[tp].result(timeout).offset,
            by_partition.get(tp.partition) if by_partition.get(tp.partition, -1) >= 0 else None)
            for tp in tps]
    except KafkaException as exc:
        raise LagUnavailable(str(exc)) from exc


def stream_lag_status(pipeline: ScoringPipeline, workers: int, now: datetime,
                      timeout: float = 5.0) -> StreamLagStatus | None:
    """status.streamLag of a stream pipeline (None for others), read now from its broker.

    A broker that cannot be asked gives a status that says so, never a guessed lag. SASL
    pipelines are not read yet (the operator does not mount their credentials): the status says
    that too.
    """
    source = pipeline.spec.source
    if source is None:
        return None
    kafka = source.kafka
    meta = pipeline.metadata
    group = kafka.consumer_group or f"scorefleet.{meta.namespace}.{meta.name}"
    offsets: list[PartitionOffsets] | str
    if kafka.security_protocol != "PLAINTEXT":
        offsets = (f"securityProtocol {kafka.security_protocol}: the operator has no "
                   "credentials to read the group's offsets")
    else:
        try:
            offsets = read_offsets(kafka.bootstrap_servers, group, kafka.topic, timeout)
        except LagUnavailable as exc:
            offsets = str(exc)
    return lag_status(offsets, topic=kafka.topic, group=group,
                      threshold=lag_threshold(kafka.max_batch_size),
                      consumers_per_replica=workers, measured_at=timestamp(now))
