"""The CRD is generated from the models: committed file in sync, and structurally sound."""

from __future__ import annotations

from typing import Any

from scorefleet.api import crd


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.items():
            out += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _walk(value, f"{path}[{i}]")
    return out


def test_committed_crd_matches_models() -> None:
    assert crd.CRD_PATH.read_text() == crd.render(), (
        "crds/ drifted from scorefleet/api: run python -m scorefleet.api.crd --write")


def test_check_mode_reports_drift(tmp_path: Any, monkeypatch: Any) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text("# stale\n")
    monkeypatch.setattr(crd, "CRD_PATH", stale)
    assert crd.main(["--check"]) == 1
    stale.write_text(crd.render())
    assert crd.main(["--check"]) == 0


def test_schema_is_structural() -> None:
    schema = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node, path
        assert "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
        if "properties" in node and not path.endswith("properties"):
            assert node.get("type") == "object", path
        assert node.get("type") != "null", path


def test_cross_field_rules_are_present() -> None:
    text = crd.render()
    for rule in ("self.minReplicas <= self.maxReplicas", "isSorted()",
                 "self.port != self.metricsPort", "has(self.grpcRoute)"):
        assert rule in text


def test_printer_columns_cover_the_story() -> None:
    cols = {c["name"] for c in crd.PRINTER_COLUMNS}
    assert {"Phase", "Stable", "Candidate", "Weight", "Ready", "QPS", "P99ms", "Age"} <= cols


def test_nested_defaults_are_filled_by_the_server() -> None:
    spec = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]
    assert props["scorer"]["default"]["port"] == 9000
    assert props["scaling"]["default"]["minReplicas"] == 2
    assert props["scorer"]["properties"]["resources"]["default"]["requests"]["cpu"] == "1"
    steps = props["rollout"]["properties"]["canary"]["properties"]["steps"]
    assert [s["weight"] for s in steps["default"]] == [5, 25, 50]
