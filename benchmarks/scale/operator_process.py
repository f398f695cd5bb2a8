"""The operator as its own process, exactly as the chart runs it: the chart's ServiceAccount
and RBAC (rendered by helm, applied for real), a kubeconfig holding only that ServiceAccount's
token, and the Deployment's command (`python -m scorefleet.operator ...`) with this venv's
python for the image's and a loopback liveness port.

Running as the ServiceAccount is also what lets the API server count the operator's requests
apart from everyone else's (fleet.flow_schemas match that ServiceAccount only).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import fleet

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "scorefleet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True,
                          timeout=600, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def apply(manifests: list[fleet.Manifest], *flags: str) -> str:
    return kubectl("apply", *flags, "-f", "-", stdin=yaml.safe_dump_all(manifests))


@dataclass
class Release:
    name: str
    namespace: str
    manifests: list[fleet.Manifest]

    @property
    def service_account(self) -> str:
        (sa,) = [m for m in self.manifests if m["kind"] == "ServiceAccount"]
        return str(sa["metadata"]["name"])

    def container(self) -> dict[str, Any]:
        (dep,) = [m for m in self.manifests if m["kind"] == "Deployment"]
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        return dict(c)

    def cluster_scoped(self) -> list[tuple[str, str]]:
        return [(m["kind"], m["metadata"]["name"]) for m in self.manifests
                if m["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def install_rbac(name: str, namespace: str, port: int, watch_namespace: str | None) -> Release:
    """Render the chart and apply all of it but its Deployment (this process stands for it)."""
    values = {"operator": {"livenessPort": port}}
    if watch_namespace:
        values["watchNamespace"] = watch_namespace  # type: ignore[assignment]
    rendered = subprocess.run(
        ["helm", "template", name, str(CHART), "--namespace", namespace, "-f", "-"],
        input=yaml.safe_dump(values), capture_output=True, text=True, timeout=120, check=True)
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    rel = Release(name, namespace, docs)
    kubectl("create", "namespace", namespace, check=False)
    apply([m for m in docs if m["kind"] != "Deployment"])
    apply(fleet.flow_schemas(namespace, rel.service_account))
    return rel


def uninstall_rbac(rel: Release) -> None:
    for kind, name in rel.cluster_scoped():
        kubectl("delete", kind.lower(), name, "--ignore-not-found", check=False)
    for name in (fleet.FLOW_RECONCILES, fleet.FLOW_OTHER):
        kubectl("delete", "flowschema", name, "--ignore-not-found", check=False)
    kubectl("delete", "namespace", rel.namespace, "--wait=false", "--ignore-not-found",
            check=False)


def service_account_kubeconfig(rel: Release, path: Path) -> Path:
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = admin["clusters"][0]
    token = kubectl("create", "token", rel.service_account, "-n", rel.namespace,
                    "--duration=2h").strip()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
        "current-context": "sa",
    }))
    path.chmod(0o600)
    return path


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz",
                                        timeout=2) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start(rel: Release, work: Path, env: dict[str, str], source: Path | None = None) -> Operator:
    """The chart Deployment's command line, run here; returns once its liveness answers.

    `source`: a directory holding another version's `scorefleet` package (for a side-by-side
    comparison); `python -m` puts its working directory first on sys.path, so that version
    is the one imported."""
    c = rel.container()
    port = int(c["ports"][0]["containerPort"])
    argv = [sys.executable if a == "python" else a for a in c["command"]]
    argv += [a.replace("0.0.0.0:", "127.0.0.1:") for a in c["args"]]
    full_env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    full_env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    full_env.update(env)
    full_env["KUBECONFIG"] = str(service_account_kubeconfig(rel, work / "operator.kubeconfig"))
    log = work / "operator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                cwd=source or ROOT, start_new_session=True)
    op = Operator(proc, log, port)
    deadline = time.monotonic() + 120
    while not op.healthy():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(op)
            raise RuntimeError(f"the operator did not come up:\n{op.tail()}")
        time.sleep(0.5)
    return op


def export_source(ref: str, into: Path) -> Path:
    """The `scorefleet` package as it is at git `ref`, extracted under `into`."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "scorefleet"],
                             capture_output=True, timeout=120, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, timeout=120, check=True)
    return into


def stop(op: Operator) -> int:
    if op.proc.poll() is None:
        op.proc.send_signal(signal.SIGTERM)
    try:
        return op.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(op.proc.pid, signal.SIGKILL)
        return op.proc.wait()
