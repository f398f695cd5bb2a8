"""What every scoring RPC does around its body: in-flight gauge, error mapping, metrics.

One place turns :class:`ScoringError` into a gRPC status with its message, and records
``scorefleet_requests_total{code}``, events, latency, invalid reasons and sheds, so the two APIs
cannot drift apart in what they count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc

from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.errors import InvalidInput, ScoringError, Shed

log = logging.getLogger(__name__)

T = TypeVar("T")


def deadline_of(context: Any) -> float | None:
    """The RPC's deadline on the event loop's clock, or None if the client set none."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return float(asyncio.get_running_loop().time() + remaining)


async def guarded(engine: ScoringEngine, method: str, context: Any,
                  body: Awaitable[tuple[T, str, int]]) -> T:
    """Await ``body`` -> (response, model version, events) with metrics and error mapping."""
    started = time.perf_counter()
    rec = engine.recorder
    rec.in_flight.inc()
    code = "UNKNOWN"
    version = ""
    events = 0
    try:
        response, version, events = await body
        code = "OK"
        return response
    except ScoringError as exc:
        code = exc.code.name
        events = exc.events
        if isinstance(exc, InvalidInput):
            rec.invalid(method, exc.reason)
        elif isinstance(exc, Shed):
            rec.shed(method)
        await context.abort(exc.code, exc.message)
        raise AssertionError("unreachable: abort raises") from None
    except asyncio.CancelledError:
        code = "CANCELLED"
        raise
    except grpc.aio.AbortError:
        raise
    except Exception as exc:  # a bug: report it as INTERNAL, keep serving
        log.exception("%s failed", method)
        code = "INTERNAL"
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
        raise AssertionError("unreachable: abort raises") from None
    finally:
        rec.in_flight.dec()
        if not version:
            model = engine.primary
            version = model.version if model is not None else ""
        rec.record(version, method, code, events, time.perf_counter() - started)
