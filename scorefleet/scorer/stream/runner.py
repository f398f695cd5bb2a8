"""The stream loop of one worker: fetch a batch, enrich, score, produce, acknowledge, commit.

::

    fetch (<= maxBatchSize, <= maxBatchWait) --> decode --> Redis read (one pipeline)
        --> score (the worker's ScoringEngine: same model, batcher and shadow as gRPC)
        --> produce verdicts + dead letters --> wait for every acknowledgement
        --> offsets pending --> commit --> next fetch

Nothing is committed before its verdict is acknowledged, so a crash at any point replays at most
the batch in hand (at-least-once). A message that cannot be decoded or scored goes to the
dead-letter topic, and the batch goes on: no crash loop on a poison message. Producer failures
(a broker restart) hold the batch until the broker is back; nothing is skipped.

Stop (SIGTERM): the loop finishes the batch in hand (scored, acknowledged, committed), then the
consumer leaves the group (its partitions move to the other pods at once instead of after the
session timeout) and the worker exits.

Blocking client calls (fetch, flush, commit, the Redis read) run in a thread so the event loop
keeps serving gRPC meanwhile; they are awaited one at a time, so the consumer is never used from
two threads at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.cimpl import TopicPartition

from scorefleet.api.scorer_config import KafkaStreamConfig, OnlineFeaturesConfig
from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.errors import Expired, ScoringError, Shed, Unavailable
from scorefleet.scorer.metrics import observe_many
from scorefleet.scorer.model_store import LoadedModel
from scorefleet.scorer.stream.clients import consumer_settings, producer_settings
from scorefleet.scorer.stream.events import (
    Decoder,
    Event,
    Rejected,
    dead_letter_headers,
    verdict_json,
)
from scorefleet.scorer.stream.features import OnlineFeatures
from scorefleet.scorer.stream.metrics import StreamMetrics
from scorefleet.scorer.stream.offsets import OffsetBook

log = logging.getLogger(__name__)

LAG_EVERY_SECONDS = 1.0
COMMIT_ATTEMPTS = 3
READY_POLL_SECONDS = 0.2


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
        self.features: OnlineFeatures | None = None
        self._failed: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self._next_lag = 0.0
        self.batches = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until :meth:`request_stop`; always leaves the group on the way out."""
        if not await self._wait_for_model():
            return
        # One delivery callback for every message, set once (cheaper than one per produce).
        self.producer = Producer({**producer_settings(self.cfg, self.client_id),
                                  "on_delivery": self._on_delivery})
        self.consumer = Consumer(consumer_settings(self.cfg, self.client_id))
        if self.features_cfg is not None:
            self.features = OnlineFeatures(self.features_cfg)
        self.consumer.subscribe([self.cfg.topic], on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        log.info("stream: consuming %s as group %s, verdicts to %s", self.cfg.topic,
                 self.cfg.consumer_group, self.cfg.verdict_topic)
        try:
            while not self.stopping.is_set():
                messages = await asyncio.to_thread(self.consumer.consume,
                                                   self.cfg.max_batch_size,
                                                   self.cfg.max_batch_wait_seconds)
                if messages:
                    await self._process(messages)
                self._refresh_lag()
        finally:
            await self._close()

    def request_stop(self) -> None:
        self.stopping.set()

    async def _wait_for_model(self) -> bool:
        while self.engine.primary is None:
            if self.stopping.is_set():
                return False
            await asyncio.sleep(READY_POLL_SECONDS)
        return True

    async def _close(self) -> None:
        consumer, producer = self.consumer, self.producer
        if consumer is not None:
            # Offsets still pending (a commit failed) get one more try before leaving.
            await self._commit()
            await asyncio.to_thread(consumer.close)  # leaves the group: partitions move now
        if producer is not None:
            await asyncio.to_thread(producer.flush, 10.0)
        if self.features is not None:
            self.features.close()
        log.info("stream: left group %s after %d batches", self.cfg.consumer_group,
                 self.batches)

    # --- one batch -------------------------------------------------------------------------

    async def _process(self, messages: list[Message]) -> None:
        events, rejected, positions = self._decode(messages)
        self.metrics.consumed.inc(len(positions))
        missing: list[str | None] = [None] * len(events)
        online = None
        if self.features is not None and events:
            events, rejected, online, missing = await self._enrich(events, rejected)
        x = None
        if events:
            events, missing, x = self._assemble(events, online, missing, rejected)
        scores, model = await self._score(events, x, rejected)
        if model is None:
            events = []
        self._produce(events, scores, model, missing, rejected)
        await self._await_acknowledgements()
        produced_at = time.time()
        self._record(events, scores, model, rejected, produced_at)
        self.book.acknowledge(positions)
        await self._commit()
        self.batches += 1

    def _decode(self, messages: list[Message],
                ) -> tuple[list[Event], list[Rejected], list[tuple[int, int]]]:
        model = self.engine.primary
        assert model is not None
        online_width = len(self.features_cfg.features) if self.features_cfg else 0
        decoder = Decoder(self.cfg.event_id_field, self.cfg.features_field,
                          self.features_cfg.key_field() if self.features_cfg else None,
                          max(0, model.num_features - online_width))
        events: list[Event] = []
        rejected: list[Rejected] = []
        positions: list[tuple[int, int]] = []
        book = self.book
        duplicates = 0
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("stream: fetch error: %s", err)
                continue
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            positions.append((partition, offset))
            if book.is_replay(partition, offset):
                duplicates += 1
            ts_type, ts = msg.timestamp()
            decoded = decoder.decode(partition, offset, msg.key(), msg.value(),
                                     ts if ts_type != 0 else -1)
            if isinstance(decoded, Event):
                events.append(decoded)
            else:
                rejected.append(decoded)
        if model.num_features < online_width:
            rejected += [e.reject(f"model expects {model.num_features} features but "
                                  f"onlineFeatures names {online_width}") for e in events]
            events = []
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        return events, rejected, positions

    async def _enrich(self, events: list[Event], rejected: list[Rejected],
                      ) -> tuple[list[Event], list[Rejected], Any, list[str | None]]:
        assert self.features is not None and self.features_cfg is not None
        started = time.perf_counter()
        rows = await asyncio.to_thread(self.features.read, [e.entity or "" for e in events],
                                       time.time())
        self.metrics.feature_read.observe(time.perf_counter() - started)
        if rows.error:
            log.warning("stream: online features unavailable for %d events (%s): %s",
                        len(events), self.features_cfg.on_miss, rows.error)
        counts: dict[str, int] = {}
        for reason in rows.missing:
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
        for reason, n in counts.items():
            self.metrics.features_missing(reason, n)
        if not counts or self.features_cfg.on_miss == "Defaults":
            return events, rejected, rows.values, rows.missing
        keep = [i for i, r in enumerate(rows.missing) if r is None]
        for i, reason in enumerate(rows.missing):
            if reason is not None:
                e = events[i]
                detail = f": {rows.error}" if rows.error else ""
                rejected.append(e.reject(f"online features {reason} for key "
                                         f"{self.features.key(e.entity or '')}{detail}"))
        return [events[i] for i in keep], rejected, rows.values[keep], [None] * len(keep)

    @staticmethod
    def _assemble(events: list[Event], online: Any, missing: list[str | None],
                  rejected: list[Rejected]) -> tuple[list[Event], list[str | None], Any]:
        """The model input: inline features then online ones, one float32 row per event."""
        inline = np.array([e.features for e in events], dtype=np.float32).reshape(
            len(events), -1)
        x = inline if online is None else np.hstack([inline, online]).astype(np.float32)
        finite = np.isfinite(x).all(axis=1)
        if finite.all():
            return events, missing, x
        # Finite as JSON numbers but beyond float32 (|v| > 3.4e38): those events alone.
        for i in np.flatnonzero(~finite).tolist():
            rejected.append(events[i].reject("features out of float32 range (|value| > 3.4e38)"))
        keep = np.flatnonzero(finite).tolist()
        return [events[i] for i in keep], [missing[i] for i in keep], x[keep]

    async def _score(self, events: list[Event], x: Any, rejected: list[Rejected],
                     ) -> tuple[Any, LoadedModel | None]:
        if not events:
            return None, None
        while True:
            try:
                return await self._score_chunks(x)
            except (Unavailable, Shed, Expired):
                # No model right now, or the batcher is full of gRPC work: the events are
                # fine, so hold the batch and retry; dropping them would lose them.
                await asyncio.sleep(READY_POLL_SECONDS)
            except ScoringError as exc:
                rejected += [e.reject(f"not scorable: {exc.message}") for e in events]
                return None, None

    async def _score_chunks(self, x: Any) -> tuple[Any, LoadedModel]:
        """Score in pieces the batcher's queue bound admits (maxBatchSize may exceed it)."""
        step = max(1, self.engine.max_events_per_rpc // 2)
        if len(x) <= step:
            scores, model = await self.engine.score(x, len(x), None)
            return scores, model
        parts, models = [], set()
        for start in range(0, len(x), step):
            chunk = x[start:start + step]
            scores, model = await self.engine.score(chunk, len(chunk), None)
            parts.append(scores)
            models.add(model)
        if len(models) > 1:
            # A model swap between chunks: score the whole batch again with one model, so a
            # batch's verdicts name one version.
            return await self._score_chunks(x)
        return np.concatenate(parts), models.pop()

    # --- producing and acknowledgements ----------------------------------------------------

    def _on_delivery(self, err: Any, msg: Message) -> None:
        if err is not None:
            self._failed.append((str(msg.topic()), msg.key(), msg.value(), msg.headers()))
            log.warning("stream: delivery to %s failed (%s); will resend", msg.topic(), err)

    def _send(self, topic: str, value: bytes | None, key: bytes | None,
              headers: Any = None) -> None:
        producer = self.producer
        while True:
            try:
                if headers is None:
                    producer.produce(topic, value, key)
                else:
                    producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain

    def _produce(self, events: list[Event], scores: Any, model: LoadedModel | None,
                 missing: list[str | None], rejected: list[Rejected]) -> None:
        topic = self.cfg.verdict_topic
        track = self.track
        if events and model is not None:
            version = model.version
            decisions = model.decide(scores)
            for e, score, decision, miss in zip(events, scores.tolist(), decisions.tolist(),
                                                missing, strict=True):
                self._send(topic, verdict_json(e.event_id, score, decision, version, track,
                                               miss is not None, e), e.key)
        for r in rejected:
            self._send(self.cfg.dead_letter_topic, r.value, r.key,
                       dead_letter_headers(r.reason, self.cfg.topic, r.partition, r.offset))

    async def _await_acknowledgements(self) -> None:
        """Until every message of the batch is acknowledged; failed ones are sent again."""
        producer = self.producer
        while True:
            while await asyncio.to_thread(producer.flush, 1.0) > 0:
                pass
            if not self._failed:
                return
            failed, self._failed = self._failed, []
            await asyncio.sleep(0.5)
            for topic, key, value, headers in failed:
                self._send(topic, value, key, headers)

    def _record(self, events: list[Event], scores: Any, model: LoadedModel | None,
                rejected: list[Rejected], produced_at: float) -> None:
        m = self.metrics
        if events and model is not None:
            positives = int(np.count_nonzero(model.decide(scores)))
            m.verdicts(model.version, positives, len(events) - positives)
            stamps = np.array([e.timestamp_ms for e in events], dtype=np.float64)
            stamps = stamps[stamps > 0]
            if stamps.size:
                observe_many(m.e2e, np.maximum(produced_at - stamps / 1000.0, 0.0))
        counts: dict[str, int] = {}
        for r in rejected:
            label = _reason_label(r.reason)
            counts[label] = counts.get(label, 0) + 1
        for label, n in counts.items():
            m.dead_lettered(label, n)

    # --- offsets ---------------------------------------------------------------------------

    async def _commit(self) -> None:
        pending = dict(self.book.pending)
        if not pending or self.consumer is None:
            return
        offsets = [TopicPartition(self.cfg.topic, p, o) for p, o in pending.items()]
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                await asyncio.to_thread(self.consumer.commit, offsets=offsets,
                                        asynchronous=False)
            except KafkaException as exc:
                self.metrics.commit(False)
                log.warning("stream: commit attempt %d failed: %s", attempt + 1, exc)
                if _fatal_for_commit(exc):
                    return  # partitions moved; their new owner replays (counted there)
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            self.metrics.commit(True)
            self.book.committed(pending)
            return

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(): no batch is in hand, so pending offsets are all acknowledged.
        mine = [tp.partition for tp in partitions if tp.topic == self.cfg.topic]
        last = self.book.forget(mine)
        if last:
            try:
                consumer.commit(offsets=[TopicPartition(self.cfg.topic, p, o)
                                         for p, o in last.items()], asynchronous=False)
                self.metrics.commit(True)
            except KafkaException as exc:
                self.metrics.commit(False)
                log.warning("stream: commit on revoke failed: %s", exc)
        for p in mine:
            self.metrics.lag(self.cfg.topic, p, 0)
        log.info("stream: partitions revoked: %s", mine)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        mine = [tp.partition for tp in partitions if tp.topic == self.cfg.topic]
        self.book.forget(mine)
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

