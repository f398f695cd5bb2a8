"""Batches whose verdicts are produced but not yet all acknowledged, oldest first.

Pipelining: the runner produces batch k's verdicts and goes on to fetch and score batch k+1
without waiting; each message's delivery report (served by ``producer.poll``) counts down its
own batch. A batch is *acknowledged* when every one of its verdicts and dead letters is, and
batches leave in the order they were fetched: offsets are committed only up to the oldest batch
still waiting, so a commit never covers an event whose verdict could still be lost
(at-least-once, as without pipelining).

A failed delivery (only after ``message.timeout.ms`` or a fatal broker error) keeps its batch
waiting and is produced again by :meth:`Deliveries.resend_failed`; nothing is dropped.

The counting is plain Python on the batch object: delivery reports run in whichever thread calls
``poll``/``flush``, and the runner never polls from two threads at once.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]] | None
Record = Callable[[float], None]  # the batch's metrics, given when it was acknowledged


@dataclass(eq=False)
class InFlightBatch:
    positions: list[tuple[int, int]]  # (partition, offset) of every message fetched
    record: Record | None = None
    outstanding: int = 0
    failed: list[tuple[str, bytes | None, bytes | None, Headers]] = field(default_factory=list)

    def on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.outstanding -= 1
            return
        # Still outstanding: it is produced again, and only its success counts down.
        self.failed.append((str(msg.topic()), msg.key(), msg.value(), msg.headers()))
        log.warning("stream: delivery to %s failed (%s); will resend", msg.topic(), err)

    @property
    def acknowledged(self) -> bool:
        return self.outstanding == 0 and not self.failed


class Deliveries:
    """The producer side of the pipeline: sends, counts acknowledgements, releases in order."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.batches: deque[InFlightBatch] = deque()

    def __len__(self) -> int:
        return len(self.batches)

    def open(self, positions: list[tuple[int, int]]) -> InFlightBatch:
        batch = InFlightBatch(positions)
        self.batches.append(batch)
        return batch

    def send(self, batch: InFlightBatch, topic: str, value: bytes | None, key: bytes | None,
             headers: Headers = None) -> None:
        producer = self.producer
        while True:
            try:
                if headers is None:
                    producer.produce(topic, value, key, on_delivery=batch.on_delivery)
                else:
                    producer.produce(topic, value, key, headers=headers,
                                     on_delivery=batch.on_delivery)
                batch.outstanding += 1
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain

    def send_all(self, batch: InFlightBatch, topic: str, values: list[bytes],
                 keys: list[bytes | None]) -> None:
        """`send` for many messages without headers, in one loop (the verdicts of a batch)."""
        produce, on_delivery = self.producer.produce, batch.on_delivery
        for value, key in zip(values, keys, strict=True):
            while True:
                try:
                    produce(topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)  # local queue full: let deliveries drain
            batch.outstanding += 1

    def resend_failed(self) -> int:
        """Produce failed messages again (each is still counted as outstanding)."""
        n = 0
        for batch in self.batches:
            if not batch.failed:
                continue
            failed, batch.failed = batch.failed, []
            for topic, key, value, headers in failed:
                batch.outstanding -= 1  # send() counts it again
                self.send(batch, topic, value, key, headers)
                n += 1
        return n

    def pop_acknowledged(self) -> list[InFlightBatch]:
        """The oldest batches that are fully acknowledged, in fetch order."""
        done: list[InFlightBatch] = []
        while self.batches and self.batches[0].acknowledged:
            done.append(self.batches.popleft())
        return done

    @property
    def any_failed(self) -> bool:
        return any(b.failed for b in self.batches)
