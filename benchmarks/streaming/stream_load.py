"""Load and observation for the streaming benchmark: events, a paced producer (its own process),
a verdict reader that measures end-to-end latency, and a KEDA-style lag sampler.

    python benchmarks/streaming/stream_load.py produce BOOTSTRAP TOPIC EVENTS_FILE RATE OUT_JSON

End-to-end latency of one event = the verdict message's Kafka timestamp (CreateTime, stamped by
the scorer's producer when it produced the verdict) minus the event's own timestamp (stamped by
this producer), both from the same machine clock. That is exactly "event timestamp -> verdict
produced"; the scorer's own histogram (acknowledged, coarser buckets) is reported beside it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

INLINE, ONLINE = 24, 8
WARM_TOPIC = "producer-warm-up"  # created by the driver; only producers write it
ENTITIES = 10_000


def make_events(n: int, seed: int = 1) -> list[bytes]:
    """JSON events: id, sender (the Redis entity), 24 inline features (the model takes 32)."""
    from scorefleet.scorer.example_model import synthetic_features

    x = synthetic_features(min(n, 20_000), seed)[:, :INLINE].round(4)
    rows = [json.dumps([float(v) for v in r]) for r in x]
    return [f'{{"id":"e{i}","sender":"s{i % ENTITIES}","features":{rows[i % len(rows)]}}}'
            .encode() for i in range(n)]


def put_entities(redis_url: str) -> None:
    import redis

    from scorefleet.scorer.example_model import synthetic_features

    client = redis.Redis.from_url(redis_url)
    x = synthetic_features(ENTITIES, 2)[:, INLINE:]
    now = str(time.time())
    pipe = client.pipeline(transaction=False)
    for i in range(ENTITIES):
        pipe.hset(f"sender:s{i}", mapping={**{f"f{INLINE + j}": repr(float(x[i, j]))
                                              for j in range(ONLINE)}, "_ts": now})
    pipe.execute()
    client.close()


def producer_settings(bootstrap: str) -> dict[str, Any]:
    # What a well-behaved event source does: idempotent, acks=all, small linger.
    return {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "compression.type": "lz4", "queue.buffering.max.messages": 500000}


def produce_paced(bootstrap: str, topic: str, values: list[bytes], schedule: list[tuple[float,
                  float]], cycle: bool = False) -> dict[str, Any]:
    """Produce ``values`` following ``schedule`` [(seconds, events/s), ...] (rate 0 = as fast as
    possible). ``cycle``: start over when the values run out before the schedule does (each
    send is a new event with its own timestamp; ids repeat). Returns what was achieved."""
    producer = Producer(producer_settings(bootstrap))
    # Connected (metadata, leaders) before the schedule's clock starts: otherwise the events
    # due while it connects (~0.5-1 s, 10k at 20k/s) go out late as one burst and the "steady"
    # phase opens with a spike of the producer's making.
    producer.list_topics(topic, timeout=30)
    # ... and holding its idempotent producer id, which it asks for at the first produce:
    # one message to a topic nobody reads, acknowledged.
    producer.produce(WARM_TOPIC, b"warm")
    producer.flush(30)
    started = time.monotonic()
    i, n = 0, len(values)
    limit = sys.maxsize if cycle else n
    t0 = 0.0
    for seconds, rate in schedule:
        step_start = time.monotonic()
        step_end = step_start + seconds
        sent_in_step = 0
        while i < limit and time.monotonic() < step_end:
            if rate > 0:
                due = int((time.monotonic() - step_start) * rate) - sent_in_step
                if due <= 0:
                    producer.poll(0.001)
                    continue
            else:
                due = 1000
            for _ in range(min(due, limit - i)):
                try:
                    producer.produce(topic, values[i % n])
                except BufferError:
                    producer.poll(0.01)
                    break
                i += 1
                sent_in_step += 1
            producer.poll(0)
        t0 += seconds
    left = producer.flush(120)
    return {"sent": i, "undelivered": left, "seconds": time.monotonic() - started}


@dataclass
class VerdictStats:
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (time, verdicts so far)


class VerdictReader:
    """Counts verdicts and takes each one's end-to-end latency (cheap: no full JSON parse)."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        self.consumer.subscribe([topic])
        self.stats = VerdictStats()

    def reset(self) -> None:
        """Forget what was read so far (the warm-up's verdicts)."""
        self.stats = VerdictStats()

    def read(self, seconds: float, want: int | None = None) -> VerdictStats:
        st = self.stats
        deadline = time.monotonic() + seconds
        key = b'"eventTimestampMs":'
        while time.monotonic() < deadline and (want is None or st.count < want):
            batch = self.consumer.consume(5000, timeout=0.1)
            now = time.time()
            for msg in batch:
                if msg.error() is not None:
                    continue
                value = msg.value() or b""
                at = value.find(key)
                if at < 0:
                    continue
                end = value.find(b",", at)
                event_ms = int(value[at + len(key):end])
                produced_ms = msg.timestamp()[1]
                st.latencies_ms.append(produced_ms - event_ms)
                st.count += 1
                if st.first == 0.0:
                    st.first = produced_ms / 1000.0
                st.last = max(st.last, produced_ms / 1000.0)
            if batch:
                st.timeline.append((now, st.count))
        return st

    def close(self) -> None:
        self.consumer.close()


