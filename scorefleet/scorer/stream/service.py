"""The stream side of a worker: started, reconfigured and stopped with the worker's config.

The worker calls :meth:`StreamService.apply` on every config it applies (at start and on each
reload) and :meth:`StreamService.close` when it stops. A changed ``stream`` or
``onlineFeatures`` section restarts the runner: the old one finishes its batches, commits and
leaves the group before the new one joins, so no event is skipped across a reload. A change of
the canary share alone (``stream.canary``: a weight step or a rollback) is applied in place,
between two batches.

Each worker process is one member of the consumer group, so a pod with N workers takes up to N
partitions, the same way it takes N cores of gRPC work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from scorefleet.api.scorer_config import ScorerConfig
from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.metrics import Metrics
from scorefleet.scorer.stream.metrics import StreamMetrics
from scorefleet.scorer.stream.runner import StreamRunner

log = logging.getLogger(__name__)


class StreamService:
    def __init__(self, engine: ScoringEngine, metrics: Metrics, pipeline: str, track: str,
                 worker_index: int) -> None:
        self.engine = engine
        self.base_metrics = metrics
        self.pipeline = pipeline
        self.track = track
        self.worker_index = worker_index
        self.runner: StreamRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._settings: tuple[object, object] | None = None
        self._metrics: StreamMetrics | None = None

    async def apply(self, config: ScorerConfig) -> None:
        # The canary share changes between two batches, without leaving the group.
        stream = config.stream.model_copy(update={"canary": None}) if config.stream else None
        settings = (stream, config.online_features)
        if settings == self._settings:
            if self.runner is not None and config.stream is not None:
                await self.runner.set_canary(config.stream.canary)
            return
        await self.close()
        self._settings = settings
        if config.stream is None:
            return
        if self._metrics is None:  # once: a registry refuses the same series twice
            self._metrics = StreamMetrics(self.base_metrics, self.pipeline, self.track)
        client_id = f"scorefleet-{self.pipeline}-{self.track}-{socket.gethostname()}-" \
                    f"{self.worker_index}-{os.getpid()}"
        self.runner = StreamRunner(self.engine, self._metrics, self.track, config.stream,
                                   config.online_features, client_id)
        self._task = asyncio.get_running_loop().create_task(self._run(self.runner),
                                                            name="stream-runner")

    async def _run(self, runner: StreamRunner) -> None:
        try:
            await runner.run()
        except Exception:
            # A bug or a broken client: log it and let the worker exit non-zero so the
            # supervisor (or Kubernetes) restarts it, rather than sit in the group idle.
            log.exception("stream runner failed")
            os._exit(3)

    async def close(self) -> None:
        """Finish the batch in hand, commit, leave the group. Idempotent."""
        runner, task = self.runner, self._task
        self.runner, self._task, self._settings = None, None, None
        if runner is None or task is None:
            return
        runner.request_stop()
        await task
