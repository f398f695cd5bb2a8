"""KServe's Python ModelServer serving the example ONNX model: the baseline.

Runs inside KServe's own virtualenv (see build_tools.py), never the project's:

    KSERVE_PYTHON kserve_server.py --model_name example --model_path M.onnx \\
        --grpc_port P --http_port Q

A small custom ``kserve.Model`` whose ``predict`` runs onnxruntime with the same session options
as scorefleet's scorer (ort_options.py). Everything else is KServe as shipped: its ModelServer
argument parser, its OIP v2 gRPC servicer (``grpc.aio`` with a thread pool, ``--max_threads``),
and its REST server beside it. KServe's gRPC server runs in the main process only; ``--workers``
multiplies the REST server, not gRPC.

The one change to KServe: it binds ``[::]`` (gRPC) and ``0.0.0.0`` (REST) with no option to
choose, and benchmark servers here listen on loopback only, so both binds are rewritten to
127.0.0.1 before the servers start. Nothing on the request path is touched.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve import model_server as kserve_model_server
from ort_options import session_options


class OnnxScorer(Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session: Any = None
        self.load()

    def load(self) -> bool:
        self.session = ort.InferenceSession(self.path, sess_options=session_options(1),
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.ready = True
        return True

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        scores = self.session.run([self.output_name], {self.input_name: x})[0]
        out = InferOutput(name=self.output_name, shape=list(scores.shape), datatype="FP32")
        out.set_data_from_numpy(np.asarray(scores, dtype=np.float32), binary_data=True)
        return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id,
                             use_binary_outputs=True)


def bind_loopback_only() -> None:
    import grpc.aio._server as aio_server
    import uvicorn

    add_port = aio_server.Server.add_insecure_port

    def loopback_port(self: Any, address: str) -> int:
        return int(add_port(self, address.replace("[::]", "127.0.0.1")))

    aio_server.Server.add_insecure_port = loopback_port

    class LoopbackConfig(uvicorn.Config):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["host"] = "127.0.0.1"
            super().__init__(*args, **kwargs)

    uvicorn.Config = LoopbackConfig


def main() -> None:
    bind_loopback_only()
    parser = argparse.ArgumentParser(parents=[kserve_model_server.parser], add_help=False)
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    ModelServer().start([OnnxScorer(args.model_name, args.model_path)])


if __name__ == "__main__":
    main()
