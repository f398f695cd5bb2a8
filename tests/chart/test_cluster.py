"""The chart against the real local control plane: server-side dry runs of what it renders, the
RBAC it grants (kubectl auth can-i as its ServiceAccount), and the operator itself running with
exactly that ServiceAccount's token and the Deployment's rendered command line.

The operator runs as a local process, not as a pod: kwok fakes pods and no container runtime or
image exists here. Everything between the process and the API server is real.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import Helm, Manifest, env_without_cluster, operator_container
from tests.conftest import eventually, kubectl

pytestmark = pytest.mark.cluster

PIPELINE = """
apiVersion: scorefleet.io/v1alpha1
kind: ScoringPipeline
metadata:
  name: phish
spec:
  model:
    name: phishing
    version: v1
    uri: file:///models/phishing-v1.onnx
    threshold: 0.8
  scaling: {minReplicas: 1, maxReplicas: 2}
"""

# What scorefleet/operator/kube.py and Kopf (handlers.py, --standalone) do, as
# (verb, resource, subresource). Namespaced unless listed in CLUSTER_SCOPED.
NEEDED: list[tuple[str, str, str]] = [
    *[(v, "scoringpipelines.scorefleet.io", "") for v in ("get", "list", "watch", "patch")],
    *[(v, "scoringpipelines.scorefleet.io", "status") for v in ("get", "patch", "update")],
    *[(v, r, "") for r in ("deployments.apps", "services", "configmaps",
                           "grpcroutes.gateway.networking.k8s.io")
      for v in ("get", "list", "watch", "create", "update", "patch", "delete")],
    ("create", "events", ""), ("patch", "events", ""),
    *[(v, "customresourcedefinitions.apiextensions.k8s.io", "") for v in ("get", "list", "watch")],
    ("list", "namespaces", ""), ("watch", "namespaces", ""),
]
CLUSTER_SCOPED = {"customresourcedefinitions.apiextensions.k8s.io", "namespaces"}
# Things an operator with these duties must not be able to do.
DENIED: list[tuple[str, str, str]] = [
    ("get", "secrets", ""), ("list", "secrets", ""), ("watch", "secrets", ""),
    ("create", "scoringpipelines.scorefleet.io", ""),
    ("update", "scoringpipelines.scorefleet.io", ""),
    ("delete", "scoringpipelines.scorefleet.io", ""),
    ("deletecollection", "deployments.apps", ""),
    ("create", "pods", ""), ("create", "pods", "exec"), ("get", "pods", "log"),
    ("create", "serviceaccounts", "token"),
    ("update", "services", "status"), ("update", "deployments.apps", "scale"),
    ("create", "httproutes.gateway.networking.k8s.io", ""),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "namespaces", ""), ("delete", "namespaces", ""), ("get", "nodes", ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
    ("impersonate", "users", ""), ("*", "*", ""),
]


def uid() -> str:
    return uuid.uuid4().hex[:6]


@dataclass
class Release:
    name: str
    namespace: str  # where the operator and its ServiceAccount live
    manifests: list[Manifest]

    @property
    def service_account(self) -> str:
        (sa,) = [m for m in self.manifests if m["kind"] == "ServiceAccount"]
        return str(sa["metadata"]["name"])

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def apply(manifests: list[Manifest], *flags: str) -> str:
    stream = yaml.safe_dump_all(manifests)
    return kubectl("apply", *flags, "-f", "-", stdin=stream)


@pytest.fixture
def new_namespace(control_plane: Any) -> Iterator[Callable[[], str]]:
    """`new_namespace()` -> the name of a fresh namespace, deleted after the test whatever
    happened in it."""
    made: list[str] = []

    def create() -> str:
        name = f"chart-{uid()}"
        kubectl("create", "namespace", name)
        made.append(name)
        return name

    yield create
    for name in made:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def install_rbac(helm: Helm,
                 new_namespace: Callable[[], str]) -> Iterator[Callable[..., Release]]:
    """`install_rbac(values)` applies a release's ServiceAccount and RBAC for real (not its
    Deployment: there is no image to run) in a fresh namespace."""
    made: list[Release] = []

    def install(values: dict[str, Any] | None = None) -> Release:
        ns = new_namespace()
        name = f"sf{uid()}"
        docs = helm.template(values, release=name, namespace=ns)
        rel = Release(name, ns, docs)
        made.append(rel)
        apply([m for m in docs if m["kind"] != "Deployment"])
        return rel

    yield install
    for rel in made:
        for m in rel.manifests:
            if m["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                kubectl("delete", m["kind"].lower(), m["metadata"]["name"],
                        "--ignore-not-found")


def can_i(user: str, verb: str, resource: str, sub: str, namespace: str | None) -> bool:
    args = ["kubectl", "auth", "can-i", verb, resource, f"--as={user}"]
    if sub:
        args.append(f"--subresource={sub}")
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), (args, proc.stdout, proc.stderr)
    return answer == "yes"


# -- server-side dry runs --------------------------------------------------------------------------
@pytest.mark.parametrize("custom", [False, True], ids=["default", "watch-namespace"])
def test_rendered_manifests_pass_server_dry_run(helm: Helm, new_namespace: Callable[[], str],
                                                custom: bool) -> None:
    """The API server (schema validation, admission, RBAC of the admin) accepts every object,
    CRD included, and creates nothing."""
    ns = new_namespace()
    watched = new_namespace()
    name = f"sf{uid()}"
    values: dict[str, Any] | None = None
    if custom:
        from tests.chart.test_chart import CUSTOM

        values = {**CUSTOM, "watchNamespace": watched, "fullnameOverride": f"{name}-op"}
    docs = helm.template(values, release=name, namespace=ns, include_crds=True)
    out = apply(docs, "--dry-run=server")
    # The fixture installed the CRD server-side, so kubectl warns about the missing
    # last-applied annotation; anything else that is not a dry-run line is a failure.
    lines = [line for line in out.splitlines()
             if line.strip() and not line.startswith("Warning: resource customresource")]
    assert len(lines) == len(docs), out
    assert all(line.endswith("(server dry run)") for line in lines), out
    kinds = {m["kind"] for m in docs}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole",
            "ClusterRoleBinding"} <= kinds
    if custom:
        assert {"Role", "RoleBinding"} <= kinds
    # Nothing was created.
    assert kubectl("get", "deployments,serviceaccounts", "-n", ns, "-o", "name",
                   "--ignore-not-found").strip() in ("", "serviceaccount/default")
    assert not kubectl("get", "clusterrole", f"{name}-scorefleet", f"{name}-op",
                       "--ignore-not-found", "-o", "name").strip()


def test_server_rejects_a_broken_render(helm: Helm, new_namespace: Callable[[], str]) -> None:
    """The dry run is a real check: a manifest the API server refuses fails it."""
    ns = new_namespace()
    docs = helm.template(release="bad", namespace=ns)
    dep = next(m for m in docs if m["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = (
        "no-such-port-name-is-too-long")
    out = subprocess.run(["kubectl", "apply", "--dry-run=server", "-f", "-"],
                         input=yaml.safe_dump_all([dep]), capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode != 0 and "livenessProbe" in out.stderr, out.stderr


# -- RBAC ------------------------------------------------------------------------------------------
def test_rbac_all_namespaces(install_rbac: Callable[..., Release]) -> None:
    rel = install_rbac()
    elsewhere = "default"
    missing = [(v, r, s) for v, r, s in NEEDED
               if not can_i(rel.user, v, r, s, None if r in CLUSTER_SCOPED else elsewhere)]
    assert not missing, f"{rel.user} lacks {missing}"
    # Cluster-wide watches need the verbs across all namespaces.
    assert can_i(rel.user, "watch", "scoringpipelines.scorefleet.io", "", None)
    assert can_i(rel.user, "list", "deployments.apps", "", None)
    granted = [(v, r, s) for v, r, s in DENIED
               if can_i(rel.user, v, r, s, None if r in CLUSTER_SCOPED else elsewhere)]
    assert not granted, f"{rel.user} may {granted}"


def test_rbac_one_namespace(install_rbac: Callable[..., Release],
                            new_namespace: Callable[[], str]) -> None:
    watched = new_namespace()
    other = new_namespace()
    rel = install_rbac({"watchNamespace": watched})
    missing = [(v, r, s) for v, r, s in NEEDED
               if not can_i(rel.user, v, r, s, None if r in CLUSTER_SCOPED else watched)]
    assert not missing, f"{rel.user} lacks {missing} in {watched}"
    outside = [(v, r, s) for v, r, s in NEEDED if r not in CLUSTER_SCOPED
               if can_i(rel.user, v, r, s, other)]
    assert not outside, f"{rel.user} may {outside} outside {watched}"
    assert not can_i(rel.user, "list", "scoringpipelines.scorefleet.io", "", None)
    granted = [(v, r, s) for v, r, s in DENIED
               if can_i(rel.user, v, r, s, None if r in CLUSTER_SCOPED else watched)]
    assert not granted, f"{rel.user} may {granted}"


# -- the operator, as the chart's ServiceAccount ------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_account_kubeconfig(rel: Release, path: Path) -> Path:
    """A kubeconfig holding only a token of the release's ServiceAccount (what the pod gets)."""
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = admin["clusters"][0]
    token = kubectl("create", "token", rel.service_account, "-n", rel.namespace,
                    "--duration=1h").strip()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
        "current-context": "sa",
    }))
    return path


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def text(self) -> str:
        return self.log.read_text()


