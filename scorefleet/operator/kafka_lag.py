"""Reads a consumer group's offsets from Kafka for the lag-based scaling input (the only
operator module that talks to Kafka). What KEDA's Kafka scaler reads: committed offsets of the
group and the beginning/end offsets of every partition of the topic."""

from __future__ import annotations

from typing import Any

from scorefleet.operator.decide.stream_lag import PartitionOffsets


class LagUnavailable(Exception):
    """The broker could not be asked (down, unknown topic): the scaler must hold, not guess."""


def read_offsets(bootstrap: list[str], group: str, topic: str, timeout: float = 5.0,
                 extra: dict[str, Any] | None = None) -> list[PartitionOffsets]:
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._listoffsets import OffsetSpec

    admin = AdminClient({"bootstrap.servers": ",".join(bootstrap), **(extra or {})})
    try:
        meta = admin.list_topics(topic, timeout=timeout)
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            raise LagUnavailable(f"topic {topic}: {info.error if info else 'not found'}")
        tps = [TopicPartition(topic, p) for p in sorted(info.partitions)]
        committed = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, tps)])[group].result(timeout)
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        begins = admin.list_offsets({tp: earliest for tp in tps}, request_timeout=timeout)
        ends = admin.list_offsets({tp: latest for tp in tps}, request_timeout=timeout)
        by_partition = {tp.partition: tp.offset for tp in committed.topic_partitions}
        return [PartitionOffsets(
            tp.partition, begins[tp].result(timeout).offset, ends[tp].result(timeout).offset,
            by_partition.get(tp.partition) if by_partition.get(tp.partition, -1) >= 0 else None)
            for tp in tps]
    except KafkaException as exc:
        raise LagUnavailable(str(exc)) from exc
