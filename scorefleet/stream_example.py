"""The example stream pipeline of the local default: its topics and Redis features, a bounded
producer of events, and reading what the scorer pods made of them.

    scorefleet stream produce [--count 1000] [--rate 200] [--poison 0]
    scorefleet stream verdicts [--expect N] [--timeout 60] [--show 3]

`scorefleet up --streams` applies ``examples/stream-pipeline.yaml`` (:func:`apply_example`):
creates its three topics, writes one Redis hash per sender with the 8 online features, fills in
the broker and Redis addresses the pods reach, and applies it. ``produce`` writes synthetic
email events (the example model's feature generator; nothing here is real data) to the input
topic, at a bounded rate and count; ``verdicts`` reads the verdict and dead-letter topics from
the start and counts them per track, model version and decision, plus per pod what Prometheus
scraped from the pods. Host-side, both use the broker's 127.0.0.1 listener.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "stream-pipeline.yaml"
SENDERS = 50
PARTITIONS = 6
MAX_EVENTS = 100_000
MAX_RATE = 5_000.0
REASON_HEADER = "scorefleet.reason"  # scorefleet.scorer.stream.events.REASON_HEADER


@dataclass(frozen=True)
class Example:
    """What the tools need from a stream pipeline's spec."""

    name: str
    topic: str
    verdict_topic: str
    dead_letter_topic: str
    key_template: str
    online: tuple[str, ...]  # Redis feature names, in model order after the event's own

    @property
    def inline(self) -> int:
        """Features the event carries itself: the example model takes 32 in all."""
        from scorefleet.scorer.example_model import NUM_FEATURES

        return NUM_FEATURES - len(self.online)

    def key(self, sender: str) -> str:
        field_ = self.key_template[self.key_template.index("{") + 1:self.key_template.index("}")]
        return self.key_template.replace("{" + field_ + "}", sender)


def load(path: Path = EXAMPLE) -> Example:
    doc = yaml.safe_load(path.read_text())
    kafka, redis = doc["spec"]["source"]["kafka"], doc["spec"]["features"]["redis"]
    return Example(doc["metadata"]["name"], kafka["topic"], kafka["verdictTopic"],
                   kafka["deadLetterTopic"], redis["keyTemplate"], tuple(redis["features"]))


def render(text: str, bootstrap: str, redis: str) -> str:
    """The example with the addresses filled in (``${KAFKA_BOOTSTRAP}``, ``${REDIS_ADDRESS}``);
    a placeholder left unfilled is an error, not a pipeline the API server rejects later."""
    return string.Template(text).substitute(KAFKA_BOOTSTRAP=bootstrap, REDIS_ADDRESS=redis)


def create_topics(bootstrap: str, ex: Example, partitions: int = PARTITIONS,
                  timeout: float = 30.0) -> None:
    """The three topics (the broker does not create topics on use); existing ones are kept.
    Returns once every partition has a leader (producing earlier can fail)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    names = (ex.topic, ex.verdict_topic, ex.dead_letter_topic)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                   for t in names])
    for future in futures.values():
        try:
            future.result(timeout)
        except KafkaException as err:
            if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=5)
        if all(t in meta.topics and meta.topics[t].partitions
               and all(p.leader >= 0 for p in meta.topics[t].partitions.values())
               for t in names):
            load_group_coordinator(bootstrap, ex.topic, deadline - time.monotonic())
            return
        time.sleep(0.1)
    raise RuntimeError(f"topics {names}: partition leaders not elected within {timeout:.0f}s")


def load_group_coordinator(bootstrap: str, topic: str, timeout: float) -> None:
    """Returns once the broker's group coordinator answers offset fetches.

    On a fresh broker the first group request creates ``__consumer_offsets`` and the
    coordinator loads it; until then offset fetches fail with NOT_COORDINATOR or
    COORDINATOR_LOAD_IN_PROGRESS. librdkafka 2.16's AdminClient (the operator's lag reading)
    segfaults on that answer: it hands the retry to a consumer group it does not have (seen
    here: the operator of `up --streams` died in librdkafka at its first lag reading; the same
    crash is confluent-kafka-javascript#374). A consumer retries those errors properly, so one
    asks first, for a group of its own, until it gets an answer.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "scorefleet.dev.warm-up",
                         "enable.auto.commit": False, "log_level": 0})
    deadline = time.monotonic() + max(timeout, 10.0)
    try:
        while True:
            try:
                consumer.committed([TopicPartition(topic, 0)], timeout=5)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close()


