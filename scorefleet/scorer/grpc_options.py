"""The grpc.aio server's channel options: transport limits, keepalive policy, connection age.

Every value here was chosen for a reason measured on a real scorer (docs/scorer.md, "Under
bursts"); the three that matter most under a burst:

* **Pending-call backlog.** gRPC core holds calls that have arrived but that the application has
  not asked for yet. grpc.aio asks for one call at a time from its event loop, so during a burst
  of thousands of RPCs nearly all of them sit in that backlog for a moment. Core's defaults
  (``grpc.server.max_pending_requests`` 1,000, ``..._hard_limit`` 3,000) then drop calls at
  random, and the client sees ``CANCELLED`` with no detail and the server logs and counts
  nothing: 555 of 3,000 and 1,907 of 5,000 concurrent ``Score`` RPCs on one channel, measured.
  Raised to :data:`MAX_PENDING_CALLS` (soft = hard, so no random early drops below it): the
  calls then reach the handlers, which serve them, shed them with ``RESOURCE_EXHAUSTED`` naming
  the limit, or end them with ``DEADLINE_EXCEEDED``, and count each.
* **Streams per connection.** ``grpc.max_concurrent_streams`` is advertised in HTTP/2
  SETTINGS; a client with more RPCs than that on one connection holds the rest itself (its
  deadline still runs). With core's default "overload protection" the server instead refuses
  streams it still counts as allocated with ``RST_STREAM(REFUSED_STREAM)`` and clients saw
  ``UNAVAILABLE`` (506 of 5,000, measured); it is switched off so the advertised limit is the
  limit.
* **Keepalive enforcement.** Core's default lets a client ping only every 5 minutes without
  data and closes the connection (GOAWAY ``too_many_pings``) after 2 faster pings: a client
  with a common 10-30 s keepalive loses its connection, and its in-flight RPCs, every few
  minutes. Pings every :data:`MIN_CLIENT_PING_INTERVAL_MS` are allowed, with or without calls.
  The server pings idle connections itself every :data:`KEEPALIVE_TIME_MS` and closes those
  that do not answer within :data:`KEEPALIVE_TIMEOUT_MS`, so a vanished client (a pod killed
  without a FIN) does not hold its streams forever.
"""

from __future__ import annotations

from typing import Any

from scorefleet.api.scorer_config import ScorerConfig

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_CONCURRENT_STREAMS = 1000        # per HTTP/2 connection
MAX_PENDING_CALLS = 20_000           # per worker; calls gRPC core holds before the handlers
MIN_CLIENT_PING_INTERVAL_MS = 10_000
MAX_PING_STRIKES = 2                 # core's default: faster pings than allowed, then GOAWAY
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000


def server_options(config: ScorerConfig, grace: float) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.so_reuseport", 1),  # all workers on one port; the kernel spreads connections
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        ("grpc.http.overload_protection", 0),
        ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ]
    if config.max_connection_age_seconds is not None:
        # Long-lived HTTP/2 connections pin a client to one pod (kube-proxy balances
        # connections, not requests); aging them out lets new pods get traffic.
        options += [
            ("grpc.max_connection_age_ms", int(config.max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", int(max(grace, 1.0) * 1000)),
        ]
    return options
