"""The real broker and Redis the stream tests run against: they start, answer, restart, stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from scorefleet.dev import kafka as kafka_mod
from scorefleet.dev.kafka import KafkaBroker
from scorefleet.dev.redis import RedisServer

pytestmark = pytest.mark.stream


def test_cluster_id_is_kraft_shaped() -> None:
    ids = {kafka_mod.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_lib_dir_names_version_and_pom(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text(kafka_mod.POM.read_text())
    first = kafka_mod.lib_dir(pom)
    assert first.parent.name.startswith(f"{kafka_mod.kafka_version(pom)}-")
    pom.write_text(pom.read_text() + "<!-- changed -->\n")
    assert kafka_mod.lib_dir(pom) != first


def test_round_trip(kafka: KafkaBroker, topic_prefix: str) -> None:
    topic = f"{topic_prefix}-rt"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for i in range(100):
        producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen: set[bytes] = set()
    for _ in range(200):
        for msg in consumer.consume(100, timeout=0.5):
            assert msg.error() is None
            seen.add(msg.value() or b"")
        if len(seen) == 100:
            break
    consumer.close()
    assert seen == {f"v{i}".encode() for i in range(100)}


def test_redis_answers(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.mset({f"k{i}": f"v{i}" for i in range(100)})
    assert client.mget([f"k{i}" for i in range(0, 100, 10)]) == [
        f"v{i}".encode() for i in range(0, 100, 10)]
    client.close()


def test_restart_and_nothing_left_behind(tmp_path: Path) -> None:
    """Stop and start keep ports; stop leaves no process; a killed broker leaves none either."""
    broker = KafkaBroker(tmp_path / "kafka")
    redis_srv = RedisServer(tmp_path / "redis")
    try:
        broker.start()
        redis_srv.start()
        pids = [broker.pid, redis_srv.pid]
        redis_srv.stop()
        redis_srv.start()
        broker.kill()
        broker.start()
        pids += [broker.pid, redis_srv.pid]
    finally:
        broker.stop()
        redis_srv.stop()
    for pid in pids:
        assert pid is not None
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), f"pid {pid} still runs"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
