"""Errors a scoring call can end with, each carrying its gRPC status code.

The servicers turn these into ``context.abort(code, message)`` and count them by code; anything
else escaping a handler is a bug and is reported as INTERNAL.
"""

from __future__ import annotations

import grpc


class ScoringError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Events in the failed RPC, when known, for scorefleet_events_total{code}.
        self.events = 0


class InvalidInput(ScoringError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        # Short, bounded label value for scorefleet_invalid_requests_total{reason}.
        self.reason = reason


class NotFound(ScoringError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ScoringError):
    """The request is well-formed but cannot be scored as the pipeline is set up (e.g. its
    online features are missing and the miss policy refuses defaults)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Internal(ScoringError):
    code = grpc.StatusCode.INTERNAL


class Shed(ScoringError):
    """A bound was hit (the queue is full): fail fast so the client can retry elsewhere."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        # Which limit, for scorefleet_shed_requests_total{reason}; the message names its field.
        self.reason = reason


class Expired(ScoringError):
    """The caller's deadline passed before scoring; scoring it would waste the CPU."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        # Where the deadline passed, for scorefleet_expired_requests_total{reason}.
        self.reason = reason


class Unavailable(ScoringError):
    """No model loaded yet, or the server is draining."""

    code = grpc.StatusCode.UNAVAILABLE
