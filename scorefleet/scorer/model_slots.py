"""Applying a config to a running worker: load what changed, swap, keep the old on failure.

Called at start and on every config change. Models load in a thread (onnxruntime releases the
GIL), so the event loop keeps serving the old model during the whole load; the swap is one
assignment. A failed primary load keeps the old primary (or leaves the worker not ready if
there is none); a failed shadow load never affects the primary.
"""

from __future__ import annotations

import asyncio
import logging

from scorefleet.api.scorer_config import ModelRef, ScorerConfig
from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.metrics import Metrics
from scorefleet.scorer.model_store import LoadedModel, ModelLoadError, load_model
from scorefleet.scorer.shadow import ShadowScorer

log = logging.getLogger(__name__)


class ModelSlots:
    def __init__(self, engine: ScoringEngine, metrics: Metrics, pipeline: str, track: str,
                 intra_op_threads: int) -> None:
        self.engine = engine
        self.metrics = metrics
        self.pipeline = pipeline
        self.track = track
        self.intra_op_threads = intra_op_threads
        self.last_error: dict[str, str] = {}

    async def apply(self, config: ScorerConfig) -> bool:
        """Bring models in line with ``config``. True if everything it names is serving."""
        self.engine.configure_batching(config.batching)
        primary_ok = await self._apply_primary(config.model)
        shadow_ok = await self._apply_shadow(config)
        return primary_ok and shadow_ok

    async def _load(self, role: str, ref: ModelRef, current: LoadedModel | None,
                    ) -> LoadedModel | None:
        """A model for ``ref``: the current one if only cheap fields changed, else a new load."""
        if current is not None and current.same_artifact(ref):
            return current.with_ref(ref) if current.ref != ref else current
        try:
            model = await asyncio.to_thread(load_model, ref, self.intra_op_threads)
        except ModelLoadError as exc:
            self.last_error[role] = str(exc)
            self.metrics.model_loads.labels(self.pipeline, self.track, role, "failure").inc()
            keep = f"keeping {current.version}" if current else "no model to serve"
            log.error("%s model %s %s failed to load (%s): %s", role, ref.name, ref.version,
                      keep, exc)
            return None
        self.last_error.pop(role, None)
        self.metrics.model_loads.labels(self.pipeline, self.track, role, "success").inc()
        return model

    async def _apply_primary(self, ref: ModelRef) -> bool:
        current = self.engine.primary
        model = await self._load("primary", ref, current)
        if model is None:
            return False
        if model is not current:
            self.engine.primary = model  # the swap: new requests use it from here
            self._publish("primary", current, model)
        return True

    async def _apply_shadow(self, config: ScorerConfig) -> bool:
        engine = self.engine
        scorer = engine.shadow
        spec = config.shadow
        if spec is None:
            if scorer is not None:
                engine.shadow = None
                await asyncio.to_thread(scorer.close)
                self._publish("shadow", scorer.model, None)
            return True
        current = scorer.model if scorer is not None else None
        model = await self._load("shadow", spec.model, current)
        if model is None:
            return False
        if scorer is None:
            engine.shadow = ShadowScorer(self.metrics, self.pipeline, self.track, model,
                                         spec.sample_rate, spec.max_cpu_fraction)
        else:
            scorer.configure(model, spec.sample_rate, spec.max_cpu_fraction)
        if model is not current:
            self._publish("shadow", current, model)
        return True

    def _publish(self, role: str, old: LoadedModel | None, new: LoadedModel | None) -> None:
        """Model state gauges: old series to 0 (not removed: other workers may still serve
        it, and multiprocess aggregation sums), new series to 1."""
        m, pl, tr = self.metrics, self.pipeline, self.track
        if old is not None:
            m.model_loaded.labels(pl, tr, role, old.name, old.version).set(0)
            m.model_info.labels(pl, tr, role, old.name, old.version, old.sha256,
                                str(old.threshold)).set(0)
        if new is not None:
            m.model_loaded.labels(pl, tr, role, new.name, new.version).set(1)
            m.model_info.labels(pl, tr, role, new.name, new.version, new.sha256,
                                str(new.threshold)).set(1)
            log.info("%s model now %s %s (sha256 %s, threshold %s)", role, new.name,
                     new.version, new.sha256, new.threshold)
