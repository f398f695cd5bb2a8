"""Open Inference Protocol v2 (``inference.GRPCInferenceService``) over the same engine.

The model takes one FP32 input of shape [N, F] (any input name is accepted, since there is
only one) given either as ``contents.fp32_contents`` or as ``raw_input_contents[0]`` (little-endian
float32, row-major). It returns two outputs, whatever the ONNX graph calls its own: ``score``
(FP32 [N]) and ``decision`` (BOOL [N], score >= threshold), in the same form the input used (raw
in, raw out). The threshold and track are returned as response parameters.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np

from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.errors import InvalidInput, NotFound, ScoringError, Unavailable
from scorefleet.scorer.handlers import parse
from scorefleet.scorer.model_store import FloatArray, LoadedModel
from scorefleet.scorer.protos import oip_pb2
from scorefleet.scorer.rpc import deadline_of, guarded

OUTPUTS = ("score", "decision")
_OTHER_CONTENTS = ("bool_contents", "int_contents", "int64_contents", "uint_contents",
                   "uint64_contents", "fp64_contents", "bytes_contents")

try:
    SERVER_VERSION = metadata.version("scorefleet")
except metadata.PackageNotFoundError:  # running from a source tree without install
    SERVER_VERSION = "0+unknown"


def find_model(engine: ScoringEngine, name: str, version: str) -> LoadedModel:
    model = engine.primary
    if model is None:
        raise Unavailable("no model loaded yet; the server is not ready")
    if name != model.name:
        raise NotFound(f"unknown model {name!r}; this server serves {model.name!r}")
    if version and version != model.version:
        raise NotFound(f"model {name!r} version {version!r} is not loaded; serving version "
                       f"{model.version!r}")
    return model


def parse_input(request: Any, width: int, max_events: int) -> tuple[FloatArray, int, bool]:
    """(rows [n, width], n, raw?) from a ModelInferRequest, or InvalidInput naming the issue."""
    inputs = request.inputs
    if len(inputs) != 1:
        raise InvalidInput(f"expected exactly 1 input tensor (FP32 [N, {width}]), got "
                           f"{len(inputs)}", "shape")
    tensor = inputs[0]
    if tensor.datatype != "FP32":
        raise InvalidInput(f"input {tensor.name!r} has datatype {tensor.datatype!r}; the model "
                           "takes FP32", "dtype")
    shape = list(tensor.shape)
    if len(shape) != 2 or shape[1] != width:
        raise InvalidInput(f"input {tensor.name!r} has shape {shape}; expected [N, {width}]",
                           "shape")
    n = shape[0]
    if n <= 0:
        raise InvalidInput(f"empty batch: input {tensor.name!r} has shape {shape}", "empty")
    if n > max_events:
        raise InvalidInput(f"batch of {n} rows exceeds the limit of {max_events} per RPC "
                           "(batching.maxQueueSize); split it", "oversized")
    raw = request.raw_input_contents
    contents = tensor.contents
    for field in _OTHER_CONTENTS:
        if len(getattr(contents, field)):
            raise InvalidInput(f"input {tensor.name!r} is FP32 but carries {field}; use "
                               "fp32_contents or raw_input_contents", "dtype")
    want = n * width
    if len(raw):
        if len(contents.fp32_contents):
            raise InvalidInput("give the input either in contents or in raw_input_contents, "
                               "not both", "shape")
        if len(raw) != 1:
            raise InvalidInput(f"raw_input_contents has {len(raw)} entries for 1 input",
                               "shape")
        if len(raw[0]) != want * 4:
            raise InvalidInput(f"raw_input_contents[0] has {len(raw[0])} bytes; shape {shape} "
                               f"FP32 needs {want * 4}", "shape")
        return np.frombuffer(raw[0], dtype="<f4").reshape(n, width), n, True
    flat = contents.fp32_contents
    if len(flat) != want:
        raise InvalidInput(f"input {tensor.name!r} has {len(flat)} fp32_contents values; shape "
                           f"{shape} needs {want}", "shape")
    return np.array(flat, dtype=np.float32).reshape(n, width), n, False


class InferenceServicer:
    def __init__(self, engine: ScoringEngine, track: str) -> None:
        self.engine = engine
        self.track = track

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return oip_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return oip_pb2.ServerReadyResponse(ready=self.engine.ready)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            find_model(self.engine, request.name, request.version)
        except NotFound as exc:
            await context.abort(exc.code, exc.message)
        except Unavailable:
            return oip_pb2.ModelReadyResponse(ready=False)
        return oip_pb2.ModelReadyResponse(ready=self.engine.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return oip_pb2.ServerMetadataResponse(name="scorefleet", version=SERVER_VERSION,
                                              extensions=[])

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        try:
            model = find_model(self.engine, request.name, request.version)
        except ScoringError as exc:
            await context.abort(exc.code, exc.message)
            raise AssertionError("unreachable") from None
        tm = oip_pb2.ModelMetadataResponse.TensorMetadata
        return oip_pb2.ModelMetadataResponse(
            name=model.name, versions=[model.version], platform="onnxruntime_onnx",
            inputs=[tm(name=model.input_name, datatype="FP32", shape=[-1, model.num_features])],
            outputs=[tm(name="score", datatype="FP32", shape=[-1]),
                     tm(name="decision", datatype="BOOL", shape=[-1])])

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        return await guarded(self.engine, "ModelInfer", context, self._infer(request, context))

    async def _infer(self, data: Any, context: Any) -> tuple[Any, str, int]:
        request = data if isinstance(data, oip_pb2.ModelInferRequest) else parse(
            oip_pb2.ModelInferRequest, data)
        engine = self.engine
        model = find_model(engine, request.model_name, request.model_version)
        wanted = [o.name for o in request.outputs] or list(OUTPUTS)
        for name in wanted:
            if name not in OUTPUTS:
                raise InvalidInput(f"unknown output {name!r}; outputs are "
                                   f"{', '.join(OUTPUTS)}", "output")
        x, n, raw = parse_input(request, model.num_features, engine.max_events_per_rpc)
        try:
            scores, used = await engine.score(x, n, deadline_of(context))
        except ScoringError as exc:
            exc.events = n
            raise
        return _response(request, scores, used, wanted, raw, self.track), used.version, n


def _response(request: Any, scores: FloatArray, model: LoadedModel, wanted: list[str],
              raw: bool, track: str) -> Any:
    response = oip_pb2.ModelInferResponse(model_name=model.name, model_version=model.version,
                                          id=request.id)
    response.parameters["threshold"].double_param = model.threshold
    response.parameters["track"].string_param = track
    for name in wanted:
        out = response.outputs.add(name=name, shape=[len(scores)])
        if name == "score":
            out.datatype = "FP32"
            if raw:
                response.raw_output_contents.append(scores.astype("<f4").tobytes())
            else:
                out.contents.fp32_contents.extend(scores.tolist())
        else:
            decisions = model.decide(scores)
            out.datatype = "BOOL"
            if raw:
                response.raw_output_contents.append(decisions.astype(np.uint8).tobytes())
            else:
                out.contents.bool_contents.extend(decisions.tolist())
    return response
