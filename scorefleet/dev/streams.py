"""Kafka and Redis for the local default, beside the control plane.

    python -m scorefleet.dev.streams up       # start both (idempotent); print their addresses
    python -m scorefleet.dev.streams status   # pids and addresses; exit 1 unless both run
    python -m scorefleet.dev.streams down     # stop both, remove their state
    scorefleet up --streams                   # the same `up`, once the cluster's node is up

They run detached (own sessions) on free 127.0.0.1 ports; pids, ports and data live in
``<cluster dir>/streams`` so a later command (or ``scorefleet down``) finds and stops them. A pid
is only signalled while its command line still names the binary started (pids get reused).

When the cluster in the cluster dir has a real node, both also listen on the node IP (the pod
bridge's address: kafka.py, redis.py, node_address.py), so the operator's scorer pods reach
them: ``pod_bootstrap`` and ``pod_redis`` are what a pipeline on the node names. Host tools
can use either address. Started before the node, they would have nothing to bind there, so
`scorefleet up --streams` starts them after the cluster; a pair started without the node
address while the node runs is replaced.
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
from scorefleet.dev.node_address import NodeAddressError
from scorefleet.dev.redis import RedisError, RedisServer


@dataclass(frozen=True)
class StreamsInfo:
    bootstrap: str
    redis: str
    kafka_pid: int
    redis_pid: int
    java: str
    pod_bootstrap: str | None = None  # on the node IP, for pods; None without a real node
    pod_redis: str | None = None

    @property
    def pod_facing(self) -> tuple[str, str]:
        """(bootstrap, redis) for scorer pods: the node IP's when there is a real node."""
        return (self.pod_bootstrap or self.bootstrap, self.pod_redis or self.redis)

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


def cluster_node_ip() -> str | None:
    """The node IP of the cluster in the cluster dir, when it has a real node."""
    from scorefleet.dev import cluster  # cluster's teardown stops the streams: import late

    info = cluster.current()
    return info.node.ip if info is not None and info.node is not None else None


def up(node_ip: str | None = None) -> StreamsInfo:
    """Both running, reusing what already runs; a half-dead pair is replaced whole, and so is
    a pair not listening on ``node_ip`` (the real node's address; None: 127.0.0.1 only)."""
    current = status()
    if (current is not None and current.alive()
            and _node_ip(current.pod_bootstrap) == node_ip):
        return current
    down()
    base = state_dir()
    base.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(base / "kafka", node_ip=node_ip)
    redis = RedisServer(base / "redis", node_ip=node_ip)
    try:
        broker.start()
        redis.start()
    except BaseException:
        broker.stop()
        redis.stop()
        raise
    assert broker.pid is not None and redis.pid is not None
    info = StreamsInfo(broker.bootstrap, redis.address, broker.pid, redis.pid, broker.java,
                       broker.node_bootstrap, redis.node_address)
    _state_file().write_text(json.dumps(asdict(info)))
    return info


def _node_ip(address: str | None) -> str | None:
    return address.rsplit(":", 1)[0] if address else None


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
            info = up(node_ip=cluster_node_ip())
        except (KafkaError, RedisError, NodeAddressError) as exc:
            print(f"streams: {exc}", file=sys.stderr)
            return 1
    pods = (f"; pods on the real node: {info.pod_bootstrap}" if info.pod_bootstrap else "")
    print(f"kafka bootstrap {info.bootstrap}{pods} (pid {info.kafka_pid})")
    pods = f"; pods on the real node: {info.pod_redis}" if info.pod_redis else ""
    print(f"redis {info.redis}{pods} (pid {info.redis_pid})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
