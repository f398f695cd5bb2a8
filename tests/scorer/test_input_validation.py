"""Request -> rows parsing for both APIs: every bad shape is INVALID_ARGUMENT naming the issue."""

from __future__ import annotations

import numpy as np
import pytest

from scorefleet.scorer.errors import InvalidInput
from scorefleet.scorer.protos import oip_pb2, v1_pb2
from scorefleet.scorer.servicer_oip import parse_input
from scorefleet.scorer.servicer_v1 import _rows_of

F = 4


def batch(*rows: list[float]) -> object:
    return v1_pb2.ScoreBatchRequest(events=[v1_pb2.Event(event_id=f"e{i}", features=r)
                                            for i, r in enumerate(rows)])


def test_events_to_rows() -> None:
    x, n = _rows_of(batch([1, 2, 3, 4], [5, 6, 7, 8]), F, 100)
    assert n == 2 and x.dtype == np.float32 and x.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_matrix_to_rows() -> None:
    req = v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(num_features=F,
                                                              features=list(range(8))))
    x, n = _rows_of(req, F, 100)
    assert n == 2 and x.shape == (2, F)


@pytest.mark.parametrize(("request_", "reason", "message"), [
    (batch(), "empty", "empty batch"),
    (batch([1, 2, 3, 4], [1, 2]), "feature_count", "event 1 .*expected 4 features, got 2"),
    (batch(*[[0.0] * F] * 11), "oversized", "11 events exceeds the limit of 10"),
    (v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(num_features=3, features=[1] * 6)),
     "feature_count", "num_features is 3"),
    (v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(num_features=F, features=[1] * 6)),
     "shape", "not a multiple"),
    (v1_pb2.ScoreBatchRequest(matrix=v1_pb2.FeatureMatrix(num_features=F)), "empty", "empty"),
    (v1_pb2.ScoreBatchRequest(events=[v1_pb2.Event(features=[1] * F)],
                              matrix=v1_pb2.FeatureMatrix(num_features=F, features=[1] * F)),
     "shape", "either events or matrix"),
])
def test_bad_v1_batches(request_: object, reason: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        _rows_of(request_, F, 10)
    assert info.value.reason == reason


def infer(datatype: str = "FP32", shape: tuple[int, ...] = (2, F), **kw: object) -> object:
    tensor = oip_pb2.ModelInferRequest.InferInputTensor(name="features", datatype=datatype,
                                                        shape=list(shape))
    contents = kw.pop("contents", None)
    if contents is not None:
        tensor.contents.CopyFrom(contents)
    return oip_pb2.ModelInferRequest(model_name="phish", inputs=[tensor], **kw)


def test_oip_raw_and_contents() -> None:
    data = np.arange(8, dtype=np.float32)
    x, n, raw = parse_input(infer(raw_input_contents=[data.tobytes()]), F, 100)
    assert raw and n == 2 and x.tolist() == data.reshape(2, F).tolist()
    x, n, raw = parse_input(
        infer(contents=oip_pb2.InferTensorContents(fp32_contents=data.tolist())), F, 100)
    assert not raw and x.tolist() == data.reshape(2, F).tolist()


@pytest.mark.parametrize(("request_", "reason", "message"), [
    (infer(datatype="FP64", raw_input_contents=[b"\0" * 64]), "dtype", "datatype 'FP64'"),
    (infer(datatype="INT32"), "dtype", "FP32"),
    (infer(shape=(2, 3)), "shape", r"shape \[2, 3\]; expected \[N, 4\]"),
    (infer(shape=(8,)), "shape", "expected"),
    (infer(shape=(0, F)), "empty", "empty batch"),
    (infer(shape=(11, F)), "oversized", "11 rows exceeds"),
    (infer(raw_input_contents=[b"\0" * 12]), "shape", "12 bytes"),
    (infer(contents=oip_pb2.InferTensorContents(fp32_contents=[1.0] * 3)), "shape",
     "3 fp32_contents"),
    (infer(contents=oip_pb2.InferTensorContents(fp64_contents=[1.0] * 8)), "dtype",
     "fp64_contents"),
    (oip_pb2.ModelInferRequest(model_name="phish"), "shape", "exactly 1 input"),
])
def test_bad_oip_requests(request_: object, reason: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        parse_input(request_, F, 10)
    assert info.value.reason == reason
