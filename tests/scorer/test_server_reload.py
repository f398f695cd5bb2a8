"""Config changes on a running scorer: hot model swap without failed RPCs; bad models keep the old.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc

from scorefleet.scorer.example_model import synthetic_features
from scorefleet.scorer.protos import oip_pb2, v1_pb2, v1_pb2_grpc
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models, ScorerProcess


class Traffic:
    """Background Score calls on fresh channels (so both workers get some); bounded in time."""

    def __init__(self, scorer: ScorerProcess, seconds: float = 30.0) -> None:
        self.scorer = scorer
        self.deadline = time.monotonic() + seconds
        self.versions: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.row = synthetic_features(1, seed=3)[0].tolist()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        request = v1_pb2.ScoreRequest(event=v1_pb2.Event(features=self.row))
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            with grpc.insecure_channel(self.scorer.address) as channel:
                stub = v1_pb2_grpc.ScorerStub(channel)
                for _ in range(20):
                    try:
                        self.versions.append(stub.Score(request, timeout=5).model_version)
                    except grpc.RpcError as exc:
                        self.errors.append(f"{exc.code()}: {exc.details()}")

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

def test_hot_reload_without_failed_rpcs(start_scorer: StartScorer, models: Models) -> None:
    scorer = start_scorer({"model": models.ref("v1"), "workers": 2}).wait_serving()
    traffic = Traffic(scorer)
    try:
        scorer.wait_for("traffic", lambda: len(traffic.versions) > 50)
        scorer.update_config(model=models.ref("v2"))
        scorer.wait_for("both workers on v2", lambda: scorer.metric(
            "scorefleet_model_loaded", role="primary", model_version="v2") == 2)
        seen = len(traffic.versions)
        scorer.wait_for("traffic after reload", lambda: len(traffic.versions) > seen + 50)
    finally:
        traffic.finish()
    assert traffic.errors == []
    assert traffic.versions[0] == "v1" and traffic.versions[-1] == "v2"
    assert scorer.metric("scorefleet_model_loaded", role="primary", model_version="v1") == 0
    # Metrics from both worker processes add up: every RPC counted exactly once.
    scorer.wait_for("all requests counted", lambda: scorer.metric(
        "scorefleet_requests_total", code="OK") == len(traffic.versions), timeout=5)
    assert scorer.metric("scorefleet_workers") == 2

def test_broken_model_keeps_the_old_one(start_scorer: StartScorer, models: Models) -> None:
    scorer = start_scorer({"model": models.ref("v1")}).wait_serving()
    for bad in (models.ref("broken"), models.ref("v2", sha256="0" * 64)):
        failures = scorer.metric("scorefleet_model_loads_total", result="failure")
        scorer.update_config(model=bad)
        scorer.wait_for("load failure counted", lambda f=failures: scorer.metric(
            "scorefleet_model_loads_total", result="failure") > f)
        response = scorer.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(
            features=synthetic_features(1, seed=4)[0].tolist())), timeout=5)
        assert response.model_version == "v1"
        assert scorer.health_status() == "SERVING"
    assert "sha256 mismatch" in scorer.log()

def test_wrong_digest_at_start_is_not_ready_until_fixed(start_scorer: StartScorer,
                                                        models: Models) -> None:
    scorer = start_scorer({"model": models.ref("v1", sha256="f" * 64)})
    scorer.wait_for("NOT_SERVING", lambda: scorer.health_status() == "NOT_SERVING")
    scorer.wait_for("load failure", lambda: "sha256 mismatch" in scorer.log())
    assert not scorer.oip.ServerReady(oip_pb2.ServerReadyRequest(), timeout=5).ready
    try:
        scorer.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(features=[0.0] * 32)),
                            timeout=5)
        raise AssertionError("scored without a model")
    except grpc.RpcError as exc:
        assert exc.code() is grpc.StatusCode.UNAVAILABLE
        assert "no model loaded" in (exc.details() or "")
    scorer.update_config(model=models.ref("v1"))
    scorer.wait_serving()


def _children(pid: int) -> set[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: set[int] = set()
    for task in tasks.iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # the thread exited between the listing and the read
            continue
        found |= {int(c) for c in children}
    return found


def test_dead_worker_is_replaced(start_scorer: StartScorer, models: Models) -> None:
    scorer = start_scorer({"model": models.ref("v1"), "workers": 2}).wait_serving()
    scorer.wait_for("two workers", lambda: scorer.metric("scorefleet_ready_workers") == 2)
    before = scorer.wait_for("two worker pids", lambda: _children(scorer.proc.pid)
                             if len(_children(scorer.proc.pid)) == 2 else None)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = scorer.wait_for("replacement worker", lambda: _children(scorer.proc.pid)
                            if len(_children(scorer.proc.pid) - before) == 1 else None)
    assert victim not in after
    scorer.wait_for("two ready workers again", lambda: scorer.metric(
        "scorefleet_ready_workers") == 2)
    response = scorer.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(
        features=synthetic_features(1, seed=6)[0].tolist())), timeout=5)
    assert response.model_version == "v1"


def test_batching_limits_reload_live(start_scorer: StartScorer, models: Models) -> None:
    scorer = start_scorer({"model": models.ref("v1"),
                           "batching": {"maxQueueSize": 1000}}).wait_serving()
    rows = synthetic_features(20, seed=7)
    request = v1_pb2.ScoreBatchRequest(events=[v1_pb2.Event(features=r.tolist()) for r in rows])
    assert len(scorer.scorer.ScoreBatch(request, timeout=5).scores) == 20
    scorer.update_config(batching={"maxQueueSize": 10})

    def refused() -> str | None:
        try:
            scorer.scorer.ScoreBatch(request, timeout=5)
        except grpc.RpcError as exc:
            return str(exc.details())
        return None

    assert "exceeds the limit of 10" in scorer.wait_for("new limit applied", refused)
