"""The pipeline's acknowledgement accounting: batches leave only when every message is acked,
in fetch order, and failed deliveries are sent again (pure, with a recording producer: the
delivery reports are the ones librdkafka would serve, in an order the test chooses)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scorefleet.scorer.stream.delivery import Deliveries, InFlightBatch


class Msg:
    def __init__(self, topic: str, value: bytes | None, key: bytes | None,
                 headers: Any) -> None:
        self._t, self._v, self._k, self._h = topic, value, key, headers

    def topic(self) -> str:
        return self._t

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes | None:
        return self._k

    def headers(self) -> Any:
        return self._h


class RecordingProducer:
    """Keeps each produced message with its delivery callback; the test delivers them."""

    def __init__(self, full_once: bool = False) -> None:
        self.sent: list[tuple[Msg, Any]] = []
        self.full_once = full_once
        self.polls = 0

    def produce(self, topic: str, value: bytes | None, key: bytes | None, *,
                headers: Any = None, on_delivery: Any) -> None:
        if self.full_once:
            self.full_once = False
            raise BufferError("queue full")
        self.sent.append((Msg(topic, value, key, headers), on_delivery))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def fill(deliveries: Deliveries, sizes: list[int]) -> list[InFlightBatch]:
    batches = []
    for b, n in enumerate(sizes):
        batch = deliveries.open([(0, b * 100 + i) for i in range(n)])
        for i in range(n):
            deliveries.send(batch, "v", f"{b}-{i}".encode(), None)
        batches.append(batch)
    return batches


@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_batches_leave_in_fetch_order_only_when_fully_acknowledged(
        sizes: list[int], rnd: Any) -> None:
    producer = RecordingProducer()
    deliveries = Deliveries(producer)
    batches = fill(deliveries, sizes)
    order = list(range(len(producer.sent)))
    rnd.shuffle(order)  # delivery reports across partitions come in any order
    released: list[InFlightBatch] = []
    for i in order:
        msg, callback = producer.sent[i]
        callback(None, msg)
        released += deliveries.pop_acknowledged()
        # Released = a prefix of the fetch order, each fully acknowledged.
        assert released == batches[:len(released)]
        assert all(b.outstanding == 0 for b in released)
        if len(released) < len(batches):
            assert batches[len(released)].outstanding > 0
    assert released == batches and len(deliveries) == 0


def test_a_failed_delivery_holds_its_batch_until_resent_and_acknowledged() -> None:
    producer = RecordingProducer()
    deliveries = Deliveries(producer)
    first, second = fill(deliveries, [2, 1])
    (m0, cb0), (m1, cb1), (m2, cb2) = producer.sent
    cb0(None, m0)
    cb1("broker gone", m1)
    cb2(None, m2)
    assert deliveries.pop_acknowledged() == []  # the first batch holds the second one back
    assert deliveries.any_failed and first.outstanding == 1
    assert deliveries.resend_failed() == 1
    assert first.outstanding == 1 and not first.failed
    resent, callback = producer.sent[-1]
    assert (resent.topic(), resent.value()) == ("v", b"0-1")
    callback(None, resent)
    assert deliveries.pop_acknowledged() == [first, second]


def test_a_full_local_queue_is_waited_out_not_dropped() -> None:
    producer = RecordingProducer(full_once=True)
    deliveries = Deliveries(producer)
    (batch,) = fill(deliveries, [1])
    assert producer.polls == 1 and len(producer.sent) == 1 and batch.outstanding == 1


def test_an_empty_batch_is_acknowledged_at_once() -> None:
    deliveries = Deliveries(RecordingProducer())
    batch = deliveries.open([])  # e.g. the fetch held only partition EOFs
    assert deliveries.pop_acknowledged() == [batch]
