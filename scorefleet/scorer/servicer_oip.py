"""Open Inference Protocol v2 (``inference.GRPCInferenceService``) over the same engine.

The model takes one FP32 input of shape [N, F] (any input name is accepted, since there is
only one) given either as ``contents.fp32_contents`` or as ``raw_input_contents[0]`` (little-endian
float32, row-major). It returns two outputs, whatever the ONNX graph calls its own: ``score``
(FP32 [N]) and ``decision`` (BOOL [N], score >= threshold), in the same form the input used (raw
in, raw out). The threshold and track are returned as response parameters.

Online features (``spec.features.redis``): a second input, ``entity_key`` (BYTES [N], UTF-8, in
``contents.bytes_contents`` or raw: a 4-byte little-endian length before each key), names each
row's entity; the FP32 input then carries only the row's own features (the model's width minus
the online ones), and the server appends the entity's online features, read as the stream and
the v1 API read them (grpc_features.py). A third output, ``features_missing`` (BOOL [N]), says
which rows were scored with the defaults; it is returned whenever entity keys were given.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np

from scorefleet.scorer.engine import ScoringEngine
from scorefleet.scorer.errors import InvalidInput, NotFound, ScoringError, Unavailable
from scorefleet.scorer.grpc_features import GrpcFeatures
from scorefleet.scorer.handlers import parse
from scorefleet.scorer.model_store import FloatArray, LoadedModel
from scorefleet.scorer.protos import oip_pb2
from scorefleet.scorer.rpc import deadline_of, guarded

OUTPUTS = ("score", "decision")
KEYED_OUTPUTS = (*OUTPUTS, "features_missing")
ENTITY_INPUT = "entity_key"
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


def entity_keys(request: Any) -> tuple[int, list[str] | None]:
    """(index of the features input, the rows' entity keys or None) of a ModelInferRequest."""
    inputs = request.inputs
    named = [i for i, t in enumerate(inputs) if t.name == ENTITY_INPUT]
    if not named:
        return 0, None
    if len(inputs) != 2 or len(named) != 1:
        raise InvalidInput(f"with {ENTITY_INPUT!r}, expected exactly 2 inputs (the features, "
                           f"FP32, and {ENTITY_INPUT}, BYTES), got {len(inputs)}", "shape")
    at = named[0]
    tensor = inputs[at]
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"input {ENTITY_INPUT!r} has datatype {tensor.datatype!r}; it takes "
                           "BYTES (UTF-8 keys)", "entity_key")
    raw = request.raw_input_contents
    if len(raw):
        if len(raw) != 2:
            raise InvalidInput(f"raw_input_contents has {len(raw)} entries for 2 inputs",
                               "shape")
        values = _raw_bytes(raw[at])
    else:
        values = list(tensor.contents.bytes_contents)
    try:
        keys = [v.decode() for v in values]
    except UnicodeDecodeError:
        raise InvalidInput(f"{ENTITY_INPUT} values must be UTF-8", "entity_key") from None
    shape = list(tensor.shape)
    if shape not in ([len(keys)], [len(keys), 1]):
        raise InvalidInput(f"input {ENTITY_INPUT!r} has shape {shape} and "
                           f"{len(keys)} values; expected [N] with N keys", "shape")
    if any(not k for k in keys):
        raise InvalidInput(f"{ENTITY_INPUT} values must be non-empty, one per row",
                           "entity_key")
    return 1 - at, keys


def _raw_bytes(data: bytes) -> list[bytes]:
    """OIP's raw BYTES tensor: each element a 4-byte little-endian length, then its bytes."""
    out, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            raise InvalidInput(f"raw {ENTITY_INPUT} is truncated", "entity_key")
        size = int.from_bytes(data[at:at + 4], "little")
        if at + 4 + size > len(data):
            raise InvalidInput(f"raw {ENTITY_INPUT} is truncated", "entity_key")
        out.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return out


def parse_input(request: Any, width: int, max_events: int, index: int = 0,
                ) -> tuple[FloatArray, int, bool]:
    """(rows [n, width], n, raw?) from a ModelInferRequest, or InvalidInput naming the issue.
    `index`: which input holds the features (the other, if any, is entity_key)."""
    inputs = request.inputs
    if len(inputs) != 1 and index == 0 and not any(t.name == ENTITY_INPUT for t in inputs):
        raise InvalidInput(f"expected exactly 1 input tensor (FP32 [N, {width}]), got "
                           f"{len(inputs)}", "shape")
    tensor = inputs[index]
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
        if len(raw) != len(inputs):
            raise InvalidInput(f"raw_input_contents has {len(raw)} entries for {len(inputs)} "
                               "input(s)", "shape")
        if len(raw[index]) != want * 4:
            raise InvalidInput(f"raw_input_contents[{index}] has {len(raw[index])} bytes; shape "
                               f"{shape} FP32 needs {want * 4}", "shape")
        return np.frombuffer(raw[index], dtype="<f4").reshape(n, width), n, True
    flat = contents.fp32_contents
    if len(flat) != want:
        raise InvalidInput(f"input {tensor.name!r} has {len(flat)} fp32_contents values; shape "
                           f"{shape} needs {want}", "shape")
    return np.array(flat, dtype=np.float32).reshape(n, width), n, False


class InferenceServicer:
    def __init__(self, engine: ScoringEngine, track: str,
                 features: GrpcFeatures | None = None) -> None:
        self.engine = engine
        self.track = track
        self.features = features

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
        index, keys = entity_keys(request)
        names = KEYED_OUTPUTS if keys is not None else OUTPUTS
        wanted = [o.name for o in request.outputs] or list(names)
        for name in wanted:
            if name not in names:
                raise InvalidInput(f"unknown output {name!r}; outputs are "
                                   f"{', '.join(names)}", "output")
        width = model.num_features
        if keys is not None:
            if self.features is None or self.features.cfg is None:
                raise InvalidInput(f"{ENTITY_INPUT} given, but this pipeline reads no online "
                                   "features (spec.features.redis is not set)", "entity_key")
            width = self.features.inline_width(width)
        x, n, raw = parse_input(request, width, engine.max_events_per_rpc, index)
        missing: list[bool] = []
        try:
            if keys is not None:
                if len(keys) != n:
                    raise InvalidInput(f"{len(keys)} entity keys for {n} rows; one per row",
                                       "shape")
                assert self.features is not None
                x, missing = await self.features.complete(x, keys)
            scores, used = await engine.score(x, n, deadline_of(context))
        except ScoringError as exc:
            exc.events = n
            raise
        return (_response(request, scores, used, wanted, raw, self.track, missing),
                used.version, n)


def _response(request: Any, scores: FloatArray, model: LoadedModel, wanted: list[str],
              raw: bool, track: str, missing: list[bool] | None = None) -> Any:
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
            flags = (np.asarray(missing or [False] * len(scores), dtype=np.bool_)
                     if name == "features_missing" else model.decide(scores))
            out.datatype = "BOOL"
            if raw:
                response.raw_output_contents.append(flags.astype(np.uint8).tobytes())
            else:
                out.contents.bool_contents.extend(flags.tolist())
    return response
