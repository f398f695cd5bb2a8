"""The generated protobuf modules, generated on first import if missing (fresh editable install).

Everything else imports messages and stubs from here, never from ``_generated`` directly, so the
"generate if missing" step happens in exactly one place.
"""

from __future__ import annotations

import importlib
from typing import Any

from scorefleet.scorer.protogen import ensure_generated

ensure_generated()

# Imported by name so type checkers treat messages as Any instead of analysing generated code
# (which is not mypy --strict clean and is not ours to fix).
_PKG = "scorefleet.scorer._generated"
oip_pb2: Any = importlib.import_module(f"{_PKG}.inference.grpc_service_pb2")
oip_pb2_grpc: Any = importlib.import_module(f"{_PKG}.inference.grpc_service_pb2_grpc")
v1_pb2: Any = importlib.import_module(f"{_PKG}.scorefleet.v1.scorer_pb2")
v1_pb2_grpc: Any = importlib.import_module(f"{_PKG}.scorefleet.v1.scorer_pb2_grpc")

V1_SERVICE = "scorefleet.v1.Scorer"
OIP_SERVICE = "inference.GRPCInferenceService"

__all__ = ["OIP_SERVICE", "V1_SERVICE", "oip_pb2", "oip_pb2_grpc", "v1_pb2", "v1_pb2_grpc"]