def start_operator(rel: Release, tmp: Path) -> Operator:
    """The Deployment's command and args, verbatim except the interpreter (this venv's python
    stands for the image's) and the liveness address (loopback, a free port)."""
    c = operator_container(rel.manifests)
    port = int(c["ports"][0]["containerPort"])
    argv = [sys.executable if a == "python" else a for a in c["command"]]
    argv += [a.replace("0.0.0.0:", "127.0.0.1:") for a in c["args"]]
    env = env_without_cluster()
    env["KUBECONFIG"] = str(service_account_kubeconfig(rel, tmp / "sa.kubeconfig"))
    log = tmp / "operator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    return Operator(proc, log, port)


def stop_operator(op: Operator) -> None:
    if op.proc.poll() is None:
        op.proc.send_signal(signal.SIGTERM)
    code = op.proc.wait(timeout=30)
    text = op.text()
    assert code == 0, text[-3000:]
    # Errors and warnings only: DEBUG lines dump whole objects, whose annotations may quote
    # an old error verbatim.
    problems = [line for line in text.splitlines()
                if line.startswith("Traceback")
                or (("[ERROR" in line or "[WARNING" in line)
                    and any(s in line for s in ("orbidden", "Not enough permissions", "403")))]
    assert not problems, "\n".join(line[:400] for line in problems[:10])


