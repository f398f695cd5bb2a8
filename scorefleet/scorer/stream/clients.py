"""librdkafka settings of the stream's consumer and producer, from the config. Pure.

Delivery guarantee, and the settings it rests on:

* the consumer never commits by itself (``enable.auto.commit`` off); the runner commits a
  batch's offsets only after every verdict and dead letter of the batch is acknowledged, so a
  crash anywhere replays from the last fully-acknowledged batch: at-least-once;
* the producer is idempotent with ``acks=all``, so its own retries (a broker restart) never
  write a verdict twice; only a replay after a crash or rebalance does, and those are counted;
* ``message.timeout.ms`` is long: during a broker outage verdicts wait in the producer rather
  than fail, and the batch (and its offsets) simply waits with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scorefleet.api.scorer_config import KafkaStreamConfig

PRODUCER_LINGER_MS = 5
DELIVERY_TIMEOUT_MS = 10 * 60 * 1000
HEARTBEAT_MAX_MS = 1000


class CredentialsError(Exception):
    """SASL is configured but the mounted credentials are missing."""


def _security(cfg: KafkaStreamConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"security.protocol": cfg.security_protocol.lower()}
    if cfg.security_protocol == "PLAINTEXT":
        return out
    if cfg.credentials_dir is None:
        raise CredentialsError(f"securityProtocol {cfg.security_protocol} needs credentialsDir "
                               "(the mounted credentialsSecret)")
    base = Path(cfg.credentials_dir)
    try:
        username = (base / "username").read_text().strip()
        password = (base / "password").read_text().strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read Kafka credentials in {base}: {exc}") from exc
    out.update({"sasl.mechanism": cfg.sasl_mechanism, "sasl.username": username,
                "sasl.password": password})
    return out


def consumer_settings(cfg: KafkaStreamConfig, client_id: str) -> dict[str, Any]:
    session_ms = int(cfg.session_timeout_seconds * 1000)
    return {
        "bootstrap.servers": ",".join(cfg.bootstrap_servers),
        "group.id": cfg.consumer_group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # A new group starts from the oldest retained event: a pipeline created after events
        # were written must not silently skip them.
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        # At most 1 s (librdkafka's default is 3 s): the existing members learn of a rebalance
        # at their next heartbeat, so a pod joining on scale-up gets partitions ~1 s after it
        # asks, not ~3.4 s (measured with a 10 s session); one small request per second.
        "heartbeat.interval.ms": max(100, min(session_ms // 3, HEARTBEAT_MAX_MS)),
        "max.poll.interval.ms": int(cfg.max_poll_interval_seconds * 1000),
        # Keep fetches flowing while a batch is scored.
        "fetch.wait.max.ms": max(1, int(cfg.max_batch_wait_seconds * 1000)),
        "queued.max.messages.kbytes": 16384,
        **_security(cfg),
    }


def producer_settings(cfg: KafkaStreamConfig, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": ",".join(cfg.bootstrap_servers),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": PRODUCER_LINGER_MS,
        "message.timeout.ms": DELIVERY_TIMEOUT_MS,
        "compression.type": "lz4",
        **_security(cfg),
    }
