"""The build step generates importable code with imports rewritten into our package."""

from __future__ import annotations

from pathlib import Path

from scorefleet.scorer import protogen


def test_generate_rewrites_imports(tmp_path: Path) -> None:
    out = protogen.generate(tmp_path / "_generated")
    grpc_module = (out / "scorefleet" / "v1" / "scorer_pb2_grpc.py").read_text()
    assert "from scorefleet.scorer._generated.scorefleet.v1 import scorer_pb2" in grpc_module
    assert "\nfrom scorefleet.v1 import" not in grpc_module
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
