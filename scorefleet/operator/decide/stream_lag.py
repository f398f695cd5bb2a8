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
        -> bound_replicas(autoscaler's answer, decision, partitions, workers) -> StreamBound
        -> lag_status() -> status.streamLag (measured lag beside the threshold)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scorefleet.api.status import StreamLagStatus


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


# --- what the autoscaler takes from the lag ------------------------------------------------


def max_useful_replicas(partitions: int, consumers_per_replica: int) -> int:
    """Pods beyond this get no partition (one group member per worker process)."""
    return max(1, math.ceil(partitions / max(1, consumers_per_replica)))


@dataclass(frozen=True)
class StreamBound:
    """The lag's say in a replica count: ``replicas`` within [floor, ceiling]."""

    replicas: int
    floor: int           # the larger of what the lag (KEDA's rule) and the end-to-end p99 ask
    ceiling: int         # max useful replicas (partitions / workers per pod)
    partition_limited: bool
    reason: str
    cause: Literal["PartitionLimited", "StreamLag", "EndToEndLatency"] | None = None


def bound_replicas(proposed: int, lag: LagDecision | None, partitions: int,
                   consumers_per_replica: int, latency_floor: int = 0,
                   latency_reason: str = "") -> StreamBound:
    """Combine the autoscaler's own answer (from the RPC latency SLO and QPS) with the lag and
    the end-to-end latency (decide/stream_latency.py: `latency_floor`, and why).

    The lag is a floor (a backlog the SLO metrics cannot see yet: events waiting are not
    requests), so is the end-to-end p99's ask; the partition count is a ceiling (more pods than
    partitions x workers consume nothing). Without a lag reading (broker unreachable) only the
    ceiling and the latency apply: the lag is never guessed. ``partition_limited`` when the
    ceiling cut the answer or the lag alone exceeds what the partitions allow: adding
    partitions, not pods, is the fix. ``cause`` names what raised or cut the answer, if any.
    """
    ceiling = max_useful_replicas(partitions, consumers_per_replica)
    lag_floor = lag.desired if lag is not None else 0
    floor = max(lag_floor, latency_floor)
    wanted = max(proposed, floor)
    replicas = min(wanted, ceiling)
    limited = wanted > ceiling or (lag is not None and lag.partition_limited)
    cause: Literal["PartitionLimited", "StreamLag", "EndToEndLatency"] | None = None
    if limited:
        cause = "PartitionLimited"
        reason = (f"{wanted} replicas wanted, {partitions} partitions / "
                  f"{consumers_per_replica} workers per pod allow {ceiling}: partitions, not "
                  "pods, are the limit")
    elif latency_floor > proposed and latency_floor > lag_floor:
        cause = "EndToEndLatency"
        reason = f"end-to-end latency asks for {latency_floor} replicas (SLO: {proposed}); " \
                 f"{latency_reason}"
    elif lag is not None and floor > proposed:
        cause = "StreamLag"
        reason = f"lag asks for {floor} replicas (SLO: {proposed}); {lag.reason}"
    else:
        reason = (f"{replicas} replicas (lag floor {lag_floor}, end-to-end floor "
                  f"{latency_floor}, partition ceiling {ceiling})")
    return StreamBound(replicas, floor, ceiling, limited, reason, cause)


def lag_threshold(max_batch_size: int) -> int:
    """Lag one consumer may hold: one full batch waiting is normal, more is a backlog."""
    return max(1, max_batch_size)


def lag_status(offsets: list[PartitionOffsets] | str, *, topic: str, group: str,
               threshold: int, consumers_per_replica: int, measured_at: str) -> StreamLagStatus:
    """status.streamLag from the offsets read (or why they could not be read)."""
    if isinstance(offsets, str):
        return StreamLagStatus(measured_at=measured_at, topic=topic, consumer_group=group,
                               lag_threshold=threshold,
                               consumers_per_replica=consumers_per_replica,
                               message=f"lag unavailable: {offsets}")
    reading = group_lag(offsets)
    decision = replicas_for_lag(reading, threshold, consumers_per_replica)
    return StreamLagStatus(
        measured_at=measured_at, topic=topic, consumer_group=group,
        partitions=reading.partitions, lag=reading.total, lag_threshold=threshold,
        consumers_per_replica=consumers_per_replica, desired_replicas=decision.desired,
        max_useful_replicas=max_useful_replicas(reading.partitions, consumers_per_replica),
        partition_limited=decision.partition_limited, message=decision.reason)


@dataclass(frozen=True)
class StreamInput:
    """What the autoscaler takes from status.streamLag: the lag's decision (None when the lag
    could not be read), the partition count and the workers (group members) per pod."""

    lag: LagDecision | None
    partitions: int
    consumers_per_replica: int


def stream_input(status: StreamLagStatus | None) -> StreamInput | None:
    """The autoscaler's stream input from the reading just taken (None: not a stream, or no
    reading; the autoscaler then holds its own answer, the lag is never guessed as zero)."""
    if status is None or status.lag is None or status.desired_replicas is None \
            or status.partitions < 1:
        return None
    capped = min(status.lag, status.partitions * status.lag_threshold)
    decision = LagDecision(status.desired_replicas, status.lag, capped,
                           status.partition_limited, status.message)
    return StreamInput(decision, status.partitions, status.consumers_per_replica)
