"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, assembled from Maven Central.

    python -m scorefleet.dev.kafka fetch     # copy the jars into the cache (scripts/setup.sh)
    python -m scorefleet.dev.kafka run       # start a throwaway broker in the foreground

The jars come from ``kafka-pom.xml`` beside this module through maven-dependency-plugin (pinned)
and are cached outside the repository under ``<cache>/kafka/<version>-<pom sha>/lib``, so a
changed pom gets a fresh directory and nothing has to be invalidated by hand.

A :class:`KafkaBroker` formats a fresh log directory with a new cluster id, runs
``java -cp 'lib/*' kafka.Kafka server.properties`` in a session of its own on free ports, and is
ready when a client gets metadata listing the broker: an open port is not enough (the broker
listens before the controller has elected itself). Stopping, killing and restarting on the same
ports and data (the broker-restart fault tests) are :class:`processes.ProcessGroupServer`'s.

Pods on the local cluster's real node cannot reach 127.0.0.1 (it is their own loopback), so
``KafkaBroker(dir, node_ip=...)`` adds a second listener, ``NODE``, on the node's bridge
address (a local address of this host, checked: see :mod:`node_address`) and advertises it
there: a client that bootstraps from either address is told to use that same address.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from scorefleet.dev import locks, node_address, paths, processes

POM = Path(__file__).resolve().parent / "kafka-pom.xml"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# Small heap, serial GC, C1 only: ~290 MB RSS and a 2-4 s start on a 2-core machine; the broker
# of a test or a laptop never needs more.
JVM_FLAGS = ("-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Djava.awt.headless=true")
READY_TIMEOUT = 60.0


class KafkaError(RuntimeError):
    """The broker could not be installed, formatted or started; the message says why."""


def kafka_version(pom: Path = POM) -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if match is None:
        raise KafkaError(f"{pom}: no <kafka.version> property")
    return match.group(1)


def lib_dir(pom: Path = POM) -> Path:
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return paths.cache_root() / "kafka" / f"{kafka_version(pom)}-{digest}" / "lib"


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaError("java is not installed: scripts/setup.sh installs it "
                         "(apt-get install openjdk-17-jre-headless)")
    return os.path.realpath(java)


