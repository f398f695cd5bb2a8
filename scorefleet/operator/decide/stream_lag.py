"""Consumer lag of a stream pipeline, read and judged the way KEDA's Kafka scaler does. Pure.

Per partition, lag = end offset - committed offset of the pipeline's consumer group. A partition
the group has never committed counts by the reset policy: with ``auto.offset.reset=earliest``
(what scorer pods use) its whole retained log is lag (end - beginning); with ``latest`` it is 0.
KEDA's sizing: desired = ceil(total lag / lagThreshold), and unless idle consumers are allowed
the total is capped at partitions x lagThreshold, because a consumer group never uses more
members than partitions. ``partition_limited`` says when that cap, not the lag, set the answer:
the status should say that more pods would sit idle.

    gather (scorefleet.operator.kafka_lag.read_offsets) -> PartitionOffsets per partition
        -> group_lag() -> LagReading -> replicas_for_lag() -> LagDecision
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    beginning: int      # oldest retained offset
    end: int            # next offset to be written (high watermark)
    committed: int | None  # the group's committed offset; None if it never committed


@dataclass(frozen=True)
class LagReading:
    total: int
    per_partition: dict[int, int]
    partitions: int


@dataclass(frozen=True)
class LagDecision:
    desired: int
    total_lag: int
    capped_lag: int
    partition_limited: bool
    reason: str


def group_lag(offsets: list[PartitionOffsets],
              reset: Literal["earliest", "latest"] = "earliest") -> LagReading:
    per: dict[int, int] = {}
    for p in offsets:
        if p.committed is None or p.committed < 0:
            lag = p.end - p.beginning if reset == "earliest" else 0
        else:
            lag = p.end - p.committed
        per[p.partition] = max(0, lag)
    return LagReading(sum(per.values()), per, len(offsets))


def replicas_for_lag(reading: LagReading, lag_threshold: int, consumers_per_replica: int = 1,
                     allow_idle_consumers: bool = False) -> LagDecision:
    """Replicas that bring the lag per consumer under ``lag_threshold`` (KEDA's rule).

    ``consumers_per_replica``: each scorer pod runs one group member per worker process.
    """
    if lag_threshold < 1 or consumers_per_replica < 1:
        raise ValueError("lag_threshold and consumers_per_replica must be >= 1")
    total = reading.total
    capped = total
    limited = False
    if not allow_idle_consumers and reading.partitions > 0:
        ceiling = reading.partitions * lag_threshold
        if total > ceiling:
            capped, limited = ceiling, True
    consumers = math.ceil(capped / lag_threshold)
    desired = math.ceil(consumers / consumers_per_replica)
    if limited:
        reason = (f"lag {total} exceeds {reading.partitions} partitions x {lag_threshold}: "
                  f"partitions, not pods, are the limit ({desired} replicas)")
    else:
        reason = f"lag {total} / {lag_threshold} per consumer -> {consumers} consumers"
    return LagDecision(desired, total, capped, limited, reason)
