"""One fetched batch, from messages to scores: decode, enrich from Redis, assemble, score.

::

    messages --> decode (events | rejected) --> Redis read (one pipeline)
        --> model input (inline + online features) --> canary share? (stream/canary.py)
        --> score: the stable share with the worker's ScoringEngine (same model, batcher and
            shadow as gRPC), the candidate's share over gRPC at the same time --> ScoredBatch

Nothing here produces or commits: the runner sends a :class:`ScoredBatch`'s verdicts and dead
letters and commits its positions once they are acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from confluent_kafka import KafkaError, Message

from scorefleet.api.scorer_config import (
    KafkaStreamConfig,
    OnlineFeaturesConfig,
    StreamCanaryConfig,
)
from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.errors import Expired, ScoringError, Shed, Unavailable
from scorefleet.scorer.model_store import LoadedModel
from scorefleet.scorer.stream.canary import (
    CandidateClient,
    CandidateUnavailable,
    candidate_share,
)
from scorefleet.scorer.stream.events import Decoder, Event, Rejected
from scorefleet.scorer.stream.features import OnlineFeatures
from scorefleet.scorer.stream.metrics import StreamMetrics
from scorefleet.scorer.stream.offsets import OffsetBook

log = logging.getLogger(__name__)

READY_POLL_SECONDS = 0.2


@dataclass
class Verdicts:
    """Events scored by one model of one track: one verdict each."""

    events: list[Event]
    scores: npt.NDArray[np.float32]
    decisions: npt.NDArray[np.bool_]
    model_version: str
    track: str
    missing: list[str | None]  # per event: why its online features are missing, if they are


@dataclass
class ScoredBatch:
    positions: list[tuple[int, int]]  # every message fetched, scored or not
    verdicts: list[Verdicts]
    rejected: list[Rejected]          # to the dead-letter topic

    @property
    def scored(self) -> int:
        return sum(len(v.events) for v in self.verdicts)


class BatchScorer:
    def __init__(self, engine: ScoringEngine, metrics: StreamMetrics, track: str,
                 cfg: KafkaStreamConfig, features_cfg: OnlineFeaturesConfig | None,
                 features: OnlineFeatures | None, book: OffsetBook) -> None:
        self.engine = engine
        self.metrics = metrics
        self.track = track
        self.cfg = cfg
        self.features_cfg = features_cfg
        self.features = features
        self.book = book
        self.canary: StreamCanaryConfig | None = None
        self.candidate: CandidateClient | None = None
        self._next_fallback_log = 0.0

    async def set_canary(self, canary: StreamCanaryConfig | None) -> None:
        """Takes effect from the next batch (a weight change or a rollback: no restart)."""
        if canary == self.canary:
            return
        old = self.candidate
        if canary is None or canary.weight == 0:
            self.candidate = None
        elif old is None or self.canary is None or (canary.address, canary.timeout_seconds) != (
                self.canary.address, self.canary.timeout_seconds):
            self.candidate = CandidateClient(canary)
        self.canary = canary
        if old is not None and old is not self.candidate:
            await old.close()
        if canary is not None:
            log.info("stream: canary weight %d%% -> %s", canary.weight, canary.address)

    async def close(self) -> None:
        await self.set_canary(None)

    async def score(self, messages: list[Message]) -> ScoredBatch:
        events, rejected, positions = self._decode(messages)
        self.metrics.consumed.inc(len(positions))
        missing: list[str | None] = [None] * len(events)
        online = None
        if self.features is not None and events:
            events, rejected, online, missing = await self._enrich(events, rejected)
        verdicts: list[Verdicts] = []
        if events:
            events, missing, x = _assemble(events, online, missing, rejected)
            verdicts = await self._score_tracks(events, missing, x, rejected)
        return ScoredBatch(positions, verdicts, rejected)

    async def _score_tracks(self, events: list[Event], missing: list[str | None],
                            x: npt.NDArray[np.float32], rejected: list[Rejected],
                            ) -> list[Verdicts]:
        """The candidate's share (if a canary runs) over gRPC, the rest here, concurrently."""
        canary, candidate = self.canary, self.candidate
        share = None
        if canary is not None and candidate is not None and events:
            share = candidate_share([e.key if e.key is not None else e.event_id.encode()
                                     for e in events], canary.weight)
        if share is None or not share.any():
            return _present(await self._score_local(events, missing, x, rejected))
        theirs, ours = np.flatnonzero(share), np.flatnonzero(~share)
        assert candidate is not None
        call = asyncio.ensure_future(candidate.score(x[theirs]))
        try:
            out = _present(await self._score_local([events[i] for i in ours],
                                                   [missing[i] for i in ours], x[ours],
                                                   rejected))
        except BaseException:
            call.cancel()  # stopping mid-batch: the batch is replayed, never half-produced
            raise
        picked = [events[i] for i in theirs]
        picked_missing = [missing[i] for i in theirs]
        try:
            got = await call
        except CandidateUnavailable as exc:
            self._fallback(len(picked), str(exc))
            return out + _present(await self._score_local(picked, picked_missing, x[theirs],
                                                          rejected))
        return [*out, Verdicts(picked, got.scores, got.decisions, got.model_version, got.track,
                               picked_missing)]

    def _fallback(self, n: int, why: str) -> None:
        self.metrics.canary_fallback.inc(n)
        now = time.monotonic()
        if now >= self._next_fallback_log:  # one line per 10 s, not one per batch
            self._next_fallback_log = now + 10.0
            log.warning("stream: candidate could not score %d events (%s); the stable model "
                        "scored them", n, why)

    async def _score_local(self, events: list[Event], missing: list[str | None],
                           x: npt.NDArray[np.float32], rejected: list[Rejected],
                           ) -> Verdicts | None:
        scores, model = await self._score(events, x, rejected)
        if model is None:
            return None
        return Verdicts(events, scores, model.decide(scores), model.version, self.track,
                        missing)

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
        decode, add_event, add_position = decoder.decode, events.append, positions.append
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("stream: fetch error: %s", err)
                continue
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            add_position((partition, offset))
            ts_type, ts = msg.timestamp()
            decoded = decode(partition, offset, msg.key(), msg.value(),
                             ts if ts_type != 0 else -1)
            if type(decoded) is Event:
                add_event(decoded)
            else:
                rejected.append(decoded)  # type: ignore[arg-type]
        duplicates = self.book.replays(positions)
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


def _present(verdicts: Verdicts | None) -> list[Verdicts]:
    return [] if verdicts is None or not verdicts.events else [verdicts]


def _assemble(events: list[Event], online: Any, missing: list[str | None],
              rejected: list[Rejected]) -> tuple[list[Event], list[str | None], Any]:
    """The model input: inline features then online ones, one float32 row per event."""
    inline = np.array([e.features for e in events], dtype=np.float32).reshape(len(events), -1)
    x = inline if online is None else np.hstack([inline, online]).astype(np.float32)
    finite = np.isfinite(x).all(axis=1)
    if finite.all():
        return events, missing, x
    # Finite as JSON numbers but beyond float32 (|v| > 3.4e38): those events alone.
    for i in np.flatnonzero(~finite).tolist():
        rejected.append(events[i].reject("features out of float32 range (|value| > 3.4e38)"))
    keep = np.flatnonzero(finite).tolist()
    return [events[i] for i in keep], [missing[i] for i in keep], x[keep]
