"""A whole reconcile scaling a stream pipeline on its consumer lag: the operator process reads
the lag from the real broker on its measuring passes (reconcile.py -> kafka_lag.py), the
autoscaler takes it as a floor and the partitions as a ceiling, and the scale-down after the
backlog is drained waits for the window.

kwok pods run no containers, so nothing consumes while the backlog builds: the lag is real
(events produced, the group's offsets where they are). Then four stream scorer processes on
127.0.0.1 join the pipeline's consumer group, as its pods would, and drain it; a real
Prometheus scrapes them (before they start it scrapes nothing: the autoscaler has no
measurement, and the lag alone raises the fleet). Four of them, one worker each, because the
topic has four partitions: as many group members as the partitions can feed, and at least as
many scrape targets as ready pods, so the readings are complete.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from scorefleet.dev.kafka import KafkaBroker
from tests.cluster.test_autoscaling_operator import Operator
from tests.conftest import eventually, kubectl
from tests.prometheus_server import PrometheusServer
from tests.scorer.scorer_process import Models, ScorerProcess, free_port
from tests.stream.harness import Topics, create_topics, encode, event_rows, make_events

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.stream,
              pytest.mark.slow]

NAME = "lagging"
PARTITIONS = 4
BATCH = 10  # maxBatchSize, which is also the lag one consumer may hold (lag_threshold)
WINDOW_S = 30  # scaleDown.stabilizationWindow
STREAM_REASONS = ("StreamLag", "PartitionLimited", "ScaleDown", "ScaleUp")


def pipeline(topics: Topics, bootstrap: str) -> str:
    spec = {
        "model": {"name": NAME, "version": "v1", "uri": "file:///models/v1.onnx"},
        "scorer": {"workers": 1},
        "source": {"kafka": {"bootstrapServers": [bootstrap], "topic": topics.events,
                             "consumerGroup": topics.group, "verdictTopic": topics.verdicts,
                             "deadLetterTopic": topics.dead, "maxBatchSize": BATCH}},
        "scaling": {"minReplicas": 1, "maxReplicas": 6,
                    "scaleDown": {"stabilizationWindow": f"{WINDOW_S}s", "maxStepPods": 4}},
        "slo": {"p99Latency": "500ms"},
    }
    return yaml.safe_dump({"apiVersion": "scorefleet.io/v1alpha1", "kind": "ScoringPipeline",
                           "metadata": {"name": NAME}, "spec": spec})


class Fleet:
    def __init__(self, kafka: KafkaBroker, topics: Topics, prom: PrometheusServer,
                 operator: Operator, namespace: str, ports: list[int]) -> None:
        self.kafka, self.topics, self.prom = kafka, topics, prom
        self.operator, self.namespace = operator, namespace
        self.ports = ports  # the consumers' metrics ports, Prometheus's targets
        self.produced = 0

    def produce(self, n: int) -> None:
        """`n` more events, spread evenly over the partitions, none consumed yet."""
        rows = event_rows(n, seed=self.produced)
        values = encode(make_events(rows, inline=32))
        producer = Producer({"bootstrap.servers": self.kafka.bootstrap})
        for i, value in enumerate(values):
            producer.produce(self.topics.events, value, partition=(self.produced + i)
                             % PARTITIONS)
        assert producer.flush(30) == 0
        self.produced += n

    def status(self) -> dict[str, Any]:
        sp = json.loads(kubectl("get", "sp", NAME, "-n", self.namespace, "-o", "json"))
        return dict(sp.get("status") or {})

    def stable(self) -> dict[str, Any]:
        return dict((self.status().get("autoscaling") or {}).get("stable") or {})

    def lag(self) -> dict[str, Any]:
        return dict(self.status().get("streamLag") or {})

    def replicas(self) -> int | None:
        """The stable Deployment's replicas; None before the operator created it."""
        out = kubectl("get", "deployment", f"{NAME}-stable", "-n", self.namespace,
                      "-o", "jsonpath={.spec.replicas}", "--ignore-not-found")
        return int(out) if out.strip() else None

    def events(self) -> list[dict[str, Any]]:
        raw = json.loads(kubectl("get", "events", "-n", self.namespace, "-o", "json"))
        return [e for e in raw["items"] if e["involvedObject"].get("kind") == "ScoringPipeline"
                and e["reason"] in STREAM_REASONS]


