"""`helm install`, `upgrade` and `uninstall` of the chart into the real control plane, in a
namespace that enforces the `restricted` Pod Security Standard. kwok makes the operator pod
Running and Ready without running it (no container runtime here), so this checks what helm and
the API server do with the chart (admission of the pod included), not the operator process:
tests/chart/test_cluster.py runs that."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import pytest

from tests.chart.conftest import CHART
from tests.conftest import eventually, kubectl

pytestmark = pytest.mark.cluster


def helm(*args: str) -> str:
    proc = subprocess.run(["helm", *args], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def restricted_namespace() -> str:
    name = f"chart-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest")
    return name


def exists(kind: str, name: str, namespace: str | None = None) -> bool:
    args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
    if namespace:
        args += ["-n", namespace]
    return bool(kubectl(*args).strip())


def test_restricted_pod_security_rejects_a_weaker_pod(control_plane: Any) -> None:
    """The enforcement the install test relies on is really on in this API server."""
    ns = restricted_namespace()
    try:
        out = kubectl("run", "root-pod", "-n", ns, "--image=busybox", "--restart=Never",
                      check=False)
        assert "violates PodSecurity" in out, out
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")


def test_install_upgrade_uninstall(control_plane: Any) -> None:
    ns = restricted_namespace()
    watched = f"chart-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", watched)
    release = f"sf{uuid.uuid4().hex[:6]}"
    full = f"{release}-scorefleet"
    try:
        out = helm("install", release, str(CHART), "-n", ns, "--wait", "--timeout", "120s")
        assert "STATUS: deployed" in out
        assert "all namespaces" in out  # NOTES.txt
        dep = json.loads(kubectl("get", "deployment", full, "-n", ns, "-o", "json"))
        assert dep["status"].get("availableReplicas") == 1
        pods = json.loads(kubectl("get", "pods", "-n", ns, "-o", "json", "-l",
                                  f"app.kubernetes.io/instance={release}"))["items"]
        assert len(pods) == 1 and pods[0]["spec"]["serviceAccountName"] == full
        assert exists("clusterrole", full) and exists("clusterrolebinding", full)
        # The CRD came with the chart (installed earlier by the session, so helm kept it).
        assert exists("crd", "scoringpipelines.scorefleet.io")

        # Narrow it to one namespace: a Role appears there, the ClusterRole shrinks to the
        # cluster-scoped rules, and the pod is replaced (Recreate) with the new command.
        helm("upgrade", release, str(CHART), "-n", ns, "--reuse-values",
             "--set", f"watchNamespace={watched}", "--wait", "--timeout", "120s")
        assert exists("role", full, watched) and exists("rolebinding", full, watched)
        rules = json.loads(kubectl("get", "clusterrole", full, "-o", "json"))["rules"]
        assert {r for rule in rules for r in rule["resources"]} == {
            "customresourcedefinitions", "namespaces"}

        def new_pod() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = json.loads(kubectl(
                "get", "pods", "-n", ns, "-o", "json", "-l",
                f"app.kubernetes.io/instance={release}"))["items"]
            running = [p for p in items if not p["metadata"].get("deletionTimestamp")]
            ok = len(running) == 1 and running[0]["spec"]["containers"][0]["args"][0] == \
                f"--namespace={watched}"
            return running if ok else []

        eventually("upgraded operator pod", new_pod, timeout=60)

        helm("uninstall", release, "-n", ns, "--wait", "--timeout", "120s")
        for kind, name, namespace in [("clusterrole", full, None),
                                      ("clusterrolebinding", full, None),
                                      ("role", full, watched), ("deployment", full, ns),
                                      ("serviceaccount", full, ns)]:
            assert not exists(kind, name, namespace), f"{kind}/{name} survived uninstall"
        # Helm never deletes CRDs (and with them every pipeline): that stays a human decision.
        assert exists("crd", "scoringpipelines.scorefleet.io")
    finally:
        helm("uninstall", release, "-n", ns, "--ignore-not-found")
        for n in (ns, watched):
            kubectl("delete", "namespace", n, "--wait=false")
