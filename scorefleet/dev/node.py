"""The real node: containerd, kubelet, kube-proxy and CoreDNS as plain processes, and teardown.

    up:   lock --> bridge + FORWARD rules --> containerd --> images --> kubelet --> node Ready
          --> kube-proxy --> CoreDNS --> recorded in <cluster>/node/state.json
    down: kube-proxy, CoreDNS, kubelet stopped --> containers killed --> shims, containerd
          --> mounts, pod netns, veths, bridge, iptables, cgroups, sysctls, host dirs --> unlock

One real node per machine: kube-proxy's iptables chains have fixed names (nodeconf.py), so a
machine-wide lock (a file under /run naming the owning cluster) guards it. A cluster that
cannot have it (lock held, not root, not Linux, a part missing) runs kwok-only and says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from scorefleet.dev import health, hostnet, kubeconfig, locks, nodeconf, pki, processes, promconf
from scorefleet.dev.nodeconf import NODE_NAME, NodeLayout

MODE_ENV = "SCOREFLEET_REAL_NODE"
LOCK_FILE = Path("/run/scorefleet-real-node.lock")
OWNER_FILE = Path("/run/scorefleet-real-node.json")
# Debian's packages (scripts/setup.sh installs them as root).
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "iptables",
              "iptables-save", "ip6tables-save", "umount")
START_ORDER = ("containerd", "kubelet", "kube-proxy", "coredns", "prometheus", "model-store")


class Mode(Enum):
    AUTO = "auto"  # a real node when this machine can run one; otherwise kwok only
    OFF = "off"
    REQUIRE = "require"  # fail unless a real node runs (CI)


class NodeUnavailable(RuntimeError):
    """This machine cannot (or may not now) run a real node; the message says why."""


@dataclass(frozen=True)
class ImageSource:
    """The sandbox (pause) image's name and how to load every image into containerd."""

    pause: str
    load: Callable[[Path, Path], None]  # (ctr binary, containerd socket)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ip: str
    pod_cidr: str
    dns: str  # the cluster DNS server's address (CoreDNS on the node IP, port 53)
    containerd_socket: Path
    prometheus_url: str  # Prometheus discovering the node's pods (kubernetes_sd_configs)
    model_store_url: str  # http://model-store.scorefleet-system.svc.cluster.local:8080
    models: Path  # the directory the model store serves


def mode() -> Mode:
    raw = os.environ.get(MODE_ENV, "auto").lower()
    try:
        return Mode(raw)
    except ValueError:
        raise NodeUnavailable(f"{MODE_ENV}={raw!r}: use auto, off or require") from None


def host_problem() -> str | None:
    """Why this machine cannot run a real node, or None."""
    if sys.platform != "linux":
        return f"a real node needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "a real node needs root (bridge, iptables, mounts, cgroups)"
    missing = [t for t in HOST_TOOLS if shutil.which(t) is None]
    missing += [str(p) for p in (nodeconf.CNI_BIN_DIR / "bridge",
                                 nodeconf.CNI_BIN_DIR / "host-local") if not p.exists()]
    if missing:
        return (f"missing {', '.join(missing)} (scripts/setup.sh installs containerd, runc, "
                "containernetworking-plugins, iptables and conntrack as root)")
    return None


# --- the machine-wide lock -----------------------------------------------------------------
def _owner_lock() -> contextlib.AbstractContextManager[None]:
    return locks.exclusive(LOCK_FILE)


def _owner() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(OWNER_FILE.read_text())
    except (OSError, ValueError):
        return None
    return data


def _owner_alive(owner: dict[str, Any]) -> bool:
    """The owning cluster still exists (its directory) and its containerd still runs."""
    if not Path(owner["cluster_dir"]).is_dir():
        return False
    return processes.is_running(int(owner.get("containerd_pid", 0)), owner.get("containerd"))


def _claim(lay: NodeLayout) -> dict[str, Any]:
    """Take the machine's real node for this cluster; put back a dead owner's host first."""
    with _owner_lock():
        owner = _owner()
        if owner and owner["cluster_dir"] != str(lay.cluster_dir):
            if _owner_alive(owner):
                raise NodeUnavailable(
                    f"the machine's real node belongs to the cluster in {owner['cluster_dir']} "
                    "(one per machine: kube-proxy's iptables chains have fixed names); "
                    "stop it with `scorefleet down` there")
            _restore_host(NodeLayout(Path(owner["cluster_dir"])), owner, kube_proxy=None)
            owner = None
        if owner is None:
            owner = {"cluster_dir": str(lay.cluster_dir), "sysctls": hostnet.read_sysctls(),
                     "host_dirs": hostnet.existing_host_dirs()}
            OWNER_FILE.write_text(json.dumps(owner, indent=2))
        return owner


