"""The chart without a cluster: lint, render with default and non-default values, the values
schema, and the CRD being the generated file itself."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, Helm, one, operator_container
from tests.conftest import ROOT

GENERATED_CRD = ROOT / "crds" / "scoringpipelines.scorefleet.io.yaml"
CHART_CRD = CHART / "crds" / "scoringpipelines.scorefleet.io.yaml"

# Everything a non-default install can set, each to something other than its default.
CUSTOM: dict[str, Any] = {
    "image": {"repository": "registry.example/sf", "tag": "1.2.3", "pullPolicy": "Always"},
    "scorer": {"image": {"repository": "registry.example/scorer", "tag": "9.9.9"}},
    "imagePullSecrets": [{"name": "pull"}],
    "fullnameOverride": "fleet-op",
    "serviceAccount": {"create": True, "name": "fleet-sa", "annotations": {"a": "b"}},
    "watchNamespace": "ml",
    "prometheus": {"url": "http://prometheus.monitoring:9090"},
    "operator": {"livenessPort": 18080, "metricsPort": 9102, "verbose": True,
                 "extraArgs": ["--log-format=json"],
                 "extraEnv": [{"name": "X", "value": "1"}]},
    "resources": {"requests": {"cpu": "50m", "memory": "100Mi"}, "limits": {"memory": "300Mi"}},
    "podAnnotations": {"prometheus.io/scrape": "false"},
    "podLabels": {"team": "trust"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                     "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["ops"]}]}]}}},
}


# -- the CRD -----------------------------------------------------------------------------------
def test_chart_crd_is_the_generated_file() -> None:
    """charts/scorefleet/crds/ holds a symlink to crds/, so it cannot drift; should anyone
    replace it by a copy, the bytes must still be the generated file's."""
    assert CHART_CRD.read_bytes() == GENERATED_CRD.read_bytes(), (
        "charts/scorefleet/crds/ differs from crds/: restore the symlink with\n"
        "  ln -sf ../../../crds/scoringpipelines.scorefleet.io.yaml "
        "charts/scorefleet/crds/scoringpipelines.scorefleet.io.yaml")
    if CHART_CRD.is_symlink():
        assert CHART_CRD.resolve() == GENERATED_CRD.resolve()
    # Nothing else hides in crds/: helm would install it too.
    assert sorted(p.name for p in CHART_CRD.parent.iterdir()) == [CHART_CRD.name]


def test_package_and_template_follow_the_symlink(helm: Helm, tmp_path: Path) -> None:
    """What users get (a packaged chart, `template --include-crds`) carries the real CRD."""
    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("scorefleet-*.tgz")
    assert archive.name == "scorefleet-0.1.0.tgz"
    with tarfile.open(archive) as tar:
        member = tar.getmember("scorefleet/crds/scoringpipelines.scorefleet.io.yaml")
        assert member.isfile(), "the packaged CRD must be a file, not a dangling link"
        data = tar.extractfile(member)
        assert data is not None and data.read() == GENERATED_CRD.read_bytes()
    crds = [m for m in helm.template(include_crds=True) if m["kind"] == "CustomResourceDefinition"]
    assert crds == [yaml.safe_load(GENERATED_CRD.read_text())]


# -- lint ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [None, CUSTOM], ids=["default", "custom"])
def test_lint(helm: Helm, values: dict[str, Any] | None) -> None:
    out = helm("lint", "--strict", str(CHART), values=values)
    assert "0 chart(s) failed" in out.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["version"], chart["appVersion"],
            chart["kubeVersion"]) == ("v2", "scorefleet", "0.1.0", "0.1.0", ">=1.30.0-0")


def test_kube_version_is_enforced(helm: Helm) -> None:
    bad = helm("template", "sf", str(CHART), "--kube-version", "1.29.9", check=False)
    assert bad.returncode != 0 and "kubeVersion" in bad.stderr
    helm("template", "sf", str(CHART), "--kube-version", "1.30.0")


