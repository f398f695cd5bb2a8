"""A real scorer process: both APIs agree with onnxruntime; bad input is refused, not fatal."""

from __future__ import annotations

import math
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorefleet.scorer.example_model import NUM_FEATURES, synthetic_features
from scorefleet.scorer.protos import oip_pb2, v1_pb2
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models, ScorerProcess

F = NUM_FEATURES
OK_OR_REFUSED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


@pytest.fixture(scope="module")
def scorer(start_module_scorer: StartScorer, models: Models) -> ScorerProcess:
    config = {"model": models.ref("v1", threshold=0.3),
              "batching": {"maxBatchSize": 64, "maxQueueDelayUs": 500, "maxQueueSize": 512}}
    return start_module_scorer(config).wait_serving()


@pytest.fixture(scope="module")
def expected(models: Models) -> Any:
    x = synthetic_features(64, seed=42)
    session = ort.InferenceSession(str(models.dir / "model-v1.onnx"))
    return x, session.run(None, {"features": x})[0]


def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_score_matches_onnxruntime(scorer: ScorerProcess, expected: Any) -> None:
    x, want = expected
    for i in range(8):
        r = scorer.scorer.Score(v1_pb2.ScoreRequest(
            event=v1_pb2.Event(event_id=f"e{i}", tenant="t", features=x[i].tolist(),
                               metadata={"k": "v"})), timeout=5)
        assert r.event_id == f"e{i}" and r.model_version == "v1" and r.track == "stable"
        assert r.score == pytest.approx(want[i], abs=1e-6)
        assert r.decision == (r.score >= 0.3) and r.threshold == pytest.approx(0.3)


def test_score_batch_events_and_matrix(scorer: ScorerProcess, expected: Any) -> None:
    x, want = expected
    by_events = scorer.scorer.ScoreBatch(v1_pb2.ScoreBatchRequest(
        events=[v1_pb2.Event(features=row.tolist()) for row in x]), timeout=5)
    by_matrix = scorer.scorer.ScoreBatch(v1_pb2.ScoreBatchRequest(
        matrix=v1_pb2.FeatureMatrix(num_features=F, features=x.ravel().tolist())), timeout=5)
    for response in (by_events, by_matrix):
        np.testing.assert_allclose(response.scores, want, atol=1e-6)
        assert list(response.decisions) == [s >= np.float32(0.3) for s in response.scores]
        assert response.model_name == "phish" and response.model_version == "v1"


def test_oip_round_trip(scorer: ScorerProcess, expected: Any) -> None:
    x, want = expected
    oip = scorer.oip
    assert oip.ServerLive(oip_pb2.ServerLiveRequest()).live
    assert oip.ServerReady(oip_pb2.ServerReadyRequest()).ready
    assert oip.ModelReady(oip_pb2.ModelReadyRequest(name="phish", version="v1")).ready
    meta = oip.ModelMetadata(oip_pb2.ModelMetadataRequest(name="phish"))
    assert list(meta.inputs[0].shape) == [-1, F] and meta.inputs[0].datatype == "FP32"
    assert [o.name for o in meta.outputs] == ["score", "decision"]
    assert oip.ServerMetadata(oip_pb2.ServerMetadataRequest()).name == "scorefleet"
    tensor = oip_pb2.ModelInferRequest.InferInputTensor(name="features", datatype="FP32",
                                                        shape=[len(x), F])
    raw = oip.ModelInfer(oip_pb2.ModelInferRequest(
        model_name="phish", id="r1", inputs=[tensor], raw_input_contents=[x.tobytes()]))
    assert raw.id == "r1" and raw.model_version == "v1"
    np.testing.assert_allclose(np.frombuffer(raw.raw_output_contents[0], "<f4"), want, atol=1e-6)
    decisions = np.frombuffer(raw.raw_output_contents[1], np.uint8).astype(bool)
    assert decisions.tolist() == (want >= np.float32(0.3)).tolist()
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    typed = oip.ModelInfer(oip_pb2.ModelInferRequest(
        model_name="phish", inputs=[tensor], outputs=[oip_pb2.ModelInferRequest.
                                                      InferRequestedOutputTensor(name="score")]))
    assert [o.name for o in typed.outputs] == ["score"]
    np.testing.assert_allclose(typed.outputs[0].contents.fp32_contents, want, atol=1e-6)
    assert typed.parameters["threshold"].double_param == pytest.approx(0.3)


def test_health_and_reflection(scorer: ScorerProcess) -> None:
    for service in ("", "scorefleet.v1.Scorer", "inference.GRPCInferenceService"):
        assert scorer.health_status(service) == "SERVING"
    stub = reflection_pb2_grpc.ServerReflectionStub(scorer.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=5)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"scorefleet.v1.Scorer", "inference.GRPCInferenceService",
            "grpc.health.v1.Health"} <= names
    # ghz and grpcurl resolve a method by asking for the file containing its symbol.
    for symbol in ("scorefleet.v1.Scorer.ScoreBatch", "inference.GRPCInferenceService.ModelInfer"):
        (response,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol=symbol)]), timeout=5)
        assert response.file_descriptor_response.file_descriptor_proto, symbol


def _event(features: list[float]) -> Any:
    return v1_pb2.ScoreRequest(event=v1_pb2.Event(event_id="bad", features=features))


def _infer(name: str = "phish", **kw: Any) -> Any:
    tensor = oip_pb2.ModelInferRequest.InferInputTensor(
        name="features", datatype=kw.pop("datatype", "FP32"), shape=kw.pop("shape", [1, F]))
    return oip_pb2.ModelInferRequest(model_name=name, inputs=[tensor], **kw)


