"""Paired shadow scoring on a real scorer: the pair metrics match a local recomputation."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from scorefleet.scorer.example_model import NUM_FEATURES, synthetic_features
from scorefleet.scorer.protos import v1_pb2
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "direct"])
def test_shadow_pairs_match_local_counts(start_scorer: StartScorer, models: Models,
                                         batching: bool) -> None:
    shadow_ref = models.ref("v2", threshold=0.4)
    scorer = start_scorer({
        "model": models.ref("v1", threshold=0.5),
        "shadow": {"model": shadow_ref, "sampleRate": 1.0, "maxCpuFraction": 1.0},
        "batching": {"enabled": batching},
    }).wait_serving()
    x = synthetic_features(400, seed=9)
    primary: list[float] = []
    for chunk in np.split(x, 8):
        response = scorer.scorer.ScoreBatch(v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(
            num_features=NUM_FEATURES, features=chunk.ravel().tolist())), timeout=5)
        primary += list(response.scores)
    scorer.wait_for("all pairs recorded", lambda: scorer.metric(
        "scorefleet_shadow_pairs_total") == len(x), timeout=10)

    p = np.array(primary, dtype=np.float32)
    s = ort.InferenceSession(str(models.dir / "model-v2.onnx")).run(None, {"features": x})[0]
    p_pos, s_pos = p >= np.float32(0.5), s >= np.float32(0.4)
    want = {"both_positive": p_pos & s_pos, "both_negative": ~p_pos & ~s_pos,
            "flip_to_positive": ~p_pos & s_pos, "flip_to_negative": p_pos & ~s_pos}
    for outcome, mask in want.items():
        got = scorer.metric("scorefleet_shadow_pairs_total", outcome=outcome,
                            primary_version="v1", shadow_version="v2")
        assert got == np.count_nonzero(mask), outcome
    assert np.count_nonzero(want["flip_to_positive"]) > 0
    assert scorer.metric("scorefleet_shadow_score_delta_count") == len(x)
    assert abs(scorer.metric("scorefleet_shadow_score_delta_sum") - float((s - p).sum())) < 1e-3
    for role, version in (("primary", "v1"), ("shadow", "v2")):
        assert scorer.metric("scorefleet_model_score_count", role=role,
                             model_version=version) == len(x)
    assert scorer.metric("scorefleet_model_loaded", role="shadow", model_version="v2") == 1
    assert scorer.metric("scorefleet_shadow_skipped_events_total") == 0


def test_shadow_cpu_budget_skips_and_counts(start_scorer: StartScorer, models: Models) -> None:
    scorer = start_scorer({
        "model": models.ref("v1"),
        "shadow": {"model": models.ref("v2"), "sampleRate": 1.0, "maxCpuFraction": 0.001},
    }).wait_serving()
    x = synthetic_features(256, seed=10)
    request = v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(
        num_features=NUM_FEATURES, features=x.ravel().tolist()))
    sent = 0
    for _ in range(60):
        assert len(scorer.scorer.ScoreBatch(request, timeout=5).scores) == len(x)
        sent += len(x)

    def accounted() -> bool:
        pairs = scorer.metric("scorefleet_shadow_pairs_total")
        skipped = scorer.metric("scorefleet_shadow_skipped_events_total")
        return pairs + skipped == sent

    scorer.wait_for("every sampled event paired or skipped", accounted, timeout=10)
    assert scorer.metric("scorefleet_shadow_skipped_events_total", reason="budget") > 0