@pytest.fixture
def fleet(control_plane: Any, namespace: str, tmp_path: Path) -> Iterator[Fleet]:
    with KafkaBroker(tmp_path / "kafka") as kafka:
        topics = create_topics(kafka.bootstrap, "lag", partitions=PARTITIONS)
        ports = [free_port() for _ in range(PARTITIONS)]
        with PrometheusServer(tmp_path, [f"127.0.0.1:{p}" for p in ports]) as prom:
            operator = Operator(tmp_path, prom.url)
            operator.start()
            try:
                kubectl("apply", "-n", namespace, "-f", "-",
                        stdin=pipeline(topics, kafka.bootstrap))
                yield Fleet(kafka, topics, prom, operator, namespace, ports)
            finally:
                kubectl("delete", "sp", NAME, "-n", namespace, "--ignore-not-found")
                if operator.proc is not None:
                    operator.stop()


def parse(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def start_consumers(fleet: Fleet, models: Models, tmp_path: Path) -> list[ScorerProcess]:
    """The pipeline's pods, as processes: one group member each, in the pipeline's group."""
    stream = {"bootstrapServers": [fleet.kafka.bootstrap], "topic": fleet.topics.events,
              "consumerGroup": fleet.topics.group, "verdictTopic": fleet.topics.verdicts,
              "deadLetterTopic": fleet.topics.dead, "maxBatchSize": BATCH,
              "sessionTimeoutSeconds": 6}
    scorers = []
    for i, port in enumerate(fleet.ports):
        workdir = tmp_path / f"consumer{i}"
        workdir.mkdir()
        scorers.append(ScorerProcess(workdir, {"model": models.ref("v1"), "pipeline": NAME,
                                               "stream": stream}, metrics_port=port))
    return scorers


def test_lag_scales_the_stable_track_up_to_the_partitions_and_down_after_the_window(
        fleet: Fleet, models: Models, tmp_path: Path) -> None:
    eventually("Deployment created", lambda: fleet.replicas() == 1, timeout=60)
    caught_up = eventually("lag read by a measuring pass", lambda: (
        lag if (lag := fleet.lag()).get("lag") == 0 else None), timeout=30)
    assert caught_up["partitions"] == PARTITIONS and caught_up["lagThreshold"] == BATCH
    assert caught_up["consumersPerReplica"] == 1 and caught_up["maxUsefulReplicas"] == 4

    # 25 events behind, 10 per consumer (KEDA's rule): 3 consumers, 3 pods of 1 worker.
    fleet.produce(25)
    eventually("lag floor: 3 replicas", lambda: fleet.replicas() == 3, timeout=60)
    s = eventually("status: StreamLag", lambda: (
        a if (a := fleet.stable()).get("desired") == 3 else None), timeout=30)
    assert s["reason"] == "StreamLag" and s["partitionLimited"] is False, s
    assert "lag asks for 3 replicas" in s["streamBound"], s
    assert s["measurement"].startswith("NoMetrics"), s  # nothing scraped yet: the lag alone
    lag = fleet.lag()
    assert (lag["lag"], lag["desiredReplicas"], lag["partitionLimited"]) == (25, 3, False)

    # 40,025 behind: 4,003 consumers wanted, but 4 partitions feed 4 members at most. A backlog
    # this size takes the consumers several 1 s scrapes to drain (20,000 took 2-3 s on an idle
    # machine, 5,000 per consumer). A scorer's stream series appear only as it starts to
    # consume, and Prometheus needs a scrape before the drain ends to see them increase: with
    # 2,025, twice in CI, the first scrape came after it, and no end-to-end p99 was read.
    fleet.produce(40000)
    eventually("capped at the partitions: 4 replicas", lambda: fleet.replicas() == 4,
               timeout=60)
    s = eventually("status: PartitionLimited", lambda: (
        a if (a := fleet.stable()).get("desired") == 4 else None), timeout=30)
    assert s["reason"] == "PartitionLimited" and s["partitionLimited"] is True, s
    assert "partitions, not pods, are the limit" in s["streamBound"], s
    lag = fleet.lag()
    assert (lag["lag"], lag["desiredReplicas"], lag["maxUsefulReplicas"],
            lag["partitionLimited"]) == (40025, 4, 4, True)
    assert "partitions, not pods, are the limit" in lag["message"]
    # Held there: maxReplicas (6) would allow more, the partitions do not.
    time.sleep(6)
    assert fleet.replicas() == 4

    # The pods' consumers join and drain the backlog; the fleet stays for the window. Every
    # lag reading is recorded (status.streamLag.measuredAt is the pass's own clock) to judge
    # the scale-down's time against the passes that still saw a backlog.
    scorers = start_consumers(fleet, models, tmp_path)
    readings: dict[str, int] = {}
    latencies: dict[str, tuple[float | None, float | None]] = {}
    try:
        deadline = time.monotonic() + WINDOW_S + 120
        while time.monotonic() < deadline:
            status = fleet.status()
            lag = status.get("streamLag") or {}
            if lag.get("lag") is not None:
                readings[lag["measuredAt"]] = lag["lag"]
            decision = (status.get("autoscaling") or {}).get("stable") or {}
            if decision.get("decidedAt"):
                latencies[decision["decidedAt"]] = (decision.get("endToEndP99Ms"),
                                                    decision.get("sloEndToEndP99Ms"))
            if decision.get("desired") == 1:
                break
            time.sleep(0.2)
        assert fleet.replicas() == 1, readings
        verdicts = sum(s.metric("scorefleet_stream_verdicts_total") for s in scorers)
        assert verdicts >= fleet.produced
    finally:
        for scorer in scorers:
            scorer.kill()
    s = fleet.stable()
    # (Its reason is ScaleDown, or AtMinReplicas once a later pass has held at 1.)
    assert s["lastDirection"] == -1 and s["measurement"].startswith("Sample:"), s
    first_caught_up = min(parse(at) for at, n in readings.items() if n == 0)
    last_behind = max(parse(at) for at, n in readings.items() if n > 0)
    assert last_behind < first_caught_up, readings
    # The last pass that saw the backlog came before the first that did not, at most one
    # period (2 s) plus that pass's own time earlier (seconds in status are whole): the
    # scale-down waited the window after it. Without the window it comes within a pass.
    assert parse(s["lastChangeAt"]) - first_caught_up >= WINDOW_S - 8, (s, readings)
    # The drained backlog's events waited tens of seconds for their verdicts: the end-to-end
    # p99 the scorers exported, read through Prometheus, shown beside the default SLO (1 s).
    # While it was over, the fleet could not go down; the window ran from the last such pass.
    late = [parse(at) for at, (p99, slo) in latencies.items()
            if p99 is not None and slo is not None and p99 > slo]
    assert late and {slo for _, slo in latencies.values() if slo} == {1000}, latencies
    assert parse(s["lastChangeAt"]) - max(late) >= WINDOW_S - 8, (s, latencies)
    assert "end-to-end p99" in s["measurement"], s

    # One Event and one log line per change, each naming why.
    log = fleet.operator.text()
    events = fleet.events()
    by_reason = {e["reason"]: e for e in events}
    assert set(by_reason) == {"StreamLag", "PartitionLimited", "ScaleDown"}, events
    assert "lag asks for 3 replicas" in by_reason["StreamLag"]["message"]
    assert "partitions, not pods, are the limit" in by_reason["PartitionLimited"]["message"]
    assert "4 -> 1" in by_reason["ScaleDown"]["message"]
    for e in events:
        assert e.get("count", 1) == 1, e
        assert log.count(f"{e['reason']}: {e['message']}") == 1, e["message"]
