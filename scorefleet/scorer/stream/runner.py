"""The stream loop of one worker, pipelined: score batch k+1 while batch k's verdicts are acked.

::

    fetch (<= maxBatchSize, <= maxBatchWait) --> score (batch.BatchScorer) --> produce
        verdicts + dead letters (no wait) --> next fetch ...
                          |
       delivery reports --+--> oldest batches fully acknowledged, in fetch order
                               --> offsets pending --> commit (asynchronous, <= 10/s)

At most ``maxBatchesInFlight`` batches wait for acknowledgements; past that the loop waits for
the oldest. Nothing is committed before every verdict and dead letter of that batch and of
every batch fetched before it is acknowledged, so a crash replays at most the batches in flight
plus the last commit interval (at-least-once; replays are counted as duplicates). A message
that cannot be decoded or scored goes to the dead-letter topic and the batch goes on. A broker
outage holds the batches in the producer (it retries for up to 10 min) and, once the window is
full, stops fetching: nothing is skipped.

Stop (SIGTERM): stop fetching, wait until every batch in flight is acknowledged, commit
synchronously, leave the group (its partitions move to the other pods at once), exit. A
rebalance that takes partitions away does the same inside the revoke callback before the
partitions move, so a scale-up or scale-down replays nothing.

Threads: blocking client calls (fetch, Redis read, waits for acknowledgements) run in a thread
so the event loop keeps serving gRPC; they are awaited one at a time, so the consumer, the
offset book and the batches in flight are never touched from two threads at once (delivery
reports and rebalance callbacks run inside those calls).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.cimpl import TopicPartition

from scorefleet.api.scorer_config import (
    KafkaStreamConfig,
    OnlineFeaturesConfig,
    StreamCanaryConfig,
)
from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.metrics import observe_many
from scorefleet.scorer.stream.batch import BatchScorer, ScoredBatch
from scorefleet.scorer.stream.clients import consumer_settings, producer_settings
from scorefleet.scorer.stream.delivery import Deliveries
from scorefleet.scorer.stream.events import dead_letter_headers, verdicts_json
from scorefleet.scorer.stream.features import OnlineFeatures
from scorefleet.scorer.stream.metrics import StreamMetrics
from scorefleet.scorer.stream.offsets import OffsetBook

log = logging.getLogger(__name__)

LAG_EVERY_SECONDS = 1.0
COMMIT_EVERY_SECONDS = 0.1
COMMIT_ATTEMPTS = 3
READY_POLL_SECONDS = 0.2
ACK_WAIT_SECONDS = 0.05
RESEND_DELAY_SECONDS = 0.5


class StreamRunner:
    def __init__(self, engine: ScoringEngine, metrics: StreamMetrics, track: str,
                 cfg: KafkaStreamConfig, features: OnlineFeaturesConfig | None,
                 client_id: str) -> None:
        self.engine = engine
        self.metrics = metrics
        self.track = track
        self.cfg = cfg
        self.features_cfg = features
        self.client_id = client_id
        self.book = OffsetBook()
        self.stopping = asyncio.Event()
        self.consumer: Any = None
        self.producer: Any = None
        self.deliveries: Deliveries | None = None
        self.scorer: BatchScorer | None = None
        self.owned: set[int] = set()  # partitions assigned to this member right now
        self._next_lag = 0.0
        self._next_commit = 0.0
        self.batches = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`request_stop`; always leaves the group on the way out."""
        if not await self._wait_for_model():
            return
        self.producer = Producer(producer_settings(self.cfg, self.client_id))
        self.deliveries = Deliveries(self.producer)
        self.consumer = Consumer({**consumer_settings(self.cfg, self.client_id),
                                  "on_commit": self._on_commit})
        features = OnlineFeatures(self.features_cfg) if self.features_cfg is not None else None
        self.scorer = BatchScorer(self.engine, self.metrics, self.track, self.cfg,
                                  self.features_cfg, features, self.book)
        await self.scorer.set_canary(self.cfg.canary)
        self.consumer.subscribe([self.cfg.topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("stream: consuming %s as group %s, verdicts to %s (%d batches in flight)",
                 self.cfg.topic, self.cfg.consumer_group, self.cfg.verdict_topic,
                 self.cfg.max_batches_in_flight)
        try:
            while not self.stopping.is_set():
                messages = await asyncio.to_thread(self._fetch)
                if messages:
                    self._produce(await self.scorer.score(messages))
                    self.batches += 1
                await self._settle()
                self._refresh_lag()
        finally:
            await self._close(features)

    def request_stop(self) -> None:
        self.stopping.set()

    async def set_canary(self, canary: StreamCanaryConfig | None) -> None:
        """A canary weight change or rollback, from the next batch on (no rejoin)."""
        self.cfg = self.cfg.model_copy(update={"canary": canary})
        if self.scorer is not None:
            self.scorer.cfg = self.cfg
            await self.scorer.set_canary(canary)

    async def _wait_for_model(self) -> bool:
        while self.engine.primary is None:
            if self.stopping.is_set():
                return False
            await asyncio.sleep(READY_POLL_SECONDS)
        return True

    async def _close(self, features: OnlineFeatures | None) -> None:
        if self.consumer is not None:
            await asyncio.to_thread(self._drain)
            await self._commit_now()  # what is pending, before leaving
            await asyncio.to_thread(self.consumer.close)  # leaves the group: partitions move now
        if self.producer is not None:
            await asyncio.to_thread(self.producer.flush, 10.0)
        if features is not None:
            features.close()
        if self.scorer is not None:
            await self.scorer.close()
        log.info("stream: left group %s after %d batches", self.cfg.consumer_group,
                 self.batches)

    # --- the pipeline ----------------------------------------------------------------------

    def _fetch(self) -> list[Any]:
        """In a thread: the next batch, then earlier batches' delivery reports."""
        messages: list[Any] = self.consumer.consume(self.cfg.max_batch_size,
                                                     self.cfg.max_batch_wait_seconds)
        self.producer.poll(0)
        return messages

    def _produce(self, scored: ScoredBatch) -> None:
        assert self.deliveries is not None
        batch = self.deliveries.open(scored.positions)
        send = self.deliveries.send
        topic = self.cfg.verdict_topic
        for v in scored.verdicts:
            values = verdicts_json(v.events, v.scores.tolist(), v.decisions.tolist(), v.missing,
                                   v.model_version, v.track)
            self.deliveries.send_all(batch, topic, values, [e.key for e in v.events])
        for r in scored.rejected:
            send(batch, self.cfg.dead_letter_topic, r.value, r.key,
                 dead_letter_headers(r.reason, self.cfg.topic, r.partition, r.offset))
        batch.record = lambda acked_at: self._record(scored, acked_at)

    async def _settle(self) -> None:
        """Release acknowledged batches; wait while the window of batches in flight is full."""
        assert self.deliveries is not None
        self.producer.poll(0)
        while True:
            if self.deliveries.any_failed:
                await asyncio.sleep(RESEND_DELAY_SECONDS)
                self.deliveries.resend_failed()
            self._release()
            if len(self.deliveries) < self.cfg.max_batches_in_flight:
                break
            await asyncio.to_thread(self.producer.poll, ACK_WAIT_SECONDS)
        self._commit_soon()

    def _release(self) -> None:
        """Oldest acknowledged batches -> their offsets become committable, metrics counted."""
        assert self.deliveries is not None
        done = self.deliveries.pop_acknowledged()
        if not done:
            return
        now, owned = time.time(), self.owned
        for batch in done:
            # A partition lost meanwhile (session expired) is not ours to commit any more.
            self.book.acknowledge([p for p in batch.positions if p[0] in owned])
            if batch.record is not None:
                batch.record(now)

    def _drain(self) -> None:
        """Blocking (a thread or a rebalance callback): until every batch is acknowledged."""
        deliveries = self.deliveries
        if deliveries is None:
            return
        while len(deliveries):
            self.producer.flush(1.0)
            if deliveries.any_failed:
                time.sleep(RESEND_DELAY_SECONDS)
                deliveries.resend_failed()
            self._release()

    def _record(self, scored: ScoredBatch, acked_at: float) -> None:
        m = self.metrics
        for v in scored.verdicts:
            positives = int(np.count_nonzero(v.decisions))
            m.verdicts(v.model_version, positives, len(v.events) - positives)
            stamps = np.array([e.timestamp_ms for e in v.events], dtype=np.float64)
            stamps = stamps[stamps > 0]
            if stamps.size:
                observe_many(m.e2e, np.maximum(acked_at - stamps / 1000.0, 0.0))
        counts: dict[str, int] = {}
        for r in scored.rejected:
            label = _reason_label(r.reason)
            counts[label] = counts.get(label, 0) + 1
        for label, n in counts.items():
            m.dead_lettered(label, n)

    # --- offsets ---------------------------------------------------------------------------

    def _offsets(self, pending: dict[int, int]) -> list[TopicPartition]:
        return [TopicPartition(self.cfg.topic, p, o) for p, o in pending.items()]

    def _commit_soon(self) -> None:
        """An asynchronous commit of what is pending, at most every COMMIT_EVERY_SECONDS; the
        result arrives in :meth:`_on_commit` (a failure leaves the offsets pending)."""
        now = time.monotonic()
        if not self.book.pending or now < self._next_commit:
            return
        self._next_commit = now + COMMIT_EVERY_SECONDS
        try:
            self.consumer.commit(offsets=self._offsets(self.book.pending), asynchronous=True)
        except KafkaException as exc:
            self.metrics.commit(False)
            log.warning("stream: commit failed: %s", exc)

    def _on_commit(self, err: Any, partitions: list[TopicPartition]) -> None:
        if err is not None:
            self.metrics.commit(False)
            log.warning("stream: commit failed (retried with the next offsets): %s", err)
            return
        self.metrics.commit(True)
        self.book.committed({tp.partition: tp.offset for tp in partitions
                             if tp.topic == self.cfg.topic and tp.error is None})

    async def _commit_now(self) -> None:
        pending = dict(self.book.pending)
        if not pending or self.consumer is None:
            return
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                await asyncio.to_thread(self.consumer.commit, offsets=self._offsets(pending),
                                        asynchronous=False)
            except KafkaException as exc:
                self.metrics.commit(False)
                log.warning("stream: commit attempt %d failed: %s", attempt + 1, exc)
                if _fatal_for_commit(exc):
                    return  # partitions moved; their new owner replays (counted there)
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            self.book.committed(pending)
            return

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.owned |= {tp.partition for tp in partitions if tp.topic == self.cfg.topic}
        log.info("stream: partitions assigned: %s", sorted(self.owned))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Inside consume(): before the partitions move, every batch in flight is acknowledged
        # and committed, so their new owner starts exactly after our last verdict.
        mine = [tp.partition for tp in partitions if tp.topic == self.cfg.topic]
        self._drain()
        last = self.book.forget(mine)
        self.owned -= set(mine)
        if last:
            try:
                consumer.commit(offsets=self._offsets(last), asynchronous=False)
            except KafkaException as exc:
                self.metrics.commit(False)
                log.warning("stream: commit on revoke failed: %s", exc)
        for p in mine:
            self.metrics.lag(self.cfg.topic, p, 0)
        log.info("stream: partitions revoked: %s", mine)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        mine = [tp.partition for tp in partitions if tp.topic == self.cfg.topic]
        self.book.forget(mine)
        self.owned -= set(mine)
        for p in mine:
            self.metrics.lag(self.cfg.topic, p, 0)
        log.warning("stream: partitions lost (session expired): %s", mine)

    def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag or self.consumer is None:
            return
        self._next_lag = now + LAG_EVERY_SECONDS
        try:
            assigned = self.consumer.assignment()
            if not assigned:
                return
            for tp in self.consumer.position(assigned):
                _lo, hi = self.consumer.get_watermark_offsets(tp, cached=True)
                if hi >= 0 and tp.offset >= 0:
                    self.metrics.lag(tp.topic, tp.partition, max(0, hi - tp.offset))
        except KafkaException as exc:
            log.debug("stream: lag unavailable: %s", exc)


def _fatal_for_commit(exc: KafkaException) -> bool:
    err: Any = exc.args[0] if exc.args else None
    code = err.code() if hasattr(err, "code") else None
    return code in (KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
                    KafkaError.REBALANCE_IN_PROGRESS, KafkaError._NO_OFFSET)


def _reason_label(reason: str) -> str:
    """A bounded label for the dead-letter counter (the full reason is in the header)."""
    for prefix, label in (("not JSON", "not_json"), ("empty", "empty"),
                          ("event must be", "not_object"), ("online features", "features"),
                          ("not scorable", "not_scorable"), ("model expects", "model_width")):
        if reason.startswith(prefix):
            return label
    return "invalid_event"