def fetch_jars(pom: Path = POM) -> Path:
    """The broker's jars, copied from Maven Central once per pom; returns the lib directory.

    Several checkouts share the cache, so the copy happens under a lock into a temporary
    directory that is renamed into place whole: a reader never sees half a lib directory.
    """
    lib = lib_dir(pom)
    if lib.is_dir():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaError("mvn is not installed: scripts/setup.sh installs it "
                         "(apt-get install maven)")
    lib.parent.mkdir(parents=True, exist_ok=True)
    with locks.exclusive(lib.parent.parent / ".lock"):
        if lib.is_dir():
            return lib
        staging = Path(tempfile.mkdtemp(prefix="lib-", dir=lib.parent))
        proc = subprocess.run(
            [mvn, "-B", "-q", "-f", str(pom), f"{DEPENDENCY_PLUGIN}:copy-dependencies",
             f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
            capture_output=True, text=True, check=False, timeout=900)
        jars = list(staging.glob("*.jar"))
        if proc.returncode != 0 or not jars:
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaError(f"mvn copy-dependencies failed ({proc.returncode}): "
                             f"{(proc.stdout + proc.stderr)[-2000:]}")
        staging.rename(lib)
    return lib


def new_cluster_id() -> str:
    """A KRaft cluster id as `kafka-storage random-uuid` makes it: 16 random bytes, base64url.

    Made here instead of by a second JVM start (~1 s). Kafka refuses ids starting with '-'.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def server_properties(port: int, controller_port: int, log_dir: Path, partitions: int,
                      node: str | None = None) -> str:
    """``node``: ``ip:port`` of the pods' listener, or None for 127.0.0.1 only."""
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    advertised = f"PLAINTEXT://127.0.0.1:{port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if node is not None:
        listeners += f",NODE://{node}"
        advertised += f",NODE://{node}"
        protocols += ",NODE:PLAINTEXT"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": str(log_dir),
        "num.partitions": str(partitions),
        # One broker: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Consumer groups form at once instead of after the default 3 s.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


class KafkaBroker(processes.ProcessGroupServer):
    """One broker process and its files under ``workdir``.

    ``with KafkaBroker(tmp) as broker: broker.bootstrap`` starts and stops it.
    ``node_ip``: also listen (and advertise) on the real node's bridge address, for pods:
    ``broker.node_bootstrap``; it must be a bridge's address on this host (never an
    off-machine interface), or NodeAddressError.
    """

    ready_timeout = READY_TIMEOUT

    def __init__(self, workdir: Path, *, partitions: int = 6, node_ip: str | None = None) -> None:
        self.workdir = workdir
        self.lib = fetch_jars()
        self.java = java_binary()
        super().__init__(workdir / "kafka.log", self.java)
        self.port, self.controller_port = processes.free_ports(2)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.node_bootstrap: str | None = None
        if node_ip is not None:
            node_address.check(node_ip)
            self.node_bootstrap = f"{node_ip}:{node_address.free_port(node_ip)}"
        self.config = workdir / "server.properties"
        self.log_dir = workdir / "data"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(server_properties(self.port, self.controller_port, self.log_dir,
                                                 partitions, self.node_bootstrap))
        self._format()

    def _classpath(self) -> str:
        return f"{self.lib}/*"

    def _format(self) -> None:
        proc = subprocess.run(
            [self.java, "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
             "-t", new_cluster_id(), "-c", str(self.config)],
            capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            raise KafkaError(f"kafka storage format failed: {(proc.stdout + proc.stderr)[-2000:]}")

    def _launch(self) -> None:
        env_log4j = self.workdir / "log4j2.properties"
        env_log4j.write_text(LOG4J2)
        self._spawn([self.java, *JVM_FLAGS, f"-Dlog4j2.configurationFile={env_log4j}",
                     f"-Dkafka.logs.dir={self.workdir}", "-cp", self._classpath(), "kafka.Kafka",
                     str(self.config)])

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        # log_level 0: librdkafka's connection-refused chatter while we poll is expected.
        # Every listener must answer, each advertising itself (a pod is sent where it asked).
        waiting = [b for b in (self.bootstrap, self.node_bootstrap) if b is not None]
        admins = {b: AdminClient({"bootstrap.servers": b, "log_level": 0}) for b in waiting}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid is None or not processes.is_running(self.pid):
                raise KafkaError(f"broker exited ({self.exit_reason()}); log:\n{self.log_tail()}")
            for bootstrap in list(waiting):
                with contextlib.suppress(Exception):
                    meta = admins[bootstrap].list_topics(timeout=1.0)
                    broker = meta.brokers.get(1)
                    if broker is not None and f"{broker.host}:{broker.port}" == bootstrap:
                        waiting.remove(bootstrap)
            if not waiting:
                return
            time.sleep(0.1)
        raise KafkaError(f"broker not ready on {', '.join(waiting)} within {timeout:.0f}s; "
                         f"log:\n{self.log_tail()}")


# Broker logs to the console (our log file), WARN and up, plus the line that says it started.
LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scorefleet.dev.kafka")
    parser.add_argument("command", choices=["fetch", "run"])
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            lib = fetch_jars()
            print(f"kafka {kafka_version()}: {len(list(lib.glob('*.jar')))} jars in {lib}")
            return 0
        with tempfile.TemporaryDirectory(prefix="scorefleet-kafka-") as tmp:
            started = time.monotonic()
            with KafkaBroker(Path(tmp)) as broker:
                print(f"kafka ready on {broker.bootstrap} in {time.monotonic() - started:.1f}s; "
                      "Ctrl-C stops it", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    while broker.running:
                        time.sleep(0.5)
    except KafkaError as exc:
        print(f"kafka: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
