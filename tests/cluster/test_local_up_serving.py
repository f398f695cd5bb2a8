"""The README's main command on a machine that can run a real node: `scorefleet up` serves the
example pipeline from real pods, prints the QPS and p99 Prometheus measured and the command
that scores an event (which works), and `scorefleet down` leaves nothing on the host. With
`--streams` (one `up` for both): Kafka and Redis listen on the node IP too, the example stream
pipeline's pods give every produced event a verdict, and nothing stays listening after `down`.

The machine has one real node (docs/local-cluster.md): the session's is stopped for the
length of this test and started again afterwards."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scorefleet.dev import cluster, node, processes
from scorefleet.dev.nodeconf import NodeLayout
from tests.conftest import session_images
from tests.dev.test_node_teardown import leftovers

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.node_handoff,
              pytest.mark.timeout(900)]
HELD = "the machine's real node belongs to the cluster in"


@pytest.fixture
def machine_node_free(real_node: Any, tmp_path: Path) -> Iterator[None]:
    assert cluster.stop_node() == []
    try:
        yield
    finally:
        # Last in the session (node_handoff): another cluster on a shared machine may have
        # taken the node meanwhile; then the session simply ends without it.
        try:
            cluster.start_node(session_images(tmp_path / "images"))
        except RuntimeError as err:
            if HELD not in str(err):
                raise


def scorefleet(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scorefleet.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_up_serves_the_example_from_real_pods_and_down_leaves_nothing(
        machine_node_free: None, tmp_path: Path) -> None:
    # Deliberately long (over 104 bytes with the node's sockets under it, containerd's limit):
    # the node keeps its sockets on a short path of their own, so any cluster dir works.
    state = tmp_path / ("cluster-dir-" + "x" * 60)
    assert len(str(state / "node" / "containerd.sock")) > 104
    env = {**os.environ, "SCOREFLEET_CLUSTER_DIR": str(state), "SCOREFLEET_REAL_NODE": "require"}
    env.pop("KUBECONFIG", None)
    try:
        up = scorefleet(env, "up", "--streams", timeout=840)
        out = up.stdout
        if up.returncode != 0 and HELD in up.stderr and node.mode() is not node.Mode.REQUIRE:
            # Another cluster took the machine's one real node when the session let it go.
            pytest.skip(f"the real node was taken by another cluster: {up.stderr[-300:]}")
        assert up.returncode == 0, out + up.stderr[-5000:]
        header, row = next((h, r) for h, r in zip(out.splitlines(), out.splitlines()[1:],
                                                  strict=False) if h.startswith("NAME"))
        qps = float(row[header.index("QPS"):].split()[0])
        p99 = float(row[header.index("P99MS"):].split()[0])
        assert qps > 0 and 0 < p99 < 1000, out
        load_line = next(line for line in out.splitlines() if line.startswith("load: "))
        assert re.search(r"codes: OK=\d+$|codes: OK=\d+;", load_line), load_line
        score_cmd = next(line.split("#")[0].split() for line in out.splitlines()
                         if " score phishing" in line)
        score = subprocess.run(score_cmd, env=env, capture_output=True, text=True, timeout=60,
                               check=False)
        assert score.returncode == 0, score.stdout + score.stderr
        assert "score:" in score.stdout
        streams = json.loads((state / "streams" / "streams.json").read_text())
        node_ip = NodeLayout(state).node_ip
        assert streams["pod_bootstrap"].startswith(f"{node_ip}:"), streams
        assert streams["pod_redis"].startswith(f"{node_ip}:"), streams
        # 1000 events and 2 poison messages: each event one verdict, from the pods.
        assert "1000 events with a verdict (0 duplicates), 2 dead letters" in out, out
        assert "stream verdicts" in out, out
    finally:
        down = scorefleet(env, "down", timeout=180)
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    assert leftovers(NodeLayout(state)) == []
    for pid in (streams["kafka_pid"], streams["redis_pid"]):
        assert not processes.is_running(pid)
    ports = {int(a.rsplit(":", 1)[1]) for a in (streams["bootstrap"], streams["redis"],
                                                 streams["pod_bootstrap"], streams["pod_redis"])}
    assert not [p for p in ports if processes.port_open(p)]
    assert not [p for p in ports if processes.port_open(p, node_ip)]