BAD = [
    ("Score", _event([0.5] * 3), "INVALID_ARGUMENT", "expected 32 features per event, got 3",
     "feature_count"),
    ("Score", _event([math.nan] * F), "INVALID_ARGUMENT", "NaN or infinity", "non_finite"),
    ("Score", _event([math.inf] + [0.0] * (F - 1)), "INVALID_ARGUMENT", "NaN or infinity",
     "non_finite"),
    ("ScoreBatch", v1_pb2.ScoreBatchRequest(), "INVALID_ARGUMENT", "empty batch", "empty"),
    ("ScoreBatch", v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(
        num_features=F, features=[0.0] * F * 600)), "INVALID_ARGUMENT",
     "600 events exceeds the limit of 512", "oversized"),
    ("ModelInfer", _infer("nope", raw_input_contents=[b"\0" * 4 * F]), "NOT_FOUND",
     "unknown model 'nope'", None),
    ("ModelInfer", _infer(model_version="v9", raw_input_contents=[b"\0" * 4 * F]), "NOT_FOUND",
     "version 'v9' is not loaded", None),
    ("ModelInfer", _infer(datatype="FP64", raw_input_contents=[b"\0" * 8 * F]),
     "INVALID_ARGUMENT", "datatype 'FP64'", "dtype"),
]


@pytest.mark.parametrize(("method", "request_", "code", "message", "reason"), BAD,
                         ids=[f"{b[0]}-{b[4] or b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_refused_and_counted(scorer: ScorerProcess, method: str, request_: Any,
                                          code: str, message: str, reason: str | None) -> None:
    stub = scorer.oip if method == "ModelInfer" else scorer.scorer
    before = scorer.metric("scorefleet_requests_total", method=method, code=code)
    got, details = code_of(lambda: getattr(stub, method)(request_, timeout=5))
    assert got.name == code and message in details
    # The status reaches the client before the handler's bookkeeping finishes: poll.
    scorer.wait_for("request counted", lambda: scorer.metric(
        "scorefleet_requests_total", method=method, code=code) == before + 1, timeout=5)
    if reason:
        assert scorer.metric("scorefleet_invalid_requests_total", method=method,
                             reason=reason) >= 1
    assert scorer.health_status() == "SERVING"


floats = st.floats(width=32)
events = st.builds(lambda f, i, t: v1_pb2.Event(features=f, event_id=i, tenant=t),
                   st.lists(floats, max_size=40), st.text(max_size=8), st.text(max_size=4))
def _garbage_infer(datatype: str, shape: list[int], raw: list[bytes],
                   fp32: list[float] | None, two_inputs: bool) -> Any:
    request = _infer(datatype=datatype, shape=shape, raw_input_contents=raw)
    if fp32 is not None:
        request.inputs[0].contents.fp32_contents.extend(fp32)
    if two_inputs:
        request.inputs.add(name="x", datatype=datatype, shape=shape)
    return request


tensors = st.builds(
    _garbage_infer, st.sampled_from(["FP32", "FP64", "INT64", "BYTES", ""]),
    st.lists(st.integers(-3, 70), max_size=3), st.lists(st.binary(max_size=300), max_size=2),
    st.none() | st.lists(floats, max_size=70), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(
    st.tuples(st.just("Score"), st.builds(lambda e: v1_pb2.ScoreRequest(event=e), events)),
    st.tuples(st.just("ScoreBatch"), st.builds(lambda es: v1_pb2.ScoreBatchRequest(events=es),
                                               st.lists(events, max_size=5))),
    st.tuples(st.just("ModelInfer"), tensors)))
def test_garbage_never_crashes_the_server(scorer: ScorerProcess, call: tuple[str, Any]) -> None:
    method, request = call
    stub = scorer.oip if method == "ModelInfer" else scorer.scorer
    got, details = code_of(lambda: getattr(stub, method)(request, timeout=5))
    assert got in OK_OR_REFUSED, details
    if got is not grpc.StatusCode.OK:
        assert details


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200), st.sampled_from(["/scorefleet.v1.Scorer/Score",
                                                 "/scorefleet.v1.Scorer/ScoreBatch",
                                                 "/inference.GRPCInferenceService/ModelInfer"]))
def test_undecodable_bytes_never_crash_the_server(scorer: ScorerProcess, payload: bytes,
                                                  method: str) -> None:
    call = scorer.channel.unary_unary(method)
    got, details = code_of(lambda: call(payload, timeout=5))
    assert got in OK_OR_REFUSED, details
    if got is grpc.StatusCode.INVALID_ARGUMENT and "not a valid" in details:
        assert details.startswith("request is not a valid ")


def test_undecodable_request_is_invalid_argument_and_counted(scorer: ScorerProcess) -> None:
    before = scorer.metric("scorefleet_invalid_requests_total", reason="undecodable")
    call = scorer.channel.unary_unary("/scorefleet.v1.Scorer/Score")
    got, details = code_of(lambda: call(b"\xff\xff\xff", timeout=5))
    assert got is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid scorefleet.v1.ScoreRequest" in details
    scorer.wait_for("counted", lambda: scorer.metric(
        "scorefleet_invalid_requests_total", reason="undecodable") == before + 1, timeout=5)


def test_still_serving_after_garbage(scorer: ScorerProcess, expected: Any) -> None:
    x, want = expected
    r = scorer.scorer.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(features=x[0].tolist())),
                            timeout=5)
    assert r.score == pytest.approx(want[0], abs=1e-6)
    assert scorer.proc.poll() is None
