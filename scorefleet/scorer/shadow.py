"""Paired shadow scoring: the shadow model scores a sample of the primary's rows, off the path.

Primary responses never wait for the shadow: the event loop only samples rows and hands them to
one shadow thread through a small bounded queue (full queue = rows skipped, counted as "busy").
onnxruntime releases the GIL while it runs, so the thread costs the loop little beyond its share
of the GIL for the numpy comparison. A CPU budget caps the shadow's share of the process's CPU
time (``maxCpuFraction``); over budget, sampled rows are skipped and counted as "budget".

Each pair (same event, both scores) feeds: decision outcome counts at each model's own threshold
(agreement and flips in each direction), a histogram of score deltas, and score histograms of
both models on the same events, which is what drift measures (PSI, KS) need.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scorefleet.scorer.metrics import Metrics, observe_many
from scorefleet.scorer.model_store import FloatArray, LoadedModel

log = logging.getLogger(__name__)

# Enough to absorb a burst of batches; more would only delay shadow results and hold memory.
MAX_PENDING_BATCHES = 8


@dataclass
class CpuBudget:
    """Allow shadow work while its CPU stays within ``fraction`` of the process's CPU.

    Decided on cumulative readings passed in (no clock inside), over a window that restarts
    every ``window`` CPU-seconds of the process so an idle period cannot bank a huge allowance.
    ``slack`` lets the first batches through before the process has used any CPU.
    """

    fraction: float
    window: float = 5.0
    slack: float = 0.02
    _base_shadow: float = 0.0
    _base_process: float = 0.0

    def allow(self, shadow_cpu: float, process_cpu: float) -> bool:
        if process_cpu - self._base_process > self.window:
            self._base_shadow, self._base_process = shadow_cpu, process_cpu
        used = shadow_cpu - self._base_shadow
        return used <= self.fraction * (process_cpu - self._base_process) + self.slack


@dataclass(frozen=True)
class PairOutcomes:
    both_positive: int
    both_negative: int
    flip_to_positive: int  # primary negative, shadow positive
    flip_to_negative: int  # primary positive, shadow negative


def compare(primary_scores: FloatArray, primary_threshold: float, shadow_scores: FloatArray,
            shadow_threshold: float) -> PairOutcomes:
    p = primary_scores >= np.float32(primary_threshold)
    s = shadow_scores >= np.float32(shadow_threshold)
    both_pos = int(np.count_nonzero(p & s))
    flip_up = int(np.count_nonzero(~p & s))
    flip_down = int(np.count_nonzero(p & ~s))
    return PairOutcomes(both_pos, len(p) - both_pos - flip_up - flip_down, flip_up, flip_down)


class ShadowScorer:
    """Owns the shadow thread; ``offer`` is called on the event loop after each primary batch."""

    def __init__(self, metrics: Metrics, pipeline: str, track: str, model: LoadedModel,
                 sample_rate: float, max_cpu_fraction: float,
                 process_time: Callable[[], float] = time.process_time) -> None:
        self.metrics = metrics
        self.pipeline = pipeline
        self.track = track
        self.model = model
        self.sample_rate = sample_rate
        self.budget = CpuBudget(max_cpu_fraction)
        self._process_time = process_time
        self._rng = np.random.default_rng()
        self._queue: queue.Queue[tuple[FloatArray, FloatArray, LoadedModel] | None] = (
            queue.Queue(MAX_PENDING_BATCHES))
        self.cpu_seconds = 0.0
        self._skipped = {r: metrics.shadow_skipped.labels(pipeline, track, r)
                         for r in ("budget", "busy", "error")}
        self._cpu_counter = metrics.shadow_cpu.labels(pipeline, track)
        self._children: dict[tuple[str, str], dict[str, Any]] = {}
        self._thread = threading.Thread(target=self._work, name="shadow-scorer", daemon=True)
        self._thread.start()

    def configure(self, model: LoadedModel, sample_rate: float, max_cpu_fraction: float) -> None:
        self.model = model
        self.sample_rate = sample_rate
        self.budget.fraction = max_cpu_fraction

    def offer(self, x: FloatArray, scores: FloatArray, primary: LoadedModel) -> None:
        """Sample rows of a scored batch for the shadow. Never blocks, never raises."""
        try:
            rate = self.sample_rate
            if rate <= 0.0:
                return
            if rate < 1.0:
                mask = self._rng.random(len(scores)) < rate
                if not mask.any():
                    return
                x, scores = x[mask], scores[mask]
            if not self.budget.allow(self.cpu_seconds, self._process_time()):
                self._skipped["budget"].inc(len(scores))
                return
            self._queue.put_nowait((x, scores, primary))
        except queue.Full:
            self._skipped["busy"].inc(len(scores))
        except Exception:  # the shadow must never break the primary path
            log.exception("shadow offer failed")

    def close(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        self._thread.join(timeout=5.0)

    def _series(self, primary_version: str, shadow_version: str) -> dict[str, Any]:
        key = (primary_version, shadow_version)
        series = self._children.get(key)
        if series is None:
            m, pl, tr = self.metrics, self.pipeline, self.track
            series = {
                outcome: m.shadow_pairs.labels(pl, tr, primary_version, shadow_version, outcome)
                for outcome in ("both_positive", "both_negative", "flip_to_positive",
                                "flip_to_negative")
            }
            series["delta"] = m.shadow_delta.labels(pl, tr, primary_version, shadow_version)
            series["primary_score"] = m.model_score.labels(pl, tr, "primary", primary_version)
            series["shadow_score"] = m.model_score.labels(pl, tr, "shadow", shadow_version)
            self._children[key] = series
        return series

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            started = time.thread_time()
            x, primary_scores, primary = item
            shadow = self.model
            try:
                shadow_scores = shadow.run(x)
                self._record(primary_scores, primary, shadow_scores, shadow)
            except Exception:
                log.exception("shadow scoring failed (model %s)", shadow.version)
                self._skipped["error"].inc(len(primary_scores))
            spent = time.thread_time() - started
            self.cpu_seconds += spent
            self._cpu_counter.inc(spent)

    def _record(self, primary_scores: FloatArray, primary: LoadedModel,
                shadow_scores: npt.NDArray[np.float32], shadow: LoadedModel) -> None:
        series = self._series(primary.version, shadow.version)
        outcomes = compare(primary_scores, primary.threshold, shadow_scores, shadow.threshold)
        for name in ("both_positive", "both_negative", "flip_to_positive", "flip_to_negative"):
            count = getattr(outcomes, name)
            if count:
                series[name].inc(count)
        observe_many(series["delta"], shadow_scores - primary_scores)
        observe_many(series["primary_score"], primary_scores)
        observe_many(series["shadow_score"], shadow_scores)
