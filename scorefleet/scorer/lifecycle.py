"""Graceful stop of one worker: the order of the steps is the contract.

::

    SERVING --SIGTERM--> DRAINING --drainDelaySeconds--> STOPPING --in-flight done or
       |                 health NOT_SERVING,             new RPCs refused,    gracePeriodSeconds-->
       |                 RPCs still served               in-flight finish                STOPPED
       |                                                                                 (exit 0)

Why a drain delay: Kubernetes removes the pod from Service endpoints asynchronously; clients and
kube-proxy keep sending to it for a few seconds after SIGTERM. Refusing RPCs at once would fail
those; serving them while the health check says NOT_SERVING lets load balancers move away first.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

log = logging.getLogger(__name__)


class Phase(enum.Enum):
    SERVING = "serving"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass
class DrainSteps:
    """What the drain sequence does at each step; injected so tests can record the order."""

    mark_not_serving: Callable[[], Awaitable[None]]
    stop_server: Callable[[float], Awaitable[None]]  # refuse new RPCs, wait <= grace seconds
    release: Callable[[], Awaitable[None]]            # batcher, shadow thread, metrics
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


class Lifecycle:
    def __init__(self) -> None:
        self.phase = Phase.SERVING
        self.stop_requested = asyncio.Event()

    def request_stop(self) -> None:
        """Signal handler entry point; idempotent (a second SIGTERM changes nothing)."""
        if not self.stop_requested.is_set():
            log.info("stop requested: draining")
            self.stop_requested.set()

    async def drain(self, steps: DrainSteps, drain_delay: float, grace: float) -> None:
        self._enter(Phase.DRAINING)
        await steps.mark_not_serving()
        if drain_delay > 0:
            await steps.sleep(drain_delay)
        self._enter(Phase.STOPPING)
        await steps.stop_server(grace)
        await steps.release()
        self._enter(Phase.STOPPED)

    def _enter(self, phase: Phase) -> None:
        log.info("lifecycle %s -> %s", self.phase.value, phase.value)
        self.phase = phase


def exit_without_finalizing(code: int) -> NoReturn:
    """Exit at once once everything is drained and released. Interpreter finalization (gRPC
    core and onnxruntime teardown) took a further 1.5-2 s, measured, for nothing: skipping it
    keeps a pod's termination no longer than its drain."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
