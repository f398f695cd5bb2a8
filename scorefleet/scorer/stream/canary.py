"""A canary on a stream: which events the candidate scores, and the call that scores them.

Every event of a stream pipeline is consumed once, by the stable track's consumer group; the
stable worker that holds its partition decides, per event, which track scores it:

    bucket = first 8 bytes of blake2b(event key) mod 10,000      (the Kafka message key; the
    candidate  <=> bucket < weight x 100                           event id when it has none)

So each event is scored by exactly one track, decided in one place: no second consumer group
whose position could run ahead of or behind the stable one, nothing for two processes to agree
on. The hash is stable across processes and restarts (not Python's ``hash``) and monotone in the
weight: raising it from 5 to 25 keeps every key that was on the candidate there. A rollback is
weight 0 (or no canary section) in the stable config, applied between two batches: from the
next batch on, the whole share is scored by the stable model; nothing is skipped or scored
twice by design (a crash replay re-decides with the weight of the moment; replays are counted).

The candidate's share goes to the candidate track's pods as one ``ScoreBatch`` (packed matrix),
so its latency and errors are measured on the candidate pods like any canary traffic. If that
call fails or times out, those events are scored by the stable model, marked ``track: stable``
and counted (``scorefleet_stream_canary_fallback_events_total``): a broken candidate never
loses or delays an event beyond the timeout.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from scorefleet.api.scorer_config import StreamCanaryConfig
from scorefleet.scorer.protos import v1_pb2, v1_pb2_grpc

log = logging.getLogger(__name__)

BUCKETS = 10_000


def bucket(key: bytes) -> int:
    """The event's place in [0, BUCKETS): stable across processes, uniform over keys."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % BUCKETS


def candidate_share(keys: list[bytes], weight: int) -> npt.NDArray[np.bool_]:
    """Per event: does the candidate score it at this weight (percent)?"""
    if weight <= 0:
        return np.zeros(len(keys), dtype=bool)
    if weight >= 100:
        return np.ones(len(keys), dtype=bool)
    cut = weight * (BUCKETS // 100)
    return np.fromiter((bucket(k) < cut for k in keys), dtype=bool, count=len(keys))


@dataclass(frozen=True)
class CandidateScores:
    scores: npt.NDArray[np.float32]
    decisions: npt.NDArray[np.bool_]
    model_version: str
    track: str  # as the candidate's pods name themselves


class CandidateUnavailable(Exception):
    """The candidate could not score the share (error, timeout, wrong answer)."""


class CandidateClient:
    """One gRPC channel to the candidate track's Service, used from the worker's event loop."""

    def __init__(self, cfg: StreamCanaryConfig) -> None:
        self.cfg = cfg
        self.channel = grpc.aio.insecure_channel(cfg.address)
        self.stub = v1_pb2_grpc.ScorerStub(self.channel)

    async def score(self, x: npt.NDArray[np.float32]) -> CandidateScores:
        n, width = x.shape
        request = v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(
            num_features=width, features=x.reshape(-1).tolist()))
        try:
            reply: Any = await self.stub.ScoreBatch(request, timeout=self.cfg.timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            raise CandidateUnavailable(f"{exc.code().name}: {exc.details()}") from None
        if len(reply.scores) != n or len(reply.decisions) != n:
            raise CandidateUnavailable(f"answered {len(reply.scores)} scores for {n} events")
        return CandidateScores(np.asarray(reply.scores, dtype=np.float32),
                               np.asarray(reply.decisions, dtype=bool), reply.model_version,
                               reply.track or "candidate")

    async def close(self) -> None:
        await self.channel.close()
