"""status.metrics is what a real Prometheus measured from a real scorer.

kwok pods run no containers, so a scorer process on 127.0.0.1 stands in for the pipeline's
stable pods (same pipeline and track labels in its metrics); Prometheus scrapes it, and the
operator's periodic resync writes the measurement into the pipeline's status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scorefleet.scorer.protos import v1_pb2
from tests.conftest import eventually, kubectl
from tests.prometheus_server import PrometheusServer
from tests.scorer.scorer_process import Models

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

PIPELINE = """
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata: {name: phish}
spec:
  model: {name: phishing, version: v1, uri: "file:///models/v1.onnx"}
  scaling: {minReplicas: 1, maxReplicas: 2}
"""


def test_status_shows_measured_qps_and_p99(control_plane: Any, namespace: str, models: Models,
                                           start_scorer: Any, tmp_path: Path) -> None:
    scorer = start_scorer({"model": models.ref("v1"), "pipeline": "phish"}).wait_serving()
    with PrometheusServer(tmp_path, [f"127.0.0.1:{scorer.metrics_port}"]) as prom:
        prom.wait_for("scorer target up", prom.targets_up, 30)
        env = {**os.environ, "SCOREFLEET_PROMETHEUS_URL": prom.url,
               "SCOREFLEET_PROMETHEUS_NAMESPACE_LABEL": "",  # static scrape: no namespace label
               "SCOREFLEET_RESYNC_SECONDS": "1", "SCOREFLEET_METRICS_WINDOW": "15s"}
        log = tmp_path / "operator.log"
        with log.open("w") as out:
            operator = subprocess.Popen([sys.executable, "-m", "scorefleet.operator"],
                                        stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            kubectl("apply", "-n", namespace, "-f", "-", stdin=PIPELINE)
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                scorer.scorer.Score(
                    v1_pb2.ScoreRequest(event=v1_pb2.Event(features=[0.2] * 32)), timeout=5)

            def measured() -> dict[str, Any] | None:
                sp = json.loads(kubectl("get", "sp", "phish", "-n", namespace, "-o", "json"))
                stable = (sp.get("status", {}).get("metrics") or {}).get("stable") or {}
                return sp if stable.get("qps") else None

            sp = eventually("status.metrics.stable.qps", measured, timeout=60, interval=1)
            stable = sp["status"]["metrics"]["stable"]
            assert stable["qps"] > 0
            assert 0 < stable["p99LatencyMs"] < 1000
            assert stable["errorRate"] == 0
            assert sp["status"]["metrics"]["measuredAt"].endswith("Z")
            header, row = kubectl("get", "sp", "phish", "-n", namespace).splitlines()[:2]
            qps_at = header.index("QPS")  # printer columns: the value sits under its title
            assert float(row[qps_at:].split()[0]) > 0  # re-measured every second: just > 0
        finally:
            kubectl("delete", "sp", "phish", "-n", namespace, "--ignore-not-found")
            operator.send_signal(signal.SIGTERM)
            code = operator.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