def _record_owner(lay: NodeLayout, **fields: Any) -> None:
    with _owner_lock():
        owner = _owner() or {}
        if owner.get("cluster_dir") == str(lay.cluster_dir):
            owner.update(fields)
            OWNER_FILE.write_text(json.dumps(owner, indent=2))


# --- up -------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _kubeconfig(lay: NodeLayout, name: str, server: str, ca: Path,
                pair: tuple[Path, Path]) -> Path:
    path = lay.config(f"{name}.kubeconfig")
    path.parent.mkdir(parents=True, exist_ok=True)
    return kubeconfig.write(path, server, ca, *pair)


def _wait_http(what: str, url: str, pid: int, binary: str, log: Path, timeout: float) -> None:
    def ok() -> bool:
        return health.get(url, None, timeout=2)[0] == 200
    _wait(what, ok, pid, binary, log, timeout)


def _wait(what: str, check: Callable[[], bool], pid: int, binary: str, log: Path,
          timeout: float) -> None:
    try:
        health.wait_until(what, check, timeout,
                          alive=lambda: processes.is_running(pid, binary))
    except (RuntimeError, TimeoutError) as err:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{err} ({processes.exit_reason(pid)})\n--- {log} ---\n{tail}") from err


def _containerd_ready(ctr: str, socket: Path) -> bool:
    try:
        proc = subprocess.run([ctr, "--address", str(socket), "version"], capture_output=True,
                              check=False, timeout=10)
    except subprocess.TimeoutExpired:  # a fresh containerd on a loaded machine: ask again
        return False
    return proc.returncode == 0


def node_ready(server: str, files: pki.PkiFiles) -> bool:
    return health.nodes_ready(server, files, (NODE_NAME,))


def _prometheus_port(lay: NodeLayout) -> int:
    """The same port across restarts of one cluster's node (stop_node/start_node), so a
    NodeInfo taken before keeps a working Prometheus URL; a new one if it is taken."""
    saved = lay.cluster_dir / "node-prometheus.port"
    try:
        port = int(saved.read_text())
        if not processes.port_open(port):
            return port
    except (OSError, ValueError):
        pass
    port = processes.free_port()
    saved.write_text(str(port))
    return port


