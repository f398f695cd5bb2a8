"""gRPC method registration, with the scoring methods parsing their own requests.

grpcio's generated ``add_..._to_server`` deserializes requests before the handler runs; bytes
that are not a valid message then fail as UNKNOWN/INTERNAL with a traceback in the log for every
such request, and never reach our metrics. The scoring methods (Score, ScoreBatch, ModelInfer)
are registered raw instead and parse inside the handler: undecodable input becomes
INVALID_ARGUMENT ("undecodable"), counted like any other bad input, without log spam. Parsing
costs the same; it only moves.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import DecodeError

from scorefleet.scorer.errors import InvalidInput
from scorefleet.scorer.protos import OIP_SERVICE, V1_SERVICE, oip_pb2, v1_pb2


def parse(message_type: Any, data: bytes) -> Any:
    """``message_type`` from wire bytes, or InvalidInput naming the expected type."""
    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        raise InvalidInput(f"request is not a valid {message_type.DESCRIPTOR.full_name}: {exc}",
                           "undecodable") from exc


def _raw(handler: Any, response_type: Any) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=None, response_serializer=response_type.SerializeToString)


def _typed(handler: Any, request_type: Any, response_type: Any) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString)


def add_scorer(servicer: Any, server: Any) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE, {
        "Score": _raw(servicer.Score, v1_pb2.ScoreResponse),
        "ScoreBatch": _raw(servicer.ScoreBatch, v1_pb2.ScoreBatchResponse),
    }),))


def add_inference(servicer: Any, server: Any) -> None:
    p = oip_pb2
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(OIP_SERVICE, {
        "ServerLive": _typed(servicer.ServerLive, p.ServerLiveRequest, p.ServerLiveResponse),
        "ServerReady": _typed(servicer.ServerReady, p.ServerReadyRequest, p.ServerReadyResponse),
        "ModelReady": _typed(servicer.ModelReady, p.ModelReadyRequest, p.ModelReadyResponse),
        "ServerMetadata": _typed(servicer.ServerMetadata, p.ServerMetadataRequest,
                                 p.ServerMetadataResponse),
        "ModelMetadata": _typed(servicer.ModelMetadata, p.ModelMetadataRequest,
                                p.ModelMetadataResponse),
        "ModelInfer": _raw(servicer.ModelInfer, p.ModelInferResponse),
    }),))
