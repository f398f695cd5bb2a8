"""Session fixtures for the stream tests: one real Kafka broker and one real Redis, on free
127.0.0.1 ports, started once and stopped at the end (nothing left running).

Tests that restart or stop them (the fault tests) take their own instances instead, so a
failure there cannot leave the shared ones down for the next test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from scorefleet.dev.kafka import KafkaBroker
from scorefleet.dev.redis import RedisServer
from tests.stream.harness import Collector, Topics

Collect = Callable[[Topics], Collector]


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def topic_prefix() -> str:
    """A name no other test uses: topics and groups never leak between tests."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def collect(kafka: KafkaBroker) -> Iterator[Collect]:
    """``collect(topics)`` -> a Collector reading verdicts and dead letters; closed at teardown."""
    made: list[Collector] = []

    def make(topics: Topics) -> Collector:
        made.append(Collector(kafka.bootstrap, topics))
        return made[-1]

    yield make
    for collector in made:
        collector.close()
