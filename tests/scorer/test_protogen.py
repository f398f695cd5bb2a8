"""The build step generates importable code with imports rewritten into our package."""

from __future__ import annotations

import itertools
from pathlib import Path

from scorefleet.scorer import protogen

PROTOC_OUTPUT = """\
from scorefleet.v1 import scorer_pb2 as scorefleet_dot_v1_dot_scorer__pb2
from inference import grpc_service_pb2 as inference_dot_grpc__service__pb2
import inference.grpc_service_pb2
from google.protobuf import descriptor as _descriptor
"""
WANT = """\
from scorefleet.scorer._generated.scorefleet.v1 import scorer_pb2 as scorefleet_dot_v1_dot_scorer__pb2
from scorefleet.scorer._generated.inference import grpc_service_pb2 as inference_dot_grpc__service__pb2
import scorefleet.scorer._generated.inference.grpc_service_pb2
from google.protobuf import descriptor as _descriptor
"""  # noqa: E501


def test_rewrite_is_exact_in_any_package_order_and_idempotent() -> None:
    # The first version rewrote package by package and, with "inference" first, rewrote the
    # rewritten inference import again (about half of all hash seeds).
    for order in itertools.permutations(["inference", "scorefleet"]):
        once = protogen.rewrite_imports(PROTOC_OUTPUT, list(order))
        assert once == WANT
        assert protogen.rewrite_imports(once, list(order)) == WANT


def test_generate_rewrites_imports(tmp_path: Path) -> None:
    out = protogen.generate(tmp_path / "_generated")
    grpc_module = (out / "scorefleet" / "v1" / "scorer_pb2_grpc.py").read_text()
    assert "from scorefleet.scorer._generated.scorefleet.v1 import scorer_pb2" in grpc_module
    for path in out.rglob("*.py*"):
        text = path.read_text()
        assert "_generated.scorefleet.scorer" not in text, path
        assert "\nfrom scorefleet.v1 import" not in text and "\nfrom inference import" not in text
    assert (out / "inference" / "grpc_service_pb2.py").exists()
    assert protogen.is_current(out)


def test_generated_services_have_the_contract_names() -> None:
    from scorefleet.scorer.protos import oip_pb2, v1_pb2

    v1 = v1_pb2.DESCRIPTOR.services_by_name["Scorer"]
    assert v1.full_name == "scorefleet.v1.Scorer"
    assert [m.name for m in v1.methods] == ["Score", "ScoreBatch"]
    oip = oip_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert oip.full_name == "inference.GRPCInferenceService"
    assert [m.name for m in oip.methods] == ["ServerLive", "ServerReady", "ModelReady",
                                             "ServerMetadata", "ModelMetadata", "ModelInfer"]
