"""The example stream pipeline on real scorer pods: the operator creates its pods on the real
node, they consume from a real Kafka broker and read online features from a real Redis, both
reached on the node IP (the pod bridge's address; 127.0.0.1 inside a pod is the pod itself),
and every event gets exactly one verdict from them.

Broker and Redis are the project's own (KafkaBroker, RedisServer with ``node_ip``), as
`scorefleet up --streams` starts them; the pipeline is ``examples/stream-pipeline.yaml`` with
the addresses filled in, its replicas pinned at 2 so that no scale event rebalances the group
while the verdicts are counted. Bounded: 600 events at 300/s, two minutes to see them all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from confluent_kafka.admin import AdminClient

from scorefleet import stream_example
from scorefleet.dev.kafka import KafkaBroker
from scorefleet.dev.redis import RedisServer
from scorefleet.scorer.example_model import synthetic_features
from tests.cluster import real_pods
from tests.conftest import eventually, kubectl
from tests.scorer.scorer_process import Models

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.stream,
              pytest.mark.slow, pytest.mark.timeout(900)]

EVENTS = 600
POISON = 3
REPLICAS = 2


@pytest.fixture(scope="module")
def streams_on_node(real_node: Any, tmp_path_factory: pytest.TempPathFactory,
                    ) -> Iterator[tuple[KafkaBroker, RedisServer]]:
    base = tmp_path_factory.mktemp("streams")
    with (KafkaBroker(base / "kafka", node_ip=real_node.ip) as kafka,
          RedisServer(base / "redis", node_ip=real_node.ip) as redis):
        yield kafka, redis


def group_members(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        described = admin.describe_consumer_groups([group])[group].result(10)
    except Exception:  # the group does not exist yet, or its coordinator is still loading
        return 0
    return len(described.members)


def expected_scores(models: Models, ex: stream_example.Example) -> np.ndarray[Any, Any]:
    """The model on each event's own features followed by its sender's Redis features."""
    rows = synthetic_features(EVENTS, seed=0).copy()
    senders = stream_example.sender_rows()
    for i in range(EVENTS):
        rows[i, ex.inline:] = senders[i % stream_example.SENDERS, ex.inline:]
    session = ort.InferenceSession(str(models.dir / "model-v1.onnx"),
                                   providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: rows.astype(np.float32)})[0]
    return np.asarray(out, dtype=np.float64).reshape(-1)


def test_operator_pods_score_every_event_once_with_redis_features_and_dead_letter_poison(
        real_node: Any, scorer_image: str, models: Models, real_namespace: str,
        streams_on_node: tuple[KafkaBroker, RedisServer], tmp_path: Path) -> None:
    node, ns = real_node, real_namespace
    kafka, redis = streams_on_node
    assert kafka.node_bootstrap is not None and redis.node_address is not None
    real_pods.publish_models(models, node)
    ex = stream_example.load()
    stream_example.create_topics(kafka.bootstrap, ex)
    stream_example.seed_features(redis.address, ex)
    doc = yaml.safe_load(stream_example.render(stream_example.EXAMPLE.read_text(),
                                               kafka.node_bootstrap, redis.node_address))
    doc["spec"]["scaling"] = {"minReplicas": REPLICAS, "maxReplicas": REPLICAS}

    with real_pods.operator(node.prometheus_url, tmp_path / "operator.log"):
        kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(doc))
        pods = real_pods.wait_ready_pods(ns, ex.name, REPLICAS, timeout=300)
        assert {p["spec"]["nodeName"] for p in pods} == {node.name}
        names = {p["metadata"]["name"] for p in pods}
        # Both pods in the group before any event: a join during the count would rebalance.
        group = f"scorefleet.{ns}.{ex.name}"
        eventually(f"{REPLICAS} members in {group}",
                   lambda: group_members(kafka.bootstrap, group) == REPLICAS,
                   timeout=120, interval=1)

        started = time.monotonic()
        run = stream_example.produce(kafka.bootstrap, ex, EVENTS, rate=300, poison=POISON)
        out = stream_example.read_outcome(kafka.bootstrap, ex, expect=EVENTS + POISON,
                                          timeout=120).of_run(run)
        took = time.monotonic() - started
        ids = [f"{run}-{i}" for i in range(EVENTS)]
        assert set(out.verdicts) == set(ids), (
            f"{len(out.verdicts)} of {EVENTS} events have a verdict after {took:.0f}s")
        assert out.duplicates == 0
        verdicts = [out.verdicts[i][0] for i in ids]
        assert {(v["track"], v["modelVersion"]) for v in verdicts} == {("stable", "v1")}
        assert not any(v["featuresMissing"] for v in verdicts)
        # The scores are the model's on the event's features plus the sender's from Redis.
        scores = np.array([v["score"] for v in verdicts])
        np.testing.assert_allclose(scores, expected_scores(models, ex), rtol=1e-5, atol=1e-6)
        assert len(out.dead) == POISON
        assert all(r.startswith("not JSON") for _, r in out.dead), out.dead

        # Prometheus found both pods (kubernetes_sd) and counted every verdict, from both.
        by_pod = eventually(
            "Prometheus counts every verdict",
            lambda: (lambda c: c if sum(c.values()) >= EVENTS else None)(
                stream_example.verdicts_by_pod(node.prometheus_url, ex.name, ns)),
            timeout=60, interval=1)
        assert set(by_pod) == names
        assert sum(by_pod.values()) == EVENTS
        assert min(by_pod.values()) > 0, by_pod
        kubectl("delete", "sp", ex.name, "-n", ns, "--wait=false")


def test_only_this_host_and_its_pods_reach_the_node_ip(real_node: Any, control_plane: Any,
                                                       ) -> None:
    """What listens on the node IP (now Kafka and Redis too) is guarded: the node IP is a
    local address, which Linux would accept on any interface. Our INPUT and FORWARD jumps
    come first, ahead of kube-proxy's (KUBE-FORWARD accepts marked traffic)."""
    import subprocess

    from scorefleet.dev import hostnet
    from scorefleet.dev.nodeconf import NodeLayout

    lay = NodeLayout(control_plane.state_dir)

    def rules(chain: str) -> list[str]:
        out = subprocess.run(["iptables", "-w", "-S", chain], capture_output=True, text=True,
                             check=True).stdout
        return [ln for ln in out.splitlines() if ln.startswith("-A ")]

    guard = hostnet.input_chain(lay)
    assert rules("INPUT")[0] == f"-A INPUT -d {real_node.ip}/32 -j {guard}"
    assert rules("FORWARD")[0] == f"-A FORWARD -j {lay.chain}"
    assert rules(guard) == [f"-A {guard} -i lo -j RETURN", f"-A {guard} -i {lay.bridge} -j RETURN",
                            f"-A {guard} -j DROP"]
