"""The online-feature reader's own Redis connections (stream/resp.py) against the real Redis:
the replies of a pipelined round trip, a logical database, an error reply, a deadline, and a
server that goes away and comes back."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import redis

from scorefleet.api.scorer_config import OnlineFeaturesConfig
from scorefleet.dev.redis import RedisServer
from scorefleet.scorer.stream.features import UNAVAILABLE, OnlineFeatures
from scorefleet.scorer.stream.resp import ReplyError, RespPool

pytestmark = pytest.mark.stream


def reader(server: RedisServer, **extra: object) -> OnlineFeatures:
    return OnlineFeatures(OnlineFeaturesConfig.model_validate(
        {"address": server.address, "keyTemplate": "resp:{sender}", "features": ["a", "b"],
         "timeoutSeconds": 1.0, **extra}))


def test_pipelined_replies_in_order_from_the_chosen_database(redis_server: RedisServer) -> None:
    host, port = redis_server.address.rsplit(":", 1)
    for db in (0, 3):
        client = redis.Redis(host=host, port=int(port), db=db)
        for i in range(600):  # more than one recv() of replies
            client.hset(f"resp:s{i}", mapping={"a": str(i + db), "b": "0.5", "_ts": "1"})
        client.close()
    for db in (0, 3):
        features = reader(redis_server, database=db)
        try:
            rows = features.read([f"s{i}" for i in range(600)] + ["nobody"], now=2.0)
        finally:
            features.close()
        assert rows.values[:600, 0].tolist() == [float(i + db) for i in range(600)]
        assert rows.missing == [None] * 600 + ["absent"]


def test_error_reply_and_wrong_database_are_unavailable_not_wrong(
        redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.set("resp:plain", "not a hash")  # HMGET on it: WRONGTYPE
    client.close()
    features = reader(redis_server)
    try:
        rows = features.read(["plain"], now=0.0)
    finally:
        features.close()
    assert rows.missing == [UNAVAILABLE] and rows.error is not None and "WRONGTYPE" in rows.error
    host, port = redis_server.address.rsplit(":", 1)
    with pytest.raises(ReplyError, match="SELECT 99"):
        RespPool(host, int(port), 99, 1.0).round_trip(b"*1\r\n$4\r\nPING\r\n", 1)


def test_a_silent_server_times_out_within_the_deadline() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]))
        thread.start()
        pool = RespPool("127.0.0.1", listener.getsockname()[1], 0, 0.3)
        with pytest.raises(TimeoutError):
            pool.round_trip(b"*1\r\n$4\r\nPING\r\n", 1)
        thread.join(5)
        for conn in accepted:
            conn.close()


def test_reconnects_after_the_server_restarts(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "r") as server:
        client = redis.Redis.from_url(server.url)
        client.hset("resp:s1", mapping={"a": "1", "b": "2", "_ts": "1"})
        client.close()
        features = reader(server)
        assert features.read(["s1"], now=0.0).missing == [None]
        server.stop()
        down = features.read(["s1"], now=0.0)
        assert down.missing == [UNAVAILABLE] and down.error
        server.start()  # empty: persistence is off, so a read that works finds nothing
        assert features.read(["s1"], now=0.0).missing == ["absent"]
        features.close()