def up(cluster_dir: Path, *, server: str, files: pki.PkiFiles, logs: Path,
       binaries: dict[str, Path], images: ImageSource, kubectl: Callable[..., str]) -> NodeInfo:
    """Start the real node for the cluster in cluster_dir; raises NodeUnavailable or RuntimeError.

    On any failure the caller runs down(), which puts the host back.
    """
    problem = host_problem()
    if problem:
        raise NodeUnavailable(problem)
    lay = NodeLayout(cluster_dir)
    _claim(lay)
    started = time.monotonic()
    lay.root.mkdir(parents=True, exist_ok=True)
    lay.short_root.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"components": {}}
    state_file = lay.config("state.json")

    def record(name: str, pid: int, binary: Path, argv: list[str]) -> None:
        state["components"][name] = {"pid": pid, "binary": str(binary), "argv": argv,
                                     "log": str(logs / f"{name}.log")}
        state_file.write_text(json.dumps(state, indent=2))

    hostnet.create_bridge(lay)
    hostnet.create_cgroups(lay)
    hostnet.add_forward_rules(lay)
    # kube-proxy's Service rules must see bridged pod-to-pod replies (a pod reaching another
    # through a ClusterIP on the same bridge).
    hostnet.write_sysctls({"net/bridge/bridge-nf-call-iptables": "1"})
    node_pki = pki.write_node_pki(files, lay.pki, node_name=NODE_NAME, node_ip=lay.node_ip)
    _write(lay.resolv_conf, "")
    _write(lay.cni_conf_dir / "10-scorefleet.conflist", nodeconf.cni_conflist(lay))

    # containerd
    containerd = Path(shutil.which("containerd") or "containerd")
    ctr = shutil.which("ctr") or "ctr"
    _write(lay.containerd_config, nodeconf.containerd_config(lay, images.pause))
    argv = [str(containerd), "--config", str(lay.containerd_config)]
    pid = processes.spawn(argv, logs / "containerd.log")
    record("containerd", pid, containerd, argv)
    _record_owner(lay, containerd_pid=pid, containerd=str(containerd))
    _wait("containerd", lambda: _containerd_ready(ctr, lay.containerd_socket), pid,
          str(containerd), logs / "containerd.log", 60)
    loaded = time.monotonic()
    images.load(Path(ctr), lay.containerd_socket)
    print(f"{'node images':<24} {'':<12} imported in {time.monotonic() - loaded:.1f}s",
          file=sys.stderr)

    # kubelet
    ports = [*processes.free_ports(6), _prometheus_port(lay)]
    kubelet = binaries["kubelet"]
    kubelet_cfg = _write(lay.config("kubelet.yaml"), nodeconf.kubelet_config(
        lay, ca=files.ca_cert, cert=node_pki.kubelet_serving[0],
        key=node_pki.kubelet_serving[1], port=ports[0], healthz_port=ports[1]))
    key, value = nodeconf.REAL_NODE_LABEL
    kubelet_kc = _kubeconfig(lay, "kubelet", server, files.ca_cert, node_pki.kubelet_client)
    argv = [str(kubelet), f"--config={kubelet_cfg}", f"--kubeconfig={kubelet_kc}",
            f"--root-dir={lay.kubelet_root}", f"--cert-dir={lay.kubelet_root / 'pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={lay.node_ip}",
            f"--node-labels={key}={value}",
            f"--volume-plugin-dir={lay.kubelet_root / 'volume-plugins'}", "--v=1"]
    pid = processes.spawn(argv, logs / "kubelet.log")
    record("kubelet", pid, kubelet, argv)
    state["ports"] = {"kubelet": ports[0], "kubelet_healthz": ports[1],
                      "kube_proxy_healthz": ports[2], "kube_proxy_metrics": ports[3],
                      "coredns_health": ports[4], "coredns_ready": ports[5],
                      "prometheus": ports[6]}
    state_file.write_text(json.dumps(state, indent=2))
    _wait_http("kubelet", f"http://127.0.0.1:{ports[1]}/healthz", pid, str(kubelet),
               logs / "kubelet.log", 90)
    _wait("node Ready", lambda: node_ready(server, files), pid, str(kubelet),
          logs / "kubelet.log", 90)

    # kube-proxy
    proxy = binaries["kube-proxy"]
    proxy_kc = _kubeconfig(lay, "kube-proxy", server, files.ca_cert, node_pki.kube_proxy)
    proxy_cfg = _write(lay.config("kube-proxy.yaml"), nodeconf.kube_proxy_config(
        lay, kubeconfig=proxy_kc, healthz_port=ports[2], metrics_port=ports[3]))
    argv = [str(proxy), f"--config={proxy_cfg}", "--v=0"]
    pid = processes.spawn(argv, logs / "kube-proxy.log")
    record("kube-proxy", pid, proxy, argv)
    _wait_http("kube-proxy", f"http://127.0.0.1:{ports[2]}/livez", pid, str(proxy),
               logs / "kube-proxy.log", 60)
    hostnet.guards_first(lay)

    # CoreDNS
    kubectl("apply", "-f", "-", stdin=nodeconf.coredns_rbac())
    coredns = binaries["coredns"]
    dns_kc = _kubeconfig(lay, "coredns", server, files.ca_cert, node_pki.coredns)
    corefile = _write(lay.config("Corefile"), nodeconf.corefile(
        lay, kubeconfig=dns_kc, health_port=ports[4], ready_port=ports[5]))
    argv = [str(coredns), "-conf", str(corefile)]
    pid = processes.spawn(argv, logs / "coredns.log")
    record("coredns", pid, coredns, argv)
    _wait_http("coredns", f"http://127.0.0.1:{ports[5]}/ready", pid, str(coredns),
               logs / "coredns.log", 60)

    # Prometheus, finding the node's scorer pods through the API server.
    kubectl("apply", "-f", "-", stdin=promconf.rbac(pki.PROMETHEUS_USER))
    prometheus = binaries["prometheus"]
    prom_cfg = _write(lay.config("prometheus.yml"), promconf.config(
        api_server=server, ca=files.ca_cert, cert=node_pki.prometheus[0],
        key=node_pki.prometheus[1]))
    argv = [str(prometheus), f"--config.file={prom_cfg}",
            f"--storage.tsdb.path={lay.prometheus_data}",
            f"--web.listen-address=127.0.0.1:{ports[6]}", "--storage.tsdb.retention.time=1d"]
    pid = processes.spawn(argv, logs / "prometheus.log")
    record("prometheus", pid, prometheus, argv)
    _wait_http("prometheus", f"http://127.0.0.1:{ports[6]}/-/ready", pid, str(prometheus),
               logs / "prometheus.log", 60)

    # The model store: files under <node>/models over HTTP, behind a Service.
    lay.models.mkdir(parents=True, exist_ok=True)
    python = Path(sys.executable)
    argv = [str(python), "-m", "http.server", str(nodeconf.MODEL_STORE_PORT),
            "--bind", lay.node_ip, "--directory", str(lay.models)]
    pid = processes.spawn(argv, logs / "model-store.log")
    record("model-store", pid, python, argv)
    kubectl("apply", "-f", "-", stdin=nodeconf.model_store_manifests(lay))
    _wait_http("model store", f"http://{lay.node_ip}:{nodeconf.MODEL_STORE_PORT}/", pid,
               str(python), logs / "model-store.log", 30)
    state["ready"] = True
    state_file.write_text(json.dumps(state, indent=2))
    print(f"{'real node':<24} {NODE_NAME:<12} ready in {time.monotonic() - started:.1f}s "
          f"(pods {lay.pod_cidr} on {lay.bridge}, DNS {lay.node_ip})", file=sys.stderr)
    return info(lay)


