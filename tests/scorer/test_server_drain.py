"""SIGTERM on a real scorer: NOT_SERVING first, RPCs served during the drain delay, in-flight RPCs
complete, new RPCs refused after the delay, exit code 0."""

from __future__ import annotations

import time

import grpc

from scorefleet.scorer.example_model import synthetic_features
from scorefleet.scorer.protos import oip_pb2, oip_pb2_grpc, v1_pb2
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models


def test_sigterm_drains_then_exits_zero(start_scorer: StartScorer, models: Models) -> None:
    # Requests wait 1 s for their batch (it never fills; the fixed wait, not idle-aware), so
    # one sent during the 0.8 s drain delay is still in flight when the server stops accepting.
    scorer = start_scorer({
        "model": models.ref("v1"), "drainDelaySeconds": 0.8, "gracePeriodSeconds": 10,
        "batching": {"maxBatchSize": 64, "maxQueueDelayUs": 1_000_000,
                     "dispatchWhenIdle": False},
    }).wait_serving()
    request = v1_pb2.ScoreRequest(event=v1_pb2.Event(
        features=synthetic_features(1, seed=5)[0].tolist()))
    before = scorer.scorer.Score.future(request, timeout=20)
    scorer.terminate()
    stopped_at = time.monotonic()
    scorer.wait_for("NOT_SERVING", lambda: scorer.health_status() == "NOT_SERVING", timeout=5)
    during_drain = scorer.scorer.Score.future(request, timeout=20)  # still accepted
    assert time.monotonic() - stopped_at < 0.8, "health must flip before the drain delay ends"
    scorer.wait_for("new RPCs refused", lambda: _refused(scorer.address), timeout=5)
    assert not during_drain.done(), "should still be in flight after new RPCs are refused"
    assert before.result().model_version == "v1"
    assert during_drain.result().model_version == "v1"
    assert scorer.wait_exit(timeout=15) == 0
    log = scorer.log()
    assert log.index("lifecycle serving -> draining") < log.index("lifecycle draining -> stopping")
    assert "lifecycle stopping -> stopped" in log


def _refused(address: str) -> bool:
    # ServerLive answers at once (no batch wait), so the poll itself never blocks the test.
    with grpc.insecure_channel(address) as channel:
        live = oip_pb2_grpc.GRPCInferenceServiceStub(channel).ServerLive
        try:
            live(oip_pb2.ServerLiveRequest(), timeout=1)
        except grpc.RpcError as exc:
            return exc.code() is grpc.StatusCode.UNAVAILABLE
    return False
