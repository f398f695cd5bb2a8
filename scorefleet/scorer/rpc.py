"""What every scoring RPC does around its body: in-flight gauge, error mapping, metrics.

One place turns :class:`ScoringError` into a gRPC status with its message, and records
``scorefleet_requests_total{code}``, events, latency, invalid reasons, sheds, expiries and client
cancellations, so the two APIs cannot drift apart in what they count.

Every way an RPC can end is counted, and none of them writes a log line of its own (a burst would
turn that into a flood): refusals go to :class:`~scorefleet.scorer.quiet_log.QuietLog`, which
sums them up at most once per interval, and a bug (INTERNAL) logs its traceback once per kind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import grpc

from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.errors import Expired, InvalidInput, ScoringError, Shed

T = TypeVar("T")


def deadline_of(context: Any) -> float | None:
    """The RPC's deadline on the event loop's clock, or None if the client set none."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return float(asyncio.get_running_loop().time() + remaining)


def _deadline_passed(context: Any) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


async def _abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    """``context.abort``, except on a call gRPC has already ended.

    Between our deadline check and gRPC's own (or a client's cancel reaching the server), the
    call can end under us; sending a status then fails in core with ExecuteBatchError, which
    grpc.aio logs with a traceback per call. The call is over either way: end the handler as
    cancelled, which grpc.aio does not log.
    """
    try:
        await context.abort(code, message)
    except grpc.aio.AbortError:
        raise
    except Exception:  # ExecuteBatchError (grpc._cython, not a public type)
        raise asyncio.CancelledError from None
    raise AssertionError("unreachable: abort raises")


async def guarded(engine: ScoringEngine, method: str, context: Any,
                  body: Coroutine[Any, Any, tuple[T, str, int]]) -> T:
    """Await ``body`` -> (response, model version, events) with metrics and error mapping."""
    started = time.perf_counter()
    rec = engine.recorder
    rec.in_flight.inc()
    code = "UNKNOWN"
    version = ""
    events = 0
    try:
        if _deadline_passed(context):
            # It waited in gRPC or for the event loop past its deadline (a burst): don't score.
            body.close()
            rec.expired("before_start")
            raise Expired("deadline passed before the server started the call; not scored",
                          "before_start")
        response, version, events = await body
        if _deadline_passed(context):
            # Scored, but the caller has stopped waiting: sending would fail in core.
            rec.expired("in_flight")
            raise Expired("deadline passed while scoring; the answer was dropped", "in_flight")
        code = "OK"
        return response
    except ScoringError as exc:
        code = exc.code.name
        events = exc.events
        if isinstance(exc, InvalidInput):
            rec.invalid(method, exc.reason)
        elif isinstance(exc, Shed):
            rec.shed(method, exc.reason)
        # Expired: counted where the deadline was seen (above, or the engine's batcher hook).
        await _abort(context, exc.code, exc.message)
    except asyncio.CancelledError:
        # gRPC cancels the handler when the call ends under it: its deadline, or the client.
        if _deadline_passed(context):
            code = "DEADLINE_EXCEEDED"
            rec.expired("in_flight")
        else:
            code = "CANCELLED"
            rec.cancelled(method)
        raise
    except grpc.aio.AbortError:
        raise
    except Exception as exc:  # a bug: report it as INTERNAL, keep serving
        rec.quiet.exception(type(exc).__name__, f"{method} failed")
        code = "INTERNAL"
        await _abort(context, grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
    finally:
        rec.in_flight.dec()
        if not version:
            model = engine.primary
            version = model.version if model is not None else ""
        rec.record(version, method, code, events, time.perf_counter() - started)
