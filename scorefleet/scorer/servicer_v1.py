"""``scorefleet.v1.Scorer``: Score (one event) and ScoreBatch (many events, or a packed matrix).

Handlers take wire bytes (see :mod:`scorefleet.scorer.handlers`) or, in tests, messages."""

from __future__ import annotations

from typing import Any

import numpy as np

from scorefleet.scorer.engine import ScoringEngine, width_message
from scorefleet.scorer.errors import InvalidInput, ScoringError, Unavailable
from scorefleet.scorer.grpc_features import GrpcFeatures
from scorefleet.scorer.handlers import parse
from scorefleet.scorer.model_store import LoadedModel
from scorefleet.scorer.protos import v1_pb2
from scorefleet.scorer.rpc import deadline_of, guarded


def _model(engine: ScoringEngine) -> LoadedModel:
    model = engine.primary
    if model is None:
        raise Unavailable("no model loaded yet; the server is not ready")
    return model


class ScorerServicer:
    """Handlers are coroutines on the worker's event loop (grpc.aio)."""

    def __init__(self, engine: ScoringEngine, track: str,
                 features: GrpcFeatures | None = None) -> None:
        self.engine = engine
        self.track = track
        self.features = features

    async def Score(self, request: Any, context: Any) -> Any:
        return await guarded(self.engine, "Score", context, self._score(request, context))

    async def ScoreBatch(self, request: Any, context: Any) -> Any:
        return await guarded(self.engine, "ScoreBatch", context,
                             self._score_batch(request, context))

    async def _score(self, data: Any, context: Any) -> tuple[Any, str, int]:
        request = data if isinstance(data, v1_pb2.ScoreRequest) else parse(v1_pb2.ScoreRequest,
                                                                           data)
        model = _model(self.engine)
        event = request.event
        features = event.features
        missing = False
        try:
            if event.entity_key:
                # features[:] is a plain list (~0.4 us); the batch turns many into one array.
                rows, missing_rows = await self._with_online(
                    model, [features[:]], len(features), [event.entity_key])
                missing = missing_rows[0]
            elif len(features) != model.num_features:
                raise width_message(len(features), model.num_features)
            else:
                rows = features[:]
            scores, used = await self.engine.score(rows, 1, deadline_of(context))
        except ScoringError as exc:
            exc.events = 1
            raise
        score = float(scores[0])
        response = v1_pb2.ScoreResponse(
            event_id=event.event_id, score=score, decision=score >= used.threshold32,
            threshold=used.threshold, model_name=used.name, model_version=used.version,
            track=self.track, features_missing=missing)
        return response, used.version, 1

    async def _with_online(self, model: LoadedModel, own: Any, width: int, entities: list[str],
                           ) -> tuple[Any, list[bool]]:
        """Rows of the event's own features + the entities' online ones (grpc_features.py)."""
        features = self.features
        if features is None:
            raise InvalidInput("entity_key given, but this server reads no online features",
                               "entity_key")
        want = features.inline_width(model.num_features)
        if width != want:
            raise InvalidInput(f"with entity keys, events carry their own {want} features "
                               f"(the model's {model.num_features} minus "
                               f"{model.num_features - want} online ones), got {width}",
                               "feature_count")
        return await features.complete(np.asarray(own, dtype=np.float32).reshape(-1, width),
                                       entities)

    async def _score_batch(self, data: Any, context: Any) -> tuple[Any, str, int]:
        request = data if isinstance(data, v1_pb2.ScoreBatchRequest) else parse(
            v1_pb2.ScoreBatchRequest, data)
        engine = self.engine
        model = _model(engine)
        width = model.num_features
        try:
            entities = _entities_of(request)
            if entities is not None:
                if self.features is None:
                    raise InvalidInput("entity keys given, but this server reads no online "
                                       "features", "entity_key")
                width = self.features.inline_width(width)
            try:
                rows, n = _rows_of(request, width, engine.max_events_per_rpc)
            except InvalidInput as exc:
                if entities is None or exc.reason != "feature_count":
                    raise
                raise InvalidInput(f"{exc.message} (with entity keys, events carry their own "
                                   f"{width}: the model's {model.num_features} minus "
                                   f"{model.num_features - width} online ones)",
                                   exc.reason) from None
            if entities is not None and len(entities) != n:
                raise InvalidInput(f"{len(entities)} entity keys for {n} rows; give none or one "
                                   "per row", "shape")
        except ScoringError as exc:
            exc.events = len(request.events) or len(request.matrix.features) // max(1, width)
            raise
        missing: list[bool] = []
        try:
            if entities is not None:
                rows, missing = await self._with_online(model, rows, width, entities)
            scores, used = await engine.score(rows, n, deadline_of(context))
        except ScoringError as exc:
            exc.events = n
            raise
        response = v1_pb2.ScoreBatchResponse(
            scores=scores.tolist(), decisions=used.decide(scores).tolist(),
            threshold=used.threshold, model_name=used.name, model_version=used.version,
            track=self.track, features_missing=missing)
        return response, used.version, n


def _entities_of(request: Any) -> list[str] | None:
    """The request's entity keys (online features), or None when it carries every feature."""
    if request.HasField("matrix"):
        keys = list(request.matrix.entity_keys)
        return keys or None
    keyed = [e.entity_key for e in request.events]
    if not any(keyed):
        return None
    if not all(keyed):
        raise InvalidInput("set entity_key on every event of the batch or on none", "entity_key")
    return keyed


def _rows_of(request: Any, width: int, max_events: int) -> tuple[Any, int]:
    """The request's rows as an [n, width] float32 array, or InvalidInput naming the problem."""
    events = request.events
    if request.HasField("matrix"):
        if len(events):
            raise InvalidInput("set either events or matrix, not both", "shape")
        matrix = request.matrix
        flat = matrix.features
        if matrix.num_features != width:
            raise InvalidInput(f"matrix.num_features is {matrix.num_features}; the model "
                               f"expects {width} features per event", "feature_count")
        if len(flat) == 0:
            raise InvalidInput("empty batch: matrix.features is empty", "empty")
        if len(flat) % width:
            raise InvalidInput(f"matrix.features has {len(flat)} floats, not a multiple of "
                               f"num_features={width}", "shape")
        n = len(flat) // width
        _check_size(n, max_events)
        for name in ("event_ids", "tenants"):
            given = len(getattr(matrix, name))
            if given not in (0, n):
                raise InvalidInput(f"matrix.{name} has {given} entries for {n} rows; give "
                                   "none or one per row", "shape")
        # A packed repeated float converts to numpy in one copy (~2 us for 64 x 32).
        return np.array(flat, dtype=np.float32).reshape(n, width), n
    n = len(events)
    if n == 0:
        raise InvalidInput("empty batch: no events (set events or matrix)", "empty")
    _check_size(n, max_events)
    lists = [e.features[:] for e in events]
    try:
        x = np.array(lists, dtype=np.float32)
    except ValueError:
        x = None
    if x is None or x.ndim != 2 or x.shape[1] != width:
        for i, row in enumerate(lists):
            if len(row) != width:
                raise InvalidInput(f"event {i} (event_id {events[i].event_id!r}): expected "
                                   f"{width} features, got {len(row)}", "feature_count")
    return x, n


def _check_size(n: int, max_events: int) -> None:
    if n > max_events:
        raise InvalidInput(f"batch of {n} events exceeds the limit of {max_events} per RPC "
                           "(batching.maxQueueSize); split it", "oversized")
