"""Pinned versions and the ldflags that make `/version` tell the truth (pure)."""

from __future__ import annotations

from scorefleet.dev import versions


def test_kubernetes_ldflags_set_version_in_both_version_packages() -> None:
    flags = versions.kubernetes_version_ldflags("1.34.4")
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.34.4" in flags
        assert f"-X {pkg}.gitMajor=1" in flags
        assert f"-X {pkg}.gitMinor=34" in flags


def test_helm_ldflags_name_its_version_and_assumed_kubernetes() -> None:
    flags = versions.helm_version_ldflags("3.19.5", "1.34.4")
    assert "-X helm.sh/helm/v3/internal/version.version=v3.19.5" in flags
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34" in flags


def test_every_tool_has_a_unique_versioned_cache_key() -> None:
    keys = [t.key for t in versions.TOOLS]
    assert len(keys) == len(set(keys))
    assert versions.tool("kube-apiserver").key == "kube-apiserver-v1.34.4"
    names = {t.name for t in versions.TOOLS}
    assert {"etcd", "kwok", "helm", "kubectl", "kube-scheduler"} <= names


def test_only_kubernetes_and_etcd_need_wrappers() -> None:
    fam = {t.name: t.family for t in versions.TOOLS}
    assert fam["kube-controller-manager"] is versions.Family.K8S
    assert fam["etcd"] is versions.Family.ETCD
    assert fam["helm"] is versions.Family.INSTALL
    assert fam["kwok"] is versions.Family.INSTALL


def test_prometheus_is_built_with_only_the_kubernetes_discovery() -> None:
    from scorefleet.dev.build import _build_flags

    prom = versions.tool("prometheus")
    assert prom.family is versions.Family.INSTALL  # Prometheus 3's go.mod has no replaces
    assert "-tags=remove_all_sd,enable_kubernetes_sd" in _build_flags(prom)
    # Another tag set is another binary: the cache key says which.
    assert prom.key == f"prometheus-v{prom.version}+remove_all_sd+enable_kubernetes_sd"
    assert not any(f.startswith("-tags") for f in _build_flags(versions.tool("kubelet")))
    # Prometheus 3.x's Go module is tagged v0.3xx.y: what `go install` must ask for.
    assert prom.go_version == "0.316.0" and prom.version == "3.16.0"
    # The node starts it by path; `prometheus` on PATH stays Debian's for the process tests.
    assert not prom.on_path and versions.tool("kubectl").on_path
