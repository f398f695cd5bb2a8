"""One worker process: a grpc.aio server on the shared port, its models, its config watch.

Started by the supervisor (:mod:`scorefleet.scorer.server`) as
``python -m scorefleet.scorer.worker --config PATH --host HOST --index I``; every worker binds the
same port with SO_REUSEPORT and the kernel spreads new connections across them.

The server listens before the model is loaded, answering health checks with NOT_SERVING and
scoring RPCs with UNAVAILABLE, so a slow or failing model download shows as "not ready" rather
than "connection refused".
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from scorefleet.api.scorer_config import ScorerConfig, model_health_service
from scorefleet.scorer.config_watch import ConfigError, ConfigWatcher, restart_needed
from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.grpc_features import GrpcFeatures
from scorefleet.scorer.grpc_options import server_options
from scorefleet.scorer.handlers import add_inference, add_scorer
from scorefleet.scorer.lifecycle import DrainSteps, Lifecycle, exit_without_finalizing
from scorefleet.scorer.metrics import Metrics, RequestRecorder
from scorefleet.scorer.model_slots import ModelSlots
from scorefleet.scorer.protos import OIP_SERVICE, V1_SERVICE
from scorefleet.scorer.quiet_log import GRPC_AIO_LOGGER, LateAnswerFilter
from scorefleet.scorer.servicer_oip import InferenceServicer
from scorefleet.scorer.servicer_v1 import ScorerServicer

log = logging.getLogger("scorefleet.scorer.worker")

CONFIG_POLL_SECONDS = float(os.environ.get("SCOREFLEET_CONFIG_POLL_SECONDS", "1.0"))
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 1.0, 30.0
HEALTH_SERVICES = ("", V1_SERVICE, OIP_SERVICE)


class MethodAwarePool:
    """Descriptor pool for reflection that also resolves method names (``pkg.Service.Method``).

    ghz and grpcurl ask reflection for the file containing the *method* symbol; the upb-backed
    default pool only knows services and messages, so they failed with "Symbol not found".
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, name: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(name)
        except KeyError:
            service, _, method = name.rpartition(".")
            descriptor = self._pool.FindServiceByName(service)
            if method not in descriptor.methods_by_name:
                raise
            return descriptor.file

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._pool, attr)


