"""Helpers of the stream tests: topics, events in, verdicts and dead letters out, accounting."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from scorefleet.scorer.stream.events import REASON_HEADER

INLINE = 24   # features carried by the event; the example model takes 32
ONLINE = [f"f{i}" for i in range(INLINE, 32)]  # the other 8 come from Redis


@dataclass
class Topics:
    events: str
    verdicts: str
    dead: str
    group: str


def create_topics(bootstrap: str, prefix: str, partitions: int = 6) -> Topics:
    topics = Topics(f"{prefix}-events", f"{prefix}-verdicts", f"{prefix}-dead",
                    f"{prefix}-group")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                   for t in (topics.events, topics.verdicts, topics.dead)])
    for f in futures.values():
        f.result(30)
    # Wait for leaders: producing right after creation can see NotLeaderForPartition.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=5)
        if all(t in meta.topics and all(p.leader >= 0 for p in meta.topics[t].partitions.values())
               for t in (topics.events, topics.verdicts, topics.dead)):
            return topics
        time.sleep(0.1)
    raise AssertionError("topic leaders not elected within 30s")


def stream_config(bootstrap: str, topics: Topics, **extra: Any) -> dict[str, Any]:
    return {"bootstrapServers": [bootstrap], "topic": topics.events,
            "consumerGroup": topics.group, "verdictTopic": topics.verdicts,
            "deadLetterTopic": topics.dead, "sessionTimeoutSeconds": 6,
            "maxBatchSize": 200, **extra}


def features_config(redis_address: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {"address": redis_address, "keyTemplate": f"{prefix}:sender:{{sender}}",
            "features": ONLINE, "timeoutSeconds": 0.2, **extra}


def event_rows(n: int, seed: int = 7) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Feature rows like the example model's (synthetic) training data."""
    from scorefleet.scorer.example_model import synthetic_features

    return synthetic_features(n, seed).astype(np.float32)


def make_events(rows: np.ndarray[Any, Any], senders: int = 50,
                inline: int = INLINE) -> list[dict[str, Any]]:
    """Events carrying ``inline`` features (all 32 when no online features are configured)."""
    return [{"id": f"e{i}", "sender": f"s{i % senders}",
             "features": [float(v) for v in rows[i, :inline]]} for i in range(len(rows))]


def put_sender_features(client: Any, prefix: str, rows: np.ndarray[Any, Any],
                        senders: int = 50) -> None:
    """Redis hashes per sender: the online part of the first row of each sender."""
    pipe = client.pipeline(transaction=False)
    for s in range(senders):
        pipe.hset(f"{prefix}:sender:s{s}", mapping={**{name: repr(float(rows[s, INLINE + j]))
                                              for j, name in enumerate(ONLINE)},
                                           "_ts": str(time.time())})
    pipe.execute()


def full_rows(rows: np.ndarray[Any, Any], senders: int = 50) -> np.ndarray[Any, Any]:
    """What the scorer should see: inline part of each event + its sender's online part."""
    out = rows.copy()
    for i in range(len(rows)):
        out[i, INLINE:] = rows[i % senders, INLINE:]
    return out


def produce(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes] | None = None,
            rate_per_s: float | None = None) -> None:
    # Idempotent with a long delivery timeout: survives a broker restart without duplicates.
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": 120000})
    started = time.monotonic()
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=value, key=keys[i] if keys else None)
                break
            except BufferError:
                producer.poll(0.05)
        if rate_per_s is not None:
            ahead = started + (i + 1) / rate_per_s - time.monotonic()
            if ahead > 0:
                producer.poll(0)
                time.sleep(ahead)
    assert producer.flush(60) == 0, "events not delivered"


def encode(events: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e).encode() for e in events]


@dataclass
class Outcome:
    """Everything on the verdict and dead-letter topics, keyed by event."""

    verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead: list[tuple[bytes | None, str]] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Verdicts or dead letters written more than once for one event (at-least-once)."""
        dead_values = [v for v, _ in self.dead]
        return (sum(len(v) - 1 for v in self.verdicts.values())
                + len(dead_values) - len(set(dead_values)))

    @property
    def accounted(self) -> int:
        """Distinct events with a verdict or a dead letter."""
        return len(self.verdicts) + len({v for v, _ in self.dead})

    def dead_reasons(self) -> Counter[str]:
        return Counter(reason.split(":")[0] for _, reason in self.dead)


class Collector:
    """Reads the verdict and dead-letter topics from the start, as a group of its own."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"{topics.group}-collector",
                                  "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False})
        self.consumer.subscribe([topics.verdicts, topics.dead])
        self.topics = topics
        self.outcome = Outcome()

    def drain(self, seconds: float = 0.5) -> Outcome:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(1000, timeout=0.1):
                if msg.error() is not None:
                    continue
                if msg.topic() == self.topics.verdicts:
                    verdict = json.loads(msg.value() or b"{}")
                    self.outcome.verdicts.setdefault(verdict["id"], []).append(verdict)
                else:
                    headers = dict(msg.headers() or [])
                    reason = headers.get(REASON_HEADER) or b""
                    self.outcome.dead.append((msg.value(), bytes(reason).decode()
                                              if not isinstance(reason, str) else reason))
        return self.outcome

    def wait_for(self, accounted: int, timeout: float) -> Outcome:
        """Until ``accounted`` distinct events have a verdict or a dead letter."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.drain()
            if out.accounted >= accounted:
                return self.drain(1.0)  # late duplicates, if any
        out = self.drain()
        raise AssertionError(f"only {len(out.verdicts)} verdicts + {len(out.dead)} dead letters "
                             f"of {accounted} events within {timeout}s")

    def wait_verdicts(self, at_least: int, timeout: float) -> Outcome:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.drain(0.2).verdicts) >= at_least:
                return self.outcome
        raise AssertionError(f"fewer than {at_least} verdicts within {timeout}s")

    def close(self) -> None:
        self.consumer.close()


class Background:
    """``produce`` in a thread, so a fault can be injected while events flow."""

    def __init__(self, bootstrap: str, topic: str, values: list[bytes], rate_per_s: float,
                 ) -> None:
        import threading

        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        args=(bootstrap, topic, values, rate_per_s))
        self._thread.start()

    def _run(self, bootstrap: str, topic: str, values: list[bytes], rate: float) -> None:
        try:
            produce(bootstrap, topic, values, rate_per_s=rate)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 120.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "producer still running"
        if self.error is not None:
            raise self.error
