"""A log that stays quiet under any load: refusals are counted and summed up, never one line each.

Under a burst or with clients that use tight deadlines, a worker may shed, expire or see
cancelled thousands of RPCs a second. Each is already counted in Prometheus
(``scorefleet_shed_requests_total{reason}``, ``scorefleet_expired_requests_total{reason}``,
``scorefleet_cancelled_requests_total``); the log only needs to say that it happened, so it
gets at most one summary line per interval::

    last 30s: shed 1200 (queue_full 1200); expired 95 (queued 90, before_start 5); cancelled 3

An unexpected exception (a bug, reported to the client as INTERNAL) is logged with its traceback
the first time a given kind is seen in an interval, and only counted after that.

:class:`LateAnswerFilter` quiets the one traceback grpc.aio itself writes under load: an answer
that could not be sent because the call had ended a moment before (its deadline passed in gRPC
core after the handler's last check).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

GRPC_AIO_LOGGER = "grpc._cython.cygrpc"

SUMMARY_INTERVAL_SECONDS = 30.0
# Outcomes worth a WARNING (the server is overloaded or has a bug); the rest are the clients'.
_WARN = ("shed", "internal")
_ORDER = ("shed", "expired", "cancelled", "internal")


class QuietLog:
    def __init__(self, logger: logging.Logger, interval: float = SUMMARY_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.counts: Counter[tuple[str, str]] = Counter()
        self._since = clock()
        self._tracebacks: set[str] = set()

    def count(self, outcome: str, reason: str, n: int = 1) -> None:
        self.counts[(outcome, reason)] += n

    def exception(self, kind: str, message: str) -> None:
        """Call from an ``except`` block: traceback once per kind and interval, then counts."""
        self.count("internal", kind)
        if kind not in self._tracebacks:
            self._tracebacks.add(kind)
            self.logger.exception("%s (further ones are counted, not logged, for %.0fs)",
                                  message, self.interval)

    def summary(self) -> str | None:
        """The summary line for what was counted so far, or None if nothing was."""
        if not self.counts:
            return None
        parts = []
        for outcome in _ORDER:
            reasons = sorted((r, n) for (o, r), n in self.counts.items() if o == outcome)
            if reasons:
                total = sum(n for _, n in reasons)
                detail = ", ".join(f"{r} {n}" for r, n in reasons)
                parts.append(f"{outcome} {total} ({detail})")
        return f"last {self.clock() - self._since:.0f}s: " + "; ".join(parts)

    def flush(self, force: bool = False) -> str | None:
        """Log and reset the summary if the interval has passed (or ``force``); returns it."""
        now = self.clock()
        if not force and now - self._since < self.interval:
            return None
        line = self.summary()
        if line is not None:
            level = logging.WARNING if any(o in _WARN for o, _ in self.counts) else logging.INFO
            self.logger.log(level, "%s", line)
        self.counts.clear()
        self._tracebacks.clear()
        self._since = now
        return line


class LateAnswerFilter(logging.Filter):
    """Drops grpc.aio's "ExecuteBatchError raised in core" records, counting each instead.

    grpc.aio logs that, with a traceback, when sending a handler's answer fails in core and the
    client had not closed the call: the call's deadline passed between the handler's return and
    the send. The client already has DEADLINE_EXCEEDED; the count is
    ``scorefleet_expired_requests_total{reason="at_send"}``.
    """

    def __init__(self, on_late_answer: Callable[[], None]) -> None:
        super().__init__()
        self.on_late_answer = on_late_answer

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("ExecuteBatchError raised in core"):
            self.on_late_answer()
            return False
        return True
