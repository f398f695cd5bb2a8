"""A real scorer under a flooded queue sheds with RESOURCE_EXHAUSTED and drops expired requests."""

from __future__ import annotations

import grpc
import pytest

from scorefleet.scorer.example_model import synthetic_features
from scorefleet.scorer.protos import v1_pb2
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models, ScorerProcess


@pytest.fixture
def slow_batcher(start_scorer: StartScorer, models: Models) -> ScorerProcess:
    # A batch never fills (64) and the batcher always waits 400 ms for it (not idle-aware):
    # requests pile up in an 8-event queue.
    config = {"model": models.ref("v1"),
              "batching": {"maxBatchSize": 64, "maxQueueDelayUs": 400_000, "maxQueueSize": 8,
                           "dispatchWhenIdle": False}}
    return start_scorer(config).wait_serving()


def test_flooded_queue_sheds(slow_batcher: ScorerProcess) -> None:
    x = synthetic_features(20, seed=1)
    calls = [slow_batcher.scorer.Score.future(
        v1_pb2.ScoreRequest(event=v1_pb2.Event(features=row.tolist())), timeout=10) for row in x]
    codes: list[grpc.StatusCode] = []
    for call in calls:
        try:
            call.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())
            if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert "queue full" in (exc.details() or "")
    shed = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert codes.count(grpc.StatusCode.OK) == 8 and shed == 12, codes
    slow_batcher.wait_for("shed counted", lambda: slow_batcher.metric(
        "scorefleet_shed_requests_total", reason="queue_full") == shed, timeout=5)
    assert slow_batcher.metric("scorefleet_requests_total", code="RESOURCE_EXHAUSTED") == shed
    assert slow_batcher.health_status() == "SERVING"


@pytest.fixture
def slower_batcher(start_scorer: StartScorer, models: Models) -> ScorerProcess:
    # The batcher waits 1 s (its limit) for a batch that never fills: a request with a 0.5 s
    # deadline certainly reaches the scorer (a 100 ms deadline could pass on a loaded machine
    # before the server saw the call, which then counted nothing) and expires while queued.
    config = {"model": models.ref("v1"),
              "batching": {"maxBatchSize": 64, "maxQueueDelayUs": 1_000_000, "maxQueueSize": 8,
                           "dispatchWhenIdle": False}}
    return start_scorer(config).wait_serving()


def test_expired_requests_are_not_scored(slower_batcher: ScorerProcess) -> None:
    slow_batcher = slower_batcher
    row = synthetic_features(1, seed=2)[0].tolist()
    with pytest.raises(grpc.RpcError) as info:
        slow_batcher.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(features=row)),
                                  timeout=0.5)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # Counted once: "queued" if the batcher saw the deadline pass first, "in_flight" if gRPC did.
    slow_batcher.wait_for("expired counted", lambda: slow_batcher.metric(
        "scorefleet_expired_requests_total") == 1, timeout=5)
    # Dropped before inference: no model call happened for it.
    assert slow_batcher.metric("scorefleet_batch_size_count") == 0
