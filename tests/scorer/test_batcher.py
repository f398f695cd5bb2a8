"""Batch queue decisions with explicit times (no sleeping), and the asyncio driver."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scorefleet.scorer.batcher import BatchPolicy, BatchQueue, DynamicBatcher, Pending
from scorefleet.scorer.errors import Expired, Shed

POLICY = BatchPolicy(max_batch_size=8, max_delay=0.001, max_queue_events=20)


def item(n: int, at: float, deadline: float | None = None) -> Pending:
    return Pending(rows=None, n=n, deadline=deadline, enqueued=at)


def test_empty_queue_is_never_due() -> None:
    assert BatchQueue(POLICY).due_in(now=5.0) is None


def test_waits_for_max_delay_from_the_oldest_request() -> None:
    q = BatchQueue(POLICY)
    q.offer(item(1, at=10.0))
    q.offer(item(1, at=10.0004))
    assert q.due_in(now=10.0005) == pytest.approx(0.0005)
    assert q.due_in(now=10.002) == 0.0


def test_full_batch_is_due_immediately() -> None:
    q = BatchQueue(POLICY)
    q.offer(item(5, at=1.0))
    q.offer(item(3, at=1.0))
    assert q.due_in(now=1.0) == 0.0


def test_take_keeps_requests_whole_and_fifo() -> None:
    q = BatchQueue(POLICY)
    a, b, c = item(5, 0.0), item(4, 0.0), item(2, 0.0)
    for it in (a, b, c):
        assert q.offer(it)
    batch, expired = q.take(now=1.0)
    assert batch == [a] and not expired  # b would overflow 8
    batch, _ = q.take(now=1.0)
    assert batch == [b, c]
    assert q.queued_events == 0 and len(q) == 0


def test_request_larger_than_max_batch_runs_alone() -> None:
    q = BatchQueue(POLICY)
    big = item(12, 0.0)
    q.offer(big)
    q.offer(item(1, 0.0))
    assert q.take(now=0.0)[0] == [big]


def test_bounded_queue_sheds() -> None:
    q = BatchQueue(POLICY)
    assert q.offer(item(15, 0.0))
    assert not q.offer(item(6, 0.0))  # 21 > 20
    assert q.offer(item(5, 0.0))
    assert q.queued_events == 20


def test_expired_requests_are_dropped_not_batched() -> None:
    q = BatchQueue(POLICY)
    late = item(2, at=0.0, deadline=0.5)
    ok = item(2, at=0.0, deadline=2.0)
    q.offer(late)
    q.offer(ok)
    batch, expired = q.take(now=1.0)
    assert batch == [ok] and expired == [late]
    assert q.queued_events == 0


@given(st.lists(st.tuples(st.integers(1, 12), st.booleans()), max_size=40))
def test_take_never_loses_or_duplicates_requests(spec: list[tuple[int, bool]]) -> None:
    q = BatchQueue(POLICY)
    admitted = []
    for n, expires in spec:
        it = item(n, at=0.0, deadline=0.5 if expires else None)
        if q.offer(it):
            admitted.append(it)
        assert q.queued_events <= POLICY.max_queue_events
    seen: list[Pending] = []
    while len(q):
        batch, expired = q.take(now=1.0)
        assert all(it.deadline is not None for it in expired)
        events = sum(it.n for it in batch)
        assert len(batch) == 1 or events <= POLICY.max_batch_size
        seen += batch + expired
    assert sorted(map(id, seen)) == sorted(map(id, admitted))
    assert q.queued_events == 0


def test_dynamic_batcher_coalesces_and_sheds() -> None:
    async def scenario() -> None:
        batches: list[int] = []

        def runner(batch: list[Pending]) -> None:
            batches.append(sum(it.n for it in batch))
            for it in batch:
                it.future.set_result(it.rows)

        batcher = DynamicBatcher(BatchPolicy(4, 0.05, 6), runner)
        batcher.start()
        futures = [batcher.submit(i, 1, None) for i in range(4)]  # full batch: no delay
        assert await asyncio.gather(*futures) == [0, 1, 2, 3]
        assert batches == [4]
        batcher.submit("a", 5, None)
        with pytest.raises(Shed, match="queue full"):
            batcher.submit("b", 2, None)
        loop = asyncio.get_running_loop()
        late = batcher.submit("c", 1, deadline=loop.time() - 1)
        with pytest.raises(Expired):
            await late
        await batcher.stop()

    asyncio.run(scenario())


def test_idle_aware_rule_dispatches_when_a_turn_brings_nobody() -> None:
    q = BatchQueue(POLICY)
    assert not q.dispatch_now(now=1.0, arrived_last_turn=False)  # empty: nothing to run
    q.offer(item(1, at=1.0))
    assert q.dispatch_now(now=1.0, arrived_last_turn=False)  # idle: no wait for company
    assert not q.dispatch_now(now=1.0005, arrived_last_turn=True)  # busy: keep collecting
    assert q.dispatch_now(now=1.001, arrived_last_turn=True)  # ... up to max_delay
    for _ in range(7):
        q.offer(item(1, at=1.0))
    assert q.dispatch_now(now=1.0, arrived_last_turn=True)  # full batch


def test_lone_request_does_not_wait_for_max_delay() -> None:
    async def scenario() -> None:
        batches: list[int] = []

        def runner(batch: list[Pending]) -> None:
            batches.append(len(batch))
            for it in batch:
                it.future.set_result(it.rows)

        # A 10 s wait would time the first await out if the batcher waited for company.
        batcher = DynamicBatcher(BatchPolicy(64, 10.0, 100), runner)
        batcher.start()
        assert await asyncio.wait_for(batcher.submit("a", 1, None), 5.0) == "a"
        # Requests queued in the same turn still share one model call.
        together = [batcher.submit(i, 1, None) for i in range(3)]
        assert await asyncio.wait_for(asyncio.gather(*together), 5.0) == [0, 1, 2]
        assert batches == [1, 3]
        await batcher.stop()

    asyncio.run(scenario())


def test_batcher_keeps_collecting_while_requests_keep_arriving() -> None:
    async def scenario() -> None:
        batches: list[int] = []

        def runner(batch: list[Pending]) -> None:
            batches.append(len(batch))
            for it in batch:
                it.future.set_result(None)

        batcher = DynamicBatcher(BatchPolicy(64, 10.0, 100), runner)
        batcher.start()
        futures = []
        for i in range(5):  # one new request per loop turn, as from a busy socket
            futures.append(batcher.submit(i, 1, None))
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*futures), 5.0)
        assert batches == [5]
        await batcher.stop()

    asyncio.run(scenario())


def test_fixed_wait_when_not_idle_aware() -> None:
    q = BatchQueue(BatchPolicy(8, 0.001, 20, dispatch_when_idle=False))
    q.offer(item(1, at=1.0))
    assert not q.dispatch_now(now=1.0, arrived_last_turn=False)  # waits for company anyway
    assert q.dispatch_now(now=1.001, arrived_last_turn=False)
