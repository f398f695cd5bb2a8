"""The scoring core shared by both APIs: rows in, scores out, through the batcher or directly.

Servicers validate the request's shape against the current model, then call :meth:`score`.
Finite-value validation is done per model batch (one ``isfinite`` over the whole matrix, ~3 us
for 64 rows) instead of per request; a request with NaN/inf rows fails alone and the rest of its
batch is scored.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from scorefleet.api.scorer_config import BatchingConfig
from scorefleet.scorer.batcher import BatchPolicy, DynamicBatcher, Pending
from scorefleet.scorer.errors import Internal, InvalidInput, ScoringError, Unavailable
from scorefleet.scorer.metrics import RequestRecorder
from scorefleet.scorer.model_store import FloatArray, LoadedModel
from scorefleet.scorer.shadow import ShadowScorer

Result = tuple[FloatArray, LoadedModel]


def batch_policy(cfg: BatchingConfig) -> BatchPolicy:
    return BatchPolicy(cfg.max_batch_size, cfg.max_queue_delay_us / 1e6, cfg.max_queue_size,
                       cfg.dispatch_when_idle)


def non_finite_message(n_bad: int, n: int) -> InvalidInput:
    return InvalidInput(f"features contain NaN or infinity in {n_bad} of {n} events; "
                        "every feature must be a finite float", "non_finite")


def width_message(got: int, want: int) -> InvalidInput:
    return InvalidInput(f"expected {want} features per event, got {got}", "feature_count")


class ScoringEngine:
    """Holds the serving state of one worker: models, batcher, shadow, recorder."""

    def __init__(self, recorder: RequestRecorder) -> None:
        self.recorder = recorder
        self.primary: LoadedModel | None = None
        self.shadow: ShadowScorer | None = None
        self.batcher: DynamicBatcher | None = None
        self.max_events_per_rpc = 8192
        self.draining = False
        self._background: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self.primary is not None and not self.draining

    def configure_batching(self, cfg: BatchingConfig) -> None:
        """Start, retune or stop the batcher to match ``cfg`` (hot-reloadable)."""
        self.max_events_per_rpc = cfg.max_queue_size
        if cfg.enabled and self.batcher is None:
            self.batcher = DynamicBatcher(batch_policy(cfg), self._run_batch, self._on_expired)
            self.batcher.start()
        elif cfg.enabled and self.batcher is not None:
            self.batcher.policy = batch_policy(cfg)
        elif self.batcher is not None:
            old, self.batcher = self.batcher, None
            # Requests already queued still resolve: stop() fails them, so let the queue drain
            # first by scoring what is there.
            self._run_batch(old.queue.drain_all())
            task = asyncio.get_running_loop().create_task(old.stop())
            self._background.add(task)  # the loop only keeps weak references to tasks
            task.add_done_callback(self._background.discard)

    async def score(self, rows: Any, n: int, deadline: float | None) -> Result:
        """Score ``n`` rows (one row as a list of floats, or an [n, F] array)."""
        if self.primary is None:
            raise Unavailable("no model loaded yet; the server is not ready")
        batcher = self.batcher
        if batcher is not None:
            result: Result = await batcher.submit(rows, n, deadline)
            return result
        return self._score_now(rows, n)

    def _score_now(self, rows: Any, n: int) -> Result:
        model = self.primary
        assert model is not None
        x = np.asarray(rows, dtype=np.float32).reshape(n, -1) if isinstance(rows, list) \
            else rows
        if x.shape[1] != model.num_features:
            raise width_message(x.shape[1], model.num_features)
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            raise non_finite_message(int(np.count_nonzero(~finite)), n)
        scores = self._infer(model, x)
        return scores, model

    def _infer(self, model: LoadedModel, x: FloatArray) -> FloatArray:
        started = time.perf_counter()
        try:
            scores = model.run(x)
        except Exception as exc:
            raise Internal(f"model {model.name} {model.version} failed: "
                           f"{str(exc).splitlines()[0][:200]}") from exc
        rec = self.recorder
        rec.inference.observe(time.perf_counter() - started)
        rec.batch_size.observe(len(x))
        shadow = self.shadow
        if shadow is not None:
            # Next loop iteration: after this batch's futures are resolved and, on the direct
            # path, after the handler has returned its response.
            asyncio.get_running_loop().call_soon(shadow.offer, x, scores, model)
        return scores

    def _on_expired(self, items: list[Pending]) -> None:
        self.recorder.expired("queued", len(items))

    def _run_batch(self, batch: list[Pending]) -> None:
        """Batcher callback: assemble, validate, infer, resolve every future."""
        # A cancelled RPC (client gone) leaves a done future: skip its rows.
        batch = [item for item in batch if not item.future.done()]
        if not batch:
            return
        model = self.primary
        if model is None:
            for item in batch:
                item.future.set_exception(Unavailable("model unloaded"))
            return
        loop_now = asyncio.get_running_loop().time()
        rec = self.recorder
        for item in batch:
            rec.queue_wait.observe(loop_now - item.enqueued)
        width = model.num_features
        try:
            x = _assemble(batch, width)
        except ScoringError:
            # Slow path: some request does not match the model (it changed while queued).
            batch = _fail_bad_width(batch, width)
            if not batch:
                return
            x = _assemble(batch, width)
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            batch, x = _fail_non_finite(batch, x, finite)
            if not batch:
                return
        try:
            scores = self._infer(model, x)
        except ScoringError as exc:
            for item in batch:
                item.future.set_exception(exc)
            return
        if len(batch) == 1:
            batch[0].future.set_result((scores, model))
        else:
            offset = 0
            for item in batch:
                item.future.set_result((scores[offset:offset + item.n], model))
                offset += item.n
        if self.batcher is not None:
            rec.queued.set(self.batcher.queue.queued_events)


def _assemble(batch: list[Pending], width: int) -> FloatArray:
    """One [rows, width] float32 matrix from the batch's requests."""
    if all(isinstance(item.rows, list) for item in batch):
        # Fast path for unary requests: one numpy call over a list of lists (~0.5 us/row)
        # beats one array per request (~2 us each).
        try:
            x = np.array([item.rows for item in batch], dtype=np.float32)
        except ValueError as exc:
            raise InvalidInput("ragged rows", "feature_count") from exc
    else:
        parts = [np.asarray(item.rows, dtype=np.float32).reshape(item.n, -1) for item in batch]
        if any(p.shape[1] != width for p in parts):
            raise InvalidInput("ragged rows", "feature_count")
        x = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if x.ndim != 2 or x.shape[1] != width:
        raise InvalidInput("ragged rows", "feature_count")
    return x


def _row_width(item: Pending) -> int:
    if isinstance(item.rows, list):
        return len(item.rows)
    return int(np.asarray(item.rows).reshape(item.n, -1).shape[1])


def _fail_bad_width(batch: list[Pending], width: int) -> list[Pending]:
    keep = []
    for item in batch:
        got = _row_width(item)
        if got == width:
            keep.append(item)
        else:
            item.future.set_exception(width_message(got, width))
    return keep


def _fail_non_finite(batch: list[Pending], x: FloatArray,
                     finite: Any) -> tuple[list[Pending], FloatArray]:
    keep: list[Pending] = []
    keep_rows = np.ones(len(x), dtype=bool)
    offset = 0
    for item in batch:
        ok = finite[offset:offset + item.n]
        if ok.all():
            keep.append(item)
        else:
            keep_rows[offset:offset + item.n] = False
            item.future.set_exception(
                non_finite_message(int(np.count_nonzero(~ok)), item.n))
        offset += item.n
    return keep, x[keep_rows]