class Worker:
    def __init__(self, config_path: Path, host: str, index: int) -> None:
        self.config_path = config_path
        self.host = host
        self.index = index
        self.watcher = ConfigWatcher(config_path)
        self.config = self.watcher.prime()
        self.metrics = Metrics()
        self.engine = ScoringEngine(
            RequestRecorder(self.metrics, self.config.pipeline, self.config.track))
        self.slots = ModelSlots(self.engine, self.metrics, self.config.pipeline,
                                self.config.track, self.config.intra_op_threads)
        self.health = HealthServicer()
        self._model_service: str | None = None
        self.lifecycle = Lifecycle()
        self.server: Any = None
        self._parent = os.getppid()
        self.stream: Any = None  # StreamService when the config has a Kafka source
        # Online features for RPCs carrying entity keys (the config's onlineFeatures).
        self.features = GrpcFeatures(self.metrics, self.config.pipeline, self.config.track)
        self._stream_closed: asyncio.Task[None] | None = None

    async def run(self) -> int:
        config = self.config
        logging.getLogger(GRPC_AIO_LOGGER).addFilter(
            LateAnswerFilter(lambda: self.engine.recorder.expired("at_send")))
        server = grpc.aio.server(options=server_options(config, config.grace_period_seconds))
        add_scorer(ScorerServicer(self.engine, config.track, self.features), server)
        add_inference(InferenceServicer(self.engine, config.track, self.features), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (V1_SERVICE, OIP_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server, pool=MethodAwarePool(descriptor_pool.Default()))
        await self._set_health(False)
        address = f"{self.host}:{config.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises on bind failure; older versions return 0
            log.error("cannot bind %s: %s", address, exc)
            return 1
        if bound == 0:
            log.error("cannot bind %s", address)
            return 1
        self.server = server
        await server.start()
        log.info("worker %d listening on %s", self.index, address)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.lifecycle.request_stop)
        self.metrics.workers.set(1)
        await self._reconcile(config)
        watch = loop.create_task(self._watch(), name="config-watch")
        await self.lifecycle.stop_requested.wait()
        watch.cancel()
        current = self.config
        # The stream stops fetching at once and finishes its batch while gRPC drains.
        if self.stream is not None:
            self._stream_closed = loop.create_task(self.stream.close())
        await self.lifecycle.drain(
            DrainSteps(self._mark_not_serving, self._stop_server, self._release),
            current.drain_delay_seconds, current.grace_period_seconds)
        return 0

    async def _reconcile(self, config: ScorerConfig) -> bool:
        ok = await self.slots.apply(config)
        self.features.apply(config.online_features)
        await self._set_health(self.engine.ready)
        if config.stream is not None or self.stream is not None:
            await self._apply_stream(config)
        return ok

    async def _apply_stream(self, config: ScorerConfig) -> None:
        # Imported only by stream pipelines' workers: the Kafka and Redis clients load ~40 MB.
        from scorefleet.scorer.stream.service import StreamService

        if self.stream is None:
            self.stream = StreamService(self.engine, self.metrics, config.pipeline,
                                        config.track, self.index)
        await self.stream.apply(config)

    async def _watch(self) -> None:
        """Poll the config; retry failed loads with backoff while the config stays the same."""
        retry_in = RETRY_MIN_SECONDS
        healthy = self.engine.primary is not None and not self.slots.last_error
        next_retry = 0.0 if healthy else asyncio.get_running_loop().time() + retry_in
        while True:
            await asyncio.sleep(CONFIG_POLL_SECONDS)
            self.engine.recorder.quiet.flush()  # at most one summary line per interval
            if os.getppid() != self._parent:
                log.error("supervisor exited; stopping")
                self.lifecycle.request_stop()
                return
            try:
                new = self.watcher.poll()
            except ConfigError as exc:
                log.error("%s", exc)
                self.metrics.config_reloads.labels("invalid").inc()
                continue
            now = asyncio.get_running_loop().time()
            if new is None:
                if next_retry and now >= next_retry:
                    ok = await self._reconcile(self.config)
                    retry_in = RETRY_MIN_SECONDS if ok else min(retry_in * 2, RETRY_MAX_SECONDS)
                    next_retry = 0.0 if ok else now + retry_in
                continue
            ignored = restart_needed(self.config, new)
            if ignored:
                log.warning("config fields %s changed; they apply after a restart", ignored)
            self.config = new
            ok = await self._reconcile(new)
            self.metrics.config_reloads.labels("applied" if ok else "load_failed").inc()
            retry_in = RETRY_MIN_SECONDS
            next_retry = 0.0 if ok else now + retry_in

    async def _set_health(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for service in HEALTH_SERVICES:
            await self.health.set(service, status)
        # Readiness probes ask for the loaded primary's own service name, so a pod is Ready
        # only while it serves the model its Deployment names (api.scorer_config).
        primary = self.engine.primary
        model_service = model_health_service(primary.ref) if serving and primary else None
        if self._model_service not in (None, model_service):
            await self.health.set(self._model_service,
                                  health_pb2.HealthCheckResponse.NOT_SERVING)
        if model_service is not None:
            await self.health.set(model_service, status)
        self._model_service = model_service
        self.metrics.ready.set(1 if serving else 0)

    async def _mark_not_serving(self) -> None:
        self.engine.draining = True
        await self.health.enter_graceful_shutdown()
        self.metrics.ready.set(0)

    async def _stop_server(self, grace: float) -> None:
        await self.server.stop(grace)

    async def _release(self) -> None:
        if self._stream_closed is not None:
            await self._stream_closed  # its last batch still needs the batcher
        if self.engine.batcher is not None:
            await self.engine.batcher.stop()
        if self.engine.shadow is not None:
            await asyncio.to_thread(self.engine.shadow.close)
        self.features.close()
        self.metrics.workers.set(0)
        self.engine.recorder.quiet.flush(force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scorefleet.scorer.worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--host", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s %(levelname)s worker-{args.index}[%(process)d] %(name)s: "
               "%(message)s")
    try:
        worker = Worker(args.config, args.host, args.index)
    except (ConfigError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    return run_event_loop(worker.run())


def run_event_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when installed: it cut server CPU per unary RPC by ~20% (measured, see
    docs/scorer.md); plain asyncio otherwise or with SCOREFLEET_EVENT_LOOP=asyncio."""
    if os.environ.get("SCOREFLEET_EVENT_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.info("uvloop not installed; using asyncio")
        else:
            return int(uvloop.run(main))
    return asyncio.run(main)


if __name__ == "__main__":
    exit_without_finalizing(main())  # everything is drained and released by now