def healthz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return int(resp.status)
    except OSError:
        return None


def phase(name: str, namespace: str) -> str | None:
    out = kubectl("get", "scoringpipeline", name, "-n", namespace, "-o", "json",
                  "--ignore-not-found")
    if not out.strip():
        return None
    value = json.loads(out).get("status", {}).get("phase")
    return str(value) if value else None


def run_pipeline(op: Operator, namespace: str) -> None:
    """Liveness answers; a pipeline becomes Ready with its children, status and Events: every
    read and write of the operator went through the ServiceAccount's rights."""
    eventually("operator watching", lambda: "watch-stream for scoringpipelines" in op.text()
               or op.proc.poll() is not None, timeout=60)
    assert op.proc.poll() is None, op.text()[-3000:]
    assert eventually("liveness 200", lambda: healthz(op.port) == 200, timeout=30)
    kubectl("apply", "-n", namespace, "-f", "-", stdin=PIPELINE)
    try:
        eventually("pipeline Ready", lambda: phase("phish", namespace) == "Ready", timeout=120)
    except AssertionError as exc:
        errors = [line[:400] for line in op.text().splitlines() if "ERROR" in line]
        raise AssertionError(f"{exc}; operator errors:\n" + "\n".join(errors[:10])) from None
    names = kubectl("get", "deployments,services,configmaps", "-n", namespace, "-o", "name",
                    "-l", "scorefleet.io/pipeline=phish").split()
    assert {"deployment.apps/phish-stable", "service/phish", "service/phish-headless",
            "configmap/phish-stable"} <= set(names)
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json",
                                "--field-selector", "involvedObject.name=phish"))["items"]
    assert "PhaseReady" in {e["reason"] for e in events}


def test_operator_runs_as_its_service_account(install_rbac: Callable[..., Release],
                                              new_namespace: Callable[[], str],
                                              tmp_path: Path) -> None:
    rel = install_rbac({"operator": {"verbose": True, "livenessPort": free_port()}})
    work = new_namespace()
    op = start_operator(rel, tmp_path)
    try:
        run_pipeline(op, work)
    finally:
        stop_operator(op)


def test_operator_watching_one_namespace(install_rbac: Callable[..., Release],
                                         new_namespace: Callable[[], str],
                                         tmp_path: Path) -> None:
    watched = new_namespace()
    other = new_namespace()
    rel = install_rbac({"watchNamespace": watched,
                        "operator": {"verbose": True, "livenessPort": free_port()}})
    kubectl("apply", "-n", other, "-f", "-", stdin=PIPELINE)
    op = start_operator(rel, tmp_path)
    try:
        run_pipeline(op, watched)
        # The pipeline outside was never touched (no status, no children).
        assert phase("phish", other) is None
        assert not kubectl("get", "deployments", "-n", other, "-o", "name").strip()
    finally:
        stop_operator(op)