def sender_rows(senders: int = SENDERS) -> Any:
    from scorefleet.scorer.example_model import synthetic_features

    return synthetic_features(senders, seed=1)


def seed_features(redis_address: str, ex: Example, senders: int = SENDERS) -> None:
    """One hash per sender: the online features (the last columns of a synthetic row) and the
    update time the staleness check reads."""
    import redis
    from redis.typing import EncodableT, FieldT

    rows = sender_rows(senders)
    host, port = redis_address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), socket_timeout=5)
    try:
        pipe = client.pipeline(transaction=False)
        for s in range(senders):
            mapping: dict[FieldT, EncodableT] = {
                name: repr(float(rows[s, ex.inline + j])) for j, name in enumerate(ex.online)}
            mapping["_ts"] = str(time.time())
            pipe.hset(ex.key(f"s{s}"), mapping=mapping)
        pipe.execute()
    finally:
        client.close()


def apply_example(kubectl: Any, namespace: str, bootstrap: str, redis: str, host_bootstrap: str,
                  host_redis: str, path: Path = EXAMPLE) -> Example:
    """Topics, features, then the pipeline (``kubectl(*args, stdin=...)``); returns it."""
    ex = load(path)
    create_topics(host_bootstrap, ex)
    seed_features(host_redis, ex)
    kubectl("apply", "-n", namespace, "-f", "-", stdin=render(path.read_text(), bootstrap, redis))
    return ex


def events(ex: Example, count: int, run: str, seed: int = 0) -> list[tuple[bytes, bytes]]:
    """(key, value) of ``count`` events with ids ``<run>-<i>``, spread over the senders."""
    from scorefleet.scorer.example_model import synthetic_features

    rows = synthetic_features(count, seed=seed)
    out = []
    for i in range(count):
        sender = f"s{i % SENDERS}"
        event = {"id": f"{run}-{i}", "sender": sender,
                 "features": [float(v) for v in rows[i, :ex.inline]]}
        out.append((sender.encode(), json.dumps(event).encode()))
    return out


def produce(bootstrap: str, ex: Example, count: int, rate: float, poison: int = 0,
            run: str | None = None) -> str:
    """``count`` events (+ ``poison`` undecodable messages) at ``rate``/s; returns the run id,
    the prefix of their ids. Bounded: at most MAX_EVENTS, and delivery within 60 s after."""
    from confluent_kafka import Producer

    if not 0 < count <= MAX_EVENTS or not 0 < rate <= MAX_RATE or not 0 <= poison <= 100:
        raise ValueError(f"count 1-{MAX_EVENTS}, rate 1-{MAX_RATE:.0f}/s and poison 0-100, "
                         f"not {count}, {rate}, {poison}")
    run = run or f"r{uuid.uuid4().hex[:6]}"
    messages = events(ex, count, run)
    messages += [(b"poison", f"not json {run}-{i}".encode()) for i in range(poison)]
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5})
    started = time.monotonic()
    for i, (key, value) in enumerate(messages):
        producer.produce(ex.topic, value=value, key=key)
        ahead = started + (i + 1) / rate - time.monotonic()
        producer.poll(0)
        if ahead > 0:
            time.sleep(ahead)
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} of {len(messages)} messages not delivered within 60 s")
    return run


@dataclass
class Outcome:
    """What is on the verdict and dead-letter topics, verdicts keyed by event id."""

    verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead: list[tuple[bytes, str]] = field(default_factory=list)  # (value, reason)

    def of_run(self, run: str) -> Outcome:
        return Outcome({k: v for k, v in self.verdicts.items() if k.startswith(run + "-")},
                       [(v, r) for v, r in self.dead if f"{run}-".encode() in v])

    @property
    def duplicates(self) -> int:
        return sum(len(v) - 1 for v in self.verdicts.values())

    def counts(self, key: str) -> Counter[str]:
        return Counter(str(v[key]) for vs in self.verdicts.values() for v in vs)


