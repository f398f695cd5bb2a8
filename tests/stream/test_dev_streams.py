"""`python -m scorefleet.dev.streams up|status|down` (and `scorefleet up --streams`): detached
Kafka and Redis for the local default, idempotent, found again by pid file, stopped whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from scorefleet.dev import processes, streams

pytestmark = [pytest.mark.stream, pytest.mark.slow]


def test_up_is_idempotent_and_down_leaves_nothing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOREFLEET_CLUSTER_DIR", str(tmp_path / "cluster"))
    try:
        info = streams.up()
        assert info.alive()
        assert streams.up() == info  # second up reuses the running pair
        assert streams.main(["status"]) == 0
        assert 1 in AdminClient({"bootstrap.servers": info.bootstrap}).list_topics(
            timeout=10).brokers
        client = redis.Redis.from_url(f"redis://{info.redis}/0")
        assert client.ping()
        client.close()
    finally:
        streams.down()
    assert not processes.is_running(info.kafka_pid)
    assert not processes.is_running(info.redis_pid)
    assert not streams.state_dir().exists()
    assert streams.main(["status"]) == 1