def group_lag(admin: AdminClient, group: str, topic: str, partitions: int) -> int:
    """Lag the way KEDA's Kafka scaler reads it: end offset minus committed, summed."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin._listoffsets import OffsetSpec


    tps = [TopicPartition(topic, p) for p in range(partitions)]
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, tps)])[group].result(10)
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    ends = admin.list_offsets({tp: latest for tp in tps})
    total = 0
    for tp in committed.topic_partitions:
        end = ends[TopicPartition(topic, tp.partition)].result(10).offset
        total += end - (tp.offset if tp.offset >= 0 else 0)
    return int(total)


def warm_up(bootstrap: str, topic: str, reader: VerdictReader, n: int = 500) -> float:
    """Produce ``n`` events and wait for their verdicts, then forget them: the scorer's first
    batches (its producer's id and the verdict topic's metadata, first model runs, the Redis
    connection) are a cold start, not the steady state a phase measures. Returns seconds."""
    started = time.monotonic()
    producer = Producer(producer_settings(bootstrap))
    for i in range(n):
        producer.produce(topic, f'{{"id":"warm{i}","sender":"s{i}","features":{WARM_ROW}}}'
                         .encode())
    producer.flush(60)
    got = reader.read(120, want=n).count
    if got < n:
        raise RuntimeError(f"warm-up: {got} of {n} verdicts within 120 s")
    reader.reset()
    return time.monotonic() - started


WARM_ROW = json.dumps([0.0] * INLINE)


def wait_group_assigned(bootstrap: str, group: str, members: int, partitions: int,
                        timeout: float = 60.0) -> float:
    """Until ``members`` consumers of ``group`` are stable and hold every partition between
    them (so a phase measures the steady state, not the group forming); returns seconds."""
    from confluent_kafka import ConsumerGroupState

    admin = AdminClient({"bootstrap.servers": bootstrap})
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            desc = admin.describe_consumer_groups([group])[group].result(5)
        except Exception:  # not created yet, coordinator loading
            desc = None
        if desc is not None and desc.state == ConsumerGroupState.STABLE:
            held = [len(m.assignment.topic_partitions) for m in desc.members]
            if len(held) == members and min(held) > 0 and sum(held) == partitions:
                return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"group {group}: {members} members with {partitions} partitions not "
                       f"within {timeout:.0f}s")


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}


def main(argv: list[str]) -> int:
    if argv[:1] != ["produce"] or len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    _, bootstrap, topic, events_file, schedule_json, out = argv
    values = Path(events_file).read_bytes().split(b"\n")
    schedule = [(float(s), float(r)) for s, r in json.loads(schedule_json)]
    result = produce_paced(bootstrap, topic, values, schedule,
                           cycle=all(rate > 0 for _, rate in schedule))
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
