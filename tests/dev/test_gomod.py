"""Wrapper go.mod generation (pure)."""

from __future__ import annotations

import pytest

from scorefleet.dev import gomod

KUBERNETES_GO_MOD = """\
// This is a generated file. Do not edit directly.
module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require (
\tgithub.com/spf13/cobra v1.9.1
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
\tk8s.io/kubectl v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kubectl => ./staging/src/k8s.io/kubectl
\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller
\tgithub.com/example/other => github.com/example/fork v1.0.0
)
"""


def test_parse_reads_go_godebug_and_staging_replaces_only() -> None:
    facts = gomod.parse_go_mod(KUBERNETES_GO_MOD)
    assert facts.go == "1.24.0"
    assert facts.godebug == ("default=go1.24",)
    assert facts.staging == (
        "k8s.io/api",
        "k8s.io/client-go",
        "k8s.io/kubectl",
        "k8s.io/sample-controller",
    )


def test_staging_version_maps_v1_to_v0() -> None:
    assert gomod.staging_version("1.34.4") == "v0.34.4"
    assert gomod.staging_version("v1.34.4") == "v0.34.4"
    with pytest.raises(ValueError):
        gomod.staging_version("2.0.0")


def test_kubernetes_wrapper_replaces_each_staging_module_with_its_published_twin() -> None:
    text = gomod.kubernetes_wrapper(
        KUBERNETES_GO_MOD, "1.34.4", ["k8s.io/kubernetes/cmd/kubectl", "k8s.io/kubernetes/cmd/a"]
    )
    assert text.startswith(gomod.HEADER)
    lines = text.splitlines()
    assert "module scorefleet.dev/wrapper/k8s" in lines
    assert "go 1.24.0" in lines
    assert "godebug default=go1.24" in lines
    assert "\tk8s.io/kubernetes v1.34.4" in lines
    for m in ("k8s.io/api", "k8s.io/client-go", "k8s.io/kubectl", "k8s.io/sample-controller"):
        assert f"\t{m} => {m} v0.34.4" in lines
    assert not any("github.com/example" in line for line in lines)
    tool_block = text[text.index("tool (") :]
    assert "\tk8s.io/kubernetes/cmd/a\n\tk8s.io/kubernetes/cmd/kubectl\n)" in tool_block


def test_kubernetes_wrapper_refuses_a_go_mod_without_staging() -> None:
    with pytest.raises(ValueError, match="staging"):
        gomod.kubernetes_wrapper("module x\n\ngo 1.24.0\n", "1.34.4", [])


def test_etcd_wrapper_requires_server_and_copies_go_line() -> None:
    text = gomod.etcd_wrapper(
        "module go.etcd.io/etcd/server/v3\n\ngo 1.26.0\n\ntoolchain go1.26.10\n"
        "replace go.etcd.io/etcd/api/v3 => ../api\n",
        "3.6.16",
        "go.etcd.io/etcd/server/v3",
    )
    lines = text.splitlines()
    assert "go 1.26.0" in lines
    assert "\tgo.etcd.io/etcd/server/v3 v3.6.16" in lines
    assert "replace (" not in text  # the siblings are required at the same version already
    assert "toolchain" not in text  # GOTOOLCHAIN=local: the local Go builds it


def test_parse_rejects_a_go_mod_without_go_line() -> None:
    with pytest.raises(ValueError):
        gomod.parse_go_mod("module x\n")
