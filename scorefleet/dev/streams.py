"""Kafka and Redis for the local default, beside the control plane.

    python -m scorefleet.dev.streams up       # start both (idempotent); print their addresses
    python -m scorefleet.dev.streams status   # pids and addresses; exit 1 unless both run
    python -m scorefleet.dev.streams down     # stop both, remove their state
    scorefleet up --streams                   # the same `up`, before the control plane

They run detached (own sessions) on free 127.0.0.1 ports; pids, ports and data live in
``<cluster dir>/streams`` so a later command (or ``scorefleet down``) finds and stops them. A pid
is only signalled while its command line still names the binary started (pids get reused).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from scorefleet.dev import paths, processes
from scorefleet.dev.kafka import KafkaBroker, KafkaError
from scorefleet.dev.redis import RedisError, RedisServer


@dataclass(frozen=True)
class StreamsInfo:
    bootstrap: str
    redis: str
    kafka_pid: int
    redis_pid: int
    java: str

    def alive(self) -> bool:
        return (processes.is_running(self.kafka_pid, self.java)
                and processes.is_running(self.redis_pid))


def state_dir() -> Path:
    return paths.cluster_dir() / "streams"


def _state_file() -> Path:
    return state_dir() / "streams.json"


def status() -> StreamsInfo | None:
    try:
        return StreamsInfo(**json.loads(_state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def up() -> StreamsInfo:
    """Both running, reusing what already runs; a half-dead pair is replaced whole."""
    current = status()
    if current is not None and current.alive():
        return current
    down()
    base = state_dir()
    base.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(base / "kafka")
    redis = RedisServer(base / "redis")
    try:
        broker.start()
        redis.start()
    except BaseException:
        broker.stop()
        redis.stop()
        raise
    assert broker.pid is not None and redis.pid is not None
    info = StreamsInfo(broker.bootstrap, redis.address, broker.pid, redis.pid, broker.java)
    _state_file().write_text(json.dumps(asdict(info)))
    return info


def down() -> None:
    info = status()
    if info is not None:
        processes.terminate(info.kafka_pid, info.java)
        if processes.is_running(info.redis_pid):
            processes.terminate(info.redis_pid, None)
    shutil.rmtree(state_dir(), ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scorefleet.dev.streams",
                                     description="Kafka and Redis for the local default.")
    parser.add_argument("command", choices=["up", "status", "down"])
    args = parser.parse_args(argv)
    if args.command == "down":
        down()
        print(f"streams down (removed {state_dir()})", file=sys.stderr)
        return 0
    if args.command == "status":
        info = status()
        if info is None or not info.alive():
            print("streams: not running", file=sys.stderr)
            return 1
    else:
        try:
            info = up()
        except (KafkaError, RedisError) as exc:
            print(f"streams: {exc}", file=sys.stderr)
            return 1
    print(f"kafka bootstrap {info.bootstrap} (pid {info.kafka_pid})\n"
          f"redis {info.redis} (pid {info.redis_pid})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
