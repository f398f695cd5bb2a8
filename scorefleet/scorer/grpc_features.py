"""Online features on the gRPC path: requests that carry entity keys get the entity's features
from Redis appended to their own, with the stream's reader and miss rules (stream/features.py).

    Score / ScoreBatch with entity_key(s) --> the event's own features (model width minus the
    online ones) + one pipelined Redis read for the request --> the model's full row

A request without entity keys carries every feature and reads nothing (what a candidate gets
from the stable track's stream consumers). The miss policy is the pipeline's ``onMiss``:
``Defaults`` scores with the defaults and says so in ``features_missing`` per event;
``DeadLetter`` (there is no dead-letter topic for an RPC) fails the call: FAILED_PRECONDITION
naming the key, or UNAVAILABLE when Redis could not be read. A batch fails or succeeds whole,
like every ScoreBatch.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter

from scorefleet.api.scorer_config import OnlineFeaturesConfig
from scorefleet.scorer.errors import FailedPrecondition, InvalidInput, Unavailable
from scorefleet.scorer.metrics import TRACK_LABELS, Metrics


class GrpcFeatures:
    """One worker's Redis reader for RPCs; follows the config's ``onlineFeatures`` section."""

    def __init__(self, metrics: Metrics, pipeline: str, track: str) -> None:
        self.cfg: OnlineFeaturesConfig | None = None
        self.reader: Any = None  # stream.features.OnlineFeatures, imported only when used
        self._labels = (pipeline, track)
        self._missing = Counter(
            "scorefleet_grpc_features_missing_events",
            "Events of RPCs whose online features were missing, by reason (absent, "
            "incomplete, invalid, stale, unavailable), before the miss policy applied.",
            (*TRACK_LABELS, "reason"), registry=metrics.registry)

    @property
    def width(self) -> int:
        return len(self.cfg.features) if self.cfg is not None else 0

    def apply(self, cfg: OnlineFeaturesConfig | None) -> None:
        if cfg == self.cfg:
            return
        old = self.reader
        self.reader = None
        if cfg is not None:
            from scorefleet.scorer.stream.features import OnlineFeatures

            self.reader = OnlineFeatures(cfg)
        self.cfg = cfg
        if old is not None:
            old.close()

    def inline_width(self, model_width: int) -> int:
        """How many features a keyed event carries itself; InvalidInput if keys make no sense."""
        if self.cfg is None:
            raise InvalidInput("entity_key given, but this pipeline reads no online features "
                               "(spec.features.redis is not set)", "entity_key")
        if model_width <= self.width:
            raise InvalidInput(f"the model takes {model_width} features but "
                               f"spec.features.redis names {self.width}", "feature_count")
        return model_width - self.width

    async def complete(self, inline: npt.NDArray[np.float32], entities: list[str],
                       ) -> tuple[npt.NDArray[np.float32], list[bool]]:
        """The model's rows (own features, then online ones) and, per row, whether the online
        part is the defaults."""
        cfg, reader = self.cfg, self.reader
        assert cfg is not None and reader is not None
        if any(not e for e in entities):
            raise InvalidInput("entity_keys must be non-empty, one per row", "entity_key")
        rows = await asyncio.to_thread(reader.read, entities, time.time())
        counts: dict[str, int] = {}
        for reason in rows.missing:
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
        for reason, n in counts.items():
            self._missing.labels(*self._labels, reason).inc(n)
        if counts and cfg.on_miss == "DeadLetter":
            if rows.error:
                raise Unavailable(f"online features unavailable (onMiss: DeadLetter): "
                                  f"{rows.error}")
            i, reason = next((i, r) for i, r in enumerate(rows.missing) if r is not None)
            raise FailedPrecondition(f"online features {reason} for key "
                                     f"{reader.key(entities[i])} (row {i}); onMiss: "
                                     "DeadLetter refuses to score without them")
        x = np.hstack([inline, rows.values]).astype(np.float32)
        return x, [r is not None for r in rows.missing]

    def close(self) -> None:
        self.apply(None)