def read_outcome(bootstrap: str, ex: Example, expect: int | None = None,
                 timeout: float = 60.0, idle: float = 3.0) -> Outcome:
    """Both topics from the start, without joining a group, until ``expect`` verdicts plus dead
    letters are there (then a moment more, for late duplicates), or nothing new came for
    ``idle`` seconds when ``expect`` is None; at most ``timeout`` seconds."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "log_level": 0})
    outcome = Outcome()
    try:
        meta = consumer.list_topics(timeout=10)
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                         for t in (ex.verdict_topic, ex.dead_letter_topic)
                         for p in meta.topics[t].partitions])
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        settle: float | None = None
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, timeout=0.2)
            for msg in batch:
                if msg.error() is not None:
                    continue
                if msg.topic() == ex.verdict_topic:
                    verdict = json.loads(msg.value() or b"{}")
                    outcome.verdicts.setdefault(str(verdict.get("id")), []).append(verdict)
                else:
                    reason = dict(msg.headers() or []).get(REASON_HEADER) or b""
                    outcome.dead.append((msg.value() or b"", reason if isinstance(reason, str)
                                         else reason.decode(errors="replace")))
            now = time.monotonic()
            last = now if batch else last
            seen = sum(len(v) for v in outcome.verdicts.values()) + len(outcome.dead)
            if expect is None and now - last > idle:
                break
            if expect is not None and seen >= expect:
                settle = settle or now + 1.0
                if now > settle:
                    break
    finally:
        consumer.close()
    return outcome


def verdicts_by_pod(prometheus_url: str, pipeline: str, namespace: str) -> dict[str, float]:
    """Verdicts each scorer pod reported, from the Prometheus that discovers the node's pods."""
    query = (f'sum by (pod) (scorefleet_stream_verdicts_total{{namespace="{namespace}",'
             f'pipeline="{pipeline}"}})')
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as resp:
        rows = json.loads(resp.read())["data"]["result"]
    return {r["metric"]["pod"]: float(r["value"][1]) for r in rows}


def summary(out: Outcome, by_pod: dict[str, float] | None, show: int) -> str:
    lines = [f"{len(out.verdicts)} events with a verdict ({out.duplicates} duplicates), "
             f"{len(out.dead)} dead letters"]
    for key in ("track", "modelVersion", "decision", "featuresMissing"):
        lines.append(f"  {key:<16} " + ", ".join(f"{k}: {n}" for k, n in
                                                 sorted(out.counts(key).items())))
    reasons = Counter(r.split(":")[0] for _, r in out.dead)
    if reasons:
        lines.append("  dead letters     " + ", ".join(f"{k}: {n}" for k, n in reasons.items()))
    if by_pod:
        lines.append("  by pod (Prometheus) " + ", ".join(
            f"{pod}: {n:.0f}" for pod, n in sorted(by_pod.items())))
    lines += [json.dumps(vs[0]) for vs in list(out.verdicts.values())[-show:]] if show else []
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from scorefleet.dev import cluster, streams

    parser = argparse.ArgumentParser(prog="scorefleet stream")
    sub = parser.add_subparsers(dest="command", required=True)
    prod = sub.add_parser("produce", help="bounded synthetic events to the input topic")
    prod.add_argument("--count", type=int, default=1000)
    prod.add_argument("--rate", type=float, default=200.0, help="events per second")
    prod.add_argument("--poison", type=int, default=0, help="undecodable messages too")
    read = sub.add_parser("verdicts", help="count verdicts and dead letters")
    read.add_argument("--expect", type=int, default=None,
                      help="wait for this many verdicts + dead letters (else until idle)")
    read.add_argument("--timeout", type=float, default=60.0)
    read.add_argument("--show", type=int, default=3, help="print the last N verdicts")
    read.add_argument("-n", "--namespace", default="default")
    for p in (prod, read):
        p.add_argument("--pipeline", type=Path, default=EXAMPLE)
    args = parser.parse_args(argv)
    info = streams.status()
    if info is None or not info.alive():
        print("scorefleet stream: Kafka and Redis are not running: `scorefleet up --streams`",
              file=sys.stderr)
        return 1
    ex = load(args.pipeline)
    if args.command == "produce":
        run = produce(info.bootstrap, ex, args.count, args.rate, args.poison)
        print(f"produced {args.count} events (ids {run}-0..{args.count - 1}) and {args.poison} "
              f"poison messages to {ex.topic}")
        return 0
    out = read_outcome(info.bootstrap, ex, args.expect, args.timeout)
    current = cluster.current()
    by_pod = None
    if current is not None and current.node is not None:
        try:
            by_pod = verdicts_by_pod(current.node.prometheus_url, ex.name, args.namespace)
        except OSError as err:
            print(f"prometheus: {err}", file=sys.stderr)
    print(summary(out, by_pod, args.show))
    return 0
