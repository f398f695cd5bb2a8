"""ONNX models: loading (fetch, verify, open, warm up) and the slots the servicers read.

Load order on a reload: the new model is fetched, verified, opened and warmed up while the old
one keeps serving; only then is the slot swapped (one attribute assignment, atomic for the event
loop) and the old session dropped. A failed load leaves the slot untouched (Triton #2076: reload
downtime is what users hate most).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from scorefleet.api.scorer_config import ModelRef
from scorefleet.scorer.artifacts import ArtifactError, fetch

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


class ModelLoadError(Exception):
    """The model could not be made ready; the message says which step failed and why."""


@dataclass(frozen=True)
class LoadedModel:
    """An opened, warmed-up model plus what the servicers need to validate and label."""

    ref: ModelRef
    sha256: str
    session: Any  # ort.InferenceSession (untyped library)
    input_name: str
    num_features: int
    output_name: str
    # Classifiers often emit [N, 2] probabilities: the positive class is column 1.
    output_column: int | None
    loaded_at: float

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def threshold(self) -> float:
        return self.ref.threshold

    @cached_property
    def threshold32(self) -> float:
        """The threshold rounded to float32, so a Python float score compares like numpy."""
        return float(np.float32(self.ref.threshold))

    def run(self, x: FloatArray) -> FloatArray:
        """Scores for rows ``x`` ([N, num_features] float32), shape [N]."""
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        if self.output_column is not None:
            out = out[:, self.output_column]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def decide(self, scores: FloatArray) -> BoolArray:
        return scores >= np.float32(self.threshold)

    def same_artifact(self, ref: ModelRef) -> bool:
        """True if ``ref`` names the same bytes, so only cheap fields (threshold) changed."""
        return (ref.uri, ref.sha256, ref.name, ref.version, ref.format) == (
            self.ref.uri, self.ref.sha256, self.ref.name, self.ref.version, self.ref.format)

    def with_ref(self, ref: ModelRef) -> LoadedModel:
        return replace(self, ref=ref)


def session_options(intra_op_threads: int) -> Any:
    opts = ort.SessionOptions()
    # Explicit threads: the default (one per core) in every worker process oversubscribes the
    # CPU N-fold when several workers share a pod. Workers give parallelism across requests;
    # intra-op threads only help very large batches.
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning worker threads burn a core waiting for work; on a small pod that CPU is needed by
    # the gRPC workers.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def _describe(session: Any, uri: str) -> tuple[str, int, str, int | None]:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelLoadError(f"{uri}: model must have exactly one input, has "
                             f"{[i.name for i in inputs]}")
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise ModelLoadError(f"{uri}: input {inp.name!r} must be tensor(float), is {inp.type}")
    shape = list(inp.shape)
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
        raise ModelLoadError(f"{uri}: input {inp.name!r} must have shape [batch, features] with "
                             f"a fixed feature count, has {shape}")
    for out in session.get_outputs():
        if out.type != "tensor(float)":
            continue
        oshape = list(out.shape)
        column = 1 if len(oshape) == 2 and oshape[1] == 2 else None
        return inp.name, int(shape[1]), out.name, column
    raise ModelLoadError(f"{uri}: model has no tensor(float) output")


def load_model(ref: ModelRef, intra_op_threads: int = 1) -> LoadedModel:
    """Fetch, verify, open and warm up ``ref``. Blocking; run it off the event loop."""
    started = time.monotonic()
    try:
        data, digest = fetch(ref.uri, ref.sha256)
    except ArtifactError as exc:
        raise ModelLoadError(str(exc)) from exc
    try:
        session = ort.InferenceSession(data, sess_options=session_options(intra_op_threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
        raise ModelLoadError(f"{ref.uri} (sha256 {digest}): onnxruntime cannot open it: "
                             f"{str(exc).splitlines()[0][:300]}") from exc
    input_name, num_features, output_name, column = _describe(session, ref.uri)
    model = LoadedModel(ref=ref, sha256=digest, session=session, input_name=input_name,
                        num_features=num_features, output_name=output_name,
                        output_column=column, loaded_at=time.time())
    # Warm-up: the first run allocates arenas and is ~100x slower; pay it before serving, and
    # reject models whose output is not one score per row.
    try:
        probe = model.run(np.zeros((2, num_features), dtype=np.float32))
    except Exception as exc:
        raise ModelLoadError(f"{ref.uri}: warm-up inference failed: "
                             f"{str(exc).splitlines()[0][:300]}") from exc
    if probe.shape != (2,):
        raise ModelLoadError(f"{ref.uri}: output {output_name!r} must give one score per row, "
                             f"gave shape {probe.shape} for 2 rows")
    log.info("loaded model %s version %s sha256 %s (%d features) in %.3fs", ref.name,
             ref.version, digest, num_features, time.monotonic() - started)
    return model