# -- default values ------------------------------------------------------------------------------
def test_default_render(helm: Helm) -> None:
    docs = helm.template()
    assert sorted((m["kind"], m["metadata"]["name"]) for m in docs) == [
        ("ClusterRole", "sf-scorefleet"), ("ClusterRoleBinding", "sf-scorefleet"),
        ("Deployment", "sf-scorefleet"), ("ServiceAccount", "sf-scorefleet")]
    dep = one(docs, "Deployment")
    assert dep["metadata"]["namespace"] == "scorefleet-system"
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "sf-scorefleet"
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001,
                                      "runAsGroup": 10001,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    c = operator_container(docs)
    assert c["image"] == "ghcr.io/scorefleet/scorer:0.1.0"
    assert c["command"] == ["python", "-m", "scorefleet.operator"]
    assert c["args"] == ["--liveness=http://0.0.0.0:8080/healthz"]
    assert c["ports"] == [{"name": "healthz", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 8081, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "192Mi"},
                              "limits": {"memory": "512Mi"}}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {"SCOREFLEET_SCORER_IMAGE": "ghcr.io/scorefleet/scorer:0.1.0",
                   "SCOREFLEET_SCORER_IMAGE_PULL_POLICY": "IfNotPresent",
                   "SCOREFLEET_OPERATOR_METRICS_PORT": "8081",
                   "SCOREFLEET_OPERATOR_METRICS_ADDRESS": "0.0.0.0"}
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "sf-scorefleet"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sf-scorefleet",
                                    "namespace": "scorefleet-system"}]
    labels = dep["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["helm.sh/chart"] == "scorefleet-0.1.0"
    assert dep["spec"]["selector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()


def test_default_image_is_the_crd_default_scorer_image(helm: Helm) -> None:
    """One image serves both; a pipeline without spec.scorer.image runs the operator's build."""
    from scorefleet.api.spec import DEFAULT_SCORER_IMAGE

    assert operator_container(helm.template())["image"] == DEFAULT_SCORER_IMAGE


# -- non-default values -------------------------------------------------------------------------
def test_custom_render(helm: Helm) -> None:
    docs = helm.template(CUSTOM, release="fleet", namespace="ops")
    assert sorted((m["kind"], m["metadata"]["name"], m["metadata"].get("namespace"))
                  for m in docs) == [
        ("ClusterRole", "fleet-op", None), ("ClusterRoleBinding", "fleet-op", None),
        ("Deployment", "fleet-op", "ops"), ("Role", "fleet-op", "ml"),
        ("RoleBinding", "fleet-op", "ml"), ("ServiceAccount", "fleet-sa", "ops")]
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "fleet-sa"
    assert pod["imagePullSecrets"] == [{"name": "pull"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == CUSTOM["nodeSelector"]
    assert pod["tolerations"] == CUSTOM["tolerations"]
    assert pod["affinity"] == CUSTOM["affinity"]
    meta = dep["spec"]["template"]["metadata"]
    assert meta["annotations"] == CUSTOM["podAnnotations"]
    assert meta["labels"]["team"] == "trust"
    c = operator_container(docs)
    assert c["image"] == "registry.example/sf:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert c["command"] == ["python", "-m", "scorefleet.operator"]
    assert c["args"] == ["--namespace=ml", "--liveness=http://0.0.0.0:18080/healthz",
                         "--verbose", "--log-format=json"]
    assert c["ports"][0]["containerPort"] == 18080
    assert c["resources"] == CUSTOM["resources"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env == {"SCOREFLEET_SCORER_IMAGE": "registry.example/scorer:9.9.9",
                   "SCOREFLEET_SCORER_IMAGE_PULL_POLICY": "IfNotPresent",
                   "SCOREFLEET_PROMETHEUS_URL": "http://prometheus.monitoring:9090",
                   "SCOREFLEET_OPERATOR_METRICS_PORT": "9102",
                   "SCOREFLEET_OPERATOR_METRICS_ADDRESS": "0.0.0.0", "X": "1"}
    assert one(docs, "ServiceAccount")["metadata"]["annotations"] == {"a": "b"}
    # Watching one namespace: the namespaced rules move to a Role there; the ClusterRole keeps
    # only what is cluster-scoped.
    cluster_resources = {r for rule in one(docs, "ClusterRole")["rules"]
                         for r in rule["resources"]}
    assert cluster_resources == {"customresourcedefinitions", "namespaces"}
    role_resources = {r for rule in one(docs, "Role")["rules"] for r in rule["resources"]}
    assert "scoringpipelines" in role_resources and "deployments" in role_resources
    for binding in (one(docs, "RoleBinding"), one(docs, "ClusterRoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fleet-sa",
                                        "namespace": "ops"}]


def test_no_rbac_and_existing_service_account(helm: Helm) -> None:
    docs = helm.template({"rbac": {"create": False},
                          "serviceAccount": {"create": False, "name": "mine"}})
    assert [m["kind"] for m in docs] == ["Deployment"]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    missing = helm("template", "sf", str(CHART), check=False,
                   values={"serviceAccount": {"create": False}})
    assert missing.returncode != 0 and "serviceAccount.name is required" in missing.stderr


def test_scorer_image_defaults_follow_the_operator_image(helm: Helm) -> None:
    c = operator_container(helm.template({"image": {"repository": "r/sf", "tag": "7",
                                                    "pullPolicy": "IfNotPresent"}}))
    assert c["image"] == "r/sf:7"
    assert {"name": "SCOREFLEET_SCORER_IMAGE", "value": "r/sf:7"} in c["env"]


# -- values schema -------------------------------------------------------------------------------
@pytest.mark.parametrize("values, field", [
    ({"watchNamespace": 7}, "watchNamespace"),
    ({"watchNamespace": "Not_A_Namespace"}, "watchNamespace"),
    ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"operator": {"livenessPort": "8080"}}, "livenessPort"),
    ({"operator": {"livenessPort": 80}}, "livenessPort"),
    ({"replicas": 2}, "replicas"),
    ({"resources": {"request": {"cpu": "1"}}}, "request"),
    ({"prometheus": {"url": "prometheus:9090"}}, "url"),
    ({"nodeSelector": {"zone": 1}}, "zone"),
], ids=["ns-type", "ns-name", "pull-policy", "port-type", "port-range", "unknown-key",
        "resources-typo", "prom-scheme", "node-selector"])
def test_schema_rejects(helm: Helm, values: dict[str, Any], field: str) -> None:
    out = helm("template", "sf", str(CHART), values=values, check=False)
    assert out.returncode != 0, f"accepted {values}"
    assert "values don't meet the specifications of the schema" in out.stderr
    assert field in out.stderr, out.stderr


def test_operator_module_scopes_to_the_namespace_it_is_given() -> None:
    """The chart runs `python -m scorefleet.operator` in both modes; with --namespace the module
    must not also pass --all-namespaces (Kopf refuses the two together)."""
    from scorefleet.operator.__main__ import kopf_args

    assert "--all-namespaces" in kopf_args(["--verbose"])
    for scoped in (["--namespace=ml"], ["-n", "ml"], ["--namespace", "ml"]):
        args = kopf_args(scoped)
        assert "--all-namespaces" not in args
        assert args[-len(scoped):] == scoped
