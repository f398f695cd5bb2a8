"""Online features on the gRPC path, with a real Redis and a real scorer process: events that
carry an entity key get the entity's features appended, the same reader and miss rules as the
stream; events without one carry every feature; bad combinations are INVALID_ARGUMENT."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import redis

from scorefleet.dev.redis import RedisServer
from scorefleet.scorer.protos import v1_pb2
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models
from tests.stream.harness import INLINE, event_rows, features_config, full_rows, put_sender_features
from tests.stream.test_stream_scoring import local_scores

pytestmark = [pytest.mark.stream]


def batch(rows: np.ndarray[Any, Any], keys: list[str]) -> Any:
    return v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(
        num_features=rows.shape[1], features=rows.ravel().tolist(), entity_keys=keys))


def test_entity_keys_get_online_features_and_misses_are_flagged(
        redis_server: RedisServer, start_scorer: StartScorer, models: Models,
        topic_prefix: str) -> None:
    rows = event_rows(40)
    client = redis.Redis.from_url(redis_server.url)
    put_sender_features(client, topic_prefix, rows, senders=10)
    client.close()
    scorer = start_scorer({"model": models.ref("v1"), "onlineFeatures": features_config(
        redis_server.address, topic_prefix, defaults=[0.5] * 8)}).wait_serving()
    want = local_scores(models, full_rows(rows, senders=10))

    # ScoreBatch, packed: own 24 features + the sender's 8 from Redis.
    keys = [f"s{i % 10}" for i in range(40)]
    got = scorer.scorer.ScoreBatch(batch(rows[:, :INLINE], keys), timeout=10)
    np.testing.assert_allclose(got.scores, want, rtol=1e-5, atol=1e-6)
    assert list(got.features_missing) == [False] * 40

    # Score, one event; and one sender Redis does not know: defaults, flagged.
    one = scorer.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(
        event_id="e3", entity_key="s3", features=rows[3, :INLINE].tolist())), timeout=10)
    assert one.score == pytest.approx(float(want[3]), rel=1e-5, abs=1e-6)
    assert not one.features_missing
    unknown = scorer.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(
        event_id="e4", entity_key="nobody", features=rows[4, :INLINE].tolist())), timeout=10)
    defaults_row = np.concatenate([rows[4, :INLINE], np.full(8, 0.5, np.float32)])[None, :]
    assert unknown.features_missing
    assert unknown.score == pytest.approx(float(local_scores(models, defaults_row)[0]),
                                          rel=1e-5, abs=1e-6)
    assert scorer.metric("scorefleet_grpc_features_missing_events_total", reason="absent") == 1

    # Without keys, events carry every feature and nothing is read (the canary's forwarding).
    plain = scorer.scorer.ScoreBatch(batch(full_rows(rows, senders=10), []), timeout=10)
    np.testing.assert_allclose(plain.scores, want, rtol=1e-5, atol=1e-6)
    assert list(plain.features_missing) == []

    # Bad combinations name the problem.
    for request, says in [
        (batch(rows[:, :INLINE], keys[:5]), "5 entity keys for 40 rows"),
        (batch(full_rows(rows, senders=10), keys), "with entity keys, events carry their own 24"),
        (v1_pb2.ScoreBatchRequest(events=[
            v1_pb2.Event(event_id="a", entity_key="s1", features=rows[0, :INLINE].tolist()),
            v1_pb2.Event(event_id="b", features=rows[1].tolist())]), "every event"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            scorer.scorer.ScoreBatch(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert says in (err.value.details() or ""), err.value.details()


def test_dead_letter_policy_refuses_an_rpc_without_features(
        redis_server: RedisServer, start_scorer: StartScorer, models: Models,
        topic_prefix: str) -> None:
    scorer = start_scorer({"model": models.ref("v1"), "onlineFeatures": features_config(
        redis_server.address, topic_prefix, onMiss="DeadLetter")}).wait_serving()
    rows = event_rows(1)
    with pytest.raises(grpc.RpcError) as err:
        scorer.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(
            event_id="x", entity_key="ghost", features=rows[0, :INLINE].tolist())), timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{topic_prefix}:sender:ghost" in (err.value.details() or "")


def test_entity_key_without_online_features_is_invalid(start_scorer: StartScorer,
                                                       models: Models) -> None:
    scorer = start_scorer({"model": models.ref("v1")}).wait_serving()
    with pytest.raises(grpc.RpcError) as err:
        scorer.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(
            event_id="x", entity_key="s1", features=[0.0] * 24)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reads no online features" in (err.value.details() or "")


def oip_request(rows: np.ndarray[Any, Any], keys: list[str] | None, raw: bool = False,
                outputs: list[str] | None = None) -> Any:
    from scorefleet.scorer.protos import oip_pb2

    req = oip_pb2.ModelInferRequest(model_name="phish", id="r1")
    features = req.inputs.add(name="x", datatype="FP32", shape=list(rows.shape))
    if keys is not None:
        entity = req.inputs.add(name="entity_key", datatype="BYTES", shape=[len(keys)])
    if raw:
        req.raw_input_contents.append(rows.astype("<f4").tobytes())
        if keys is not None:
            req.raw_input_contents.append(b"".join(
                len(k.encode()).to_bytes(4, "little") + k.encode() for k in keys))
    else:
        features.contents.fp32_contents.extend(rows.ravel().tolist())
        if keys is not None:
            entity.contents.bytes_contents.extend(k.encode() for k in keys)
    for name in outputs or []:
        req.outputs.add(name=name)
    return req


def test_oip_model_infer_takes_entity_keys(redis_server: RedisServer,
                                           start_scorer: StartScorer, models: Models,
                                           topic_prefix: str) -> None:
    rows = event_rows(20)
    client = redis.Redis.from_url(redis_server.url)
    put_sender_features(client, topic_prefix, rows, senders=10)
    client.close()
    scorer = start_scorer({"model": models.ref("v1"), "onlineFeatures": features_config(
        redis_server.address, topic_prefix, defaults=[0.5] * 8)}).wait_serving()
    want = local_scores(models, full_rows(rows, senders=10))
    keys = [f"s{i % 10}" for i in range(20)]
    # contents and raw: own 24 features + the sender's 8; features_missing says none missed.
    for raw in (False, True):
        got = scorer.oip.ModelInfer(oip_request(rows[:, :INLINE], keys, raw), timeout=10)
        outputs = {o.name: i for i, o in enumerate(got.outputs)}
        assert list(outputs) == ["score", "decision", "features_missing"]
        if raw:
            scores = np.frombuffer(got.raw_output_contents[0], dtype="<f4")
            flags = np.frombuffer(got.raw_output_contents[2], dtype=np.uint8).astype(bool)
        else:
            scores = np.array(got.outputs[0].contents.fp32_contents, dtype=np.float32)
            flags = np.array(got.outputs[2].contents.bool_contents, dtype=bool)
        np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
        assert not flags.any()
    # An unknown sender: the defaults, flagged; only the outputs asked for.
    unknown = scorer.oip.ModelInfer(oip_request(rows[:1, :INLINE], ["nobody"],
                                                outputs=["features_missing"]), timeout=10)
    assert [o.name for o in unknown.outputs] == ["features_missing"]
    assert list(unknown.outputs[0].contents.bool_contents) == [True]
    # Without keys, the request carries every feature, as before.
    plain = scorer.oip.ModelInfer(oip_request(full_rows(rows, senders=10), None), timeout=10)
    np.testing.assert_allclose(plain.outputs[0].contents.fp32_contents, want, rtol=1e-5,
                               atol=1e-6)
    # Bad combinations name the problem.
    for request, says in [
        (oip_request(rows[:, :INLINE], keys[:5]), "5 entity keys for 20 rows"),
        (oip_request(full_rows(rows, senders=10), keys), "expected [N, 24]"),
        (oip_request(rows[:, :INLINE], [""] * 20), "non-empty"),
        (oip_request(rows[:, :INLINE], None, outputs=["features_missing"]), "unknown output"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            scorer.oip.ModelInfer(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert says in (err.value.details() or ""), err.value.details()