def info(lay: NodeLayout) -> NodeInfo:
    state = recorded(lay.cluster_dir) or {}
    port = state.get("ports", {}).get("prometheus", 0)
    return NodeInfo(name=NODE_NAME, ip=lay.node_ip, pod_cidr=str(lay.pod_cidr), dns=lay.node_ip,
                    containerd_socket=lay.containerd_socket,
                    prometheus_url=f"http://127.0.0.1:{port}",
                    model_store_url=nodeconf.model_store_url(), models=lay.models)


def recorded(cluster_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(NodeLayout(cluster_dir).config("state.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def statuses(cluster_dir: Path) -> list[tuple[str, int, bool, bool, Path]]:
    """(name, pid, running, healthy, log) of each recorded node process."""
    state = recorded(cluster_dir)
    if not state:
        return []
    ports = state.get("ports", {})
    urls = {"kubelet": f"http://127.0.0.1:{ports.get('kubelet_healthz')}/healthz",
            "kube-proxy": f"http://127.0.0.1:{ports.get('kube_proxy_healthz')}/livez",
            "coredns": f"http://127.0.0.1:{ports.get('coredns_ready')}/ready",
            "prometheus": f"http://127.0.0.1:{ports.get('prometheus')}/-/ready"}
    out = []
    for name in START_ORDER:
        proc = state["components"].get(name)
        if not proc:
            continue
        running = processes.is_running(int(proc["pid"]), proc["binary"])
        url = urls.get(name)
        healthy = running and (url is None or health.get(url, None, timeout=2)[0] == 200)
        out.append((name, int(proc["pid"]), running, healthy, Path(proc["log"])))
    return out


def healthy(cluster_dir: Path) -> bool:
    state = recorded(cluster_dir)
    rows = statuses(cluster_dir)
    return bool(state and state.get("ready")) and len(rows) == len(START_ORDER) and all(
        r[3] for r in rows)


# --- down -----------------------------------------------------------------------------------
def down(cluster_dir: Path, kube_proxy: Path | None = None) -> list[str]:
    """Stop this cluster's node and put the host back; returns what could not be undone.

    Safe to call when no node was started, and after a crash (names derive from the cluster
    directory; the saved sysctls and host directories live in the machine-wide owner file).
    """
    lay = NodeLayout(cluster_dir)
    state = recorded(cluster_dir) or {}
    for name in reversed(START_ORDER):
        proc = state.get("components", {}).get(name)
        if proc and name != "containerd":
            processes.terminate(int(proc["pid"]), proc["binary"], timeout=10)
    hostnet.kill_cgroup(lay)
    hostnet.kill_shims(lay.containerd_socket)
    proc = state.get("components", {}).get("containerd")
    if proc:
        processes.terminate(int(proc["pid"]), proc["binary"], timeout=10)
    problems: list[str] = []
    with _owner_lock():
        owner = _owner()
        mine = owner is not None and owner["cluster_dir"] == str(cluster_dir)
        if (mine or lay.root.exists() or lay.short_root.exists()
                or hostnet.link_exists(lay.bridge)):
            problems = _restore_host(lay, owner if mine else None, kube_proxy=kube_proxy)
        if mine:
            OWNER_FILE.unlink(missing_ok=True)
    shutil.rmtree(lay.root, ignore_errors=True)
    return problems


def _restore_host(lay: NodeLayout, owner: dict[str, Any] | None,
                  kube_proxy: Path | None) -> list[str]:
    hostnet.kill_cgroup(lay)
    hostnet.kill_shims(lay.containerd_socket)
    hostnet.unmount_under(lay.dirs)
    hostnet.remove_network(lay)
    if owner is not None:
        # KUBE-* chains have fixed names: only the lock's owner may remove them.
        if kube_proxy is not None and kube_proxy.exists():
            subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, check=False,
                           timeout=60)
        hostnet.remove_kube_chains()
    problems = hostnet.remove_cgroups(lay)
    if owner is not None:
        problems += hostnet.write_sysctls(owner.get("sysctls", {}))
        hostnet.remove_host_files(lay, owner.get("host_dirs", []))
    left = hostnet.mounts_under(lay.dirs)
    if left:
        problems.append(f"mounts left: {left}")
    else:  # never rmtree through a mount that is still there
        shutil.rmtree(lay.short_root, ignore_errors=True)
        with contextlib.suppress(OSError):
            lay.short_root.parent.rmdir()  # only when no other cluster's node uses it
    return problems
