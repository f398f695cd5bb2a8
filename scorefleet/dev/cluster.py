"""The local control plane's lifecycle: `ensure_up()`, `stop()`, `status()`.

    (nothing) --ensure_up--> building --> starting --> bootstrapping --> up
        ^                                    |  any step fails                |
        +------------- stop() <--------------+--------------------------------+

State lives in one directory (pids, ports, logs, PKI, etcd data, kubeconfig). `up` on a
healthy recorded cluster only reports it; any other recorded state (dead pids after a
reboot, a half-started run) is torn down and replaced, since a fresh start takes seconds.
A file lock beside the state directory serialises concurrent callers (e.g. two test runs).
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scorefleet.dev import (
    bootstrap,
    build,
    components,
    health,
    kubeconfig,
    locks,
    node,
    nodeconf,
    paths,
    pki,
    processes,
    versions,
)
from scorefleet.dev.bootstrap import KwokNodes
from scorefleet.dev.components import START_ORDER, Layout, Ports
from scorefleet.dev.node import ImageSource, Mode, NodeInfo, NodeUnavailable

# Seconds each component gets to report healthy; the apiserver's first start migrates
# storage and installs bootstrap RBAC, which is the slow part.
READY_TIMEOUT = {
    "etcd": 60.0,
    "kube-apiserver": 120.0,
    "kube-controller-manager": 60.0,
    "kube-scheduler": 60.0,
    "kwok": 60.0,
}


@dataclass(frozen=True)
class ClusterInfo:
    kubeconfig: Path
    server: str  # https://127.0.0.1:<port>
    bin_dir: Path  # kubectl, helm, kwok, etcd, kube-* (symlinks to the versioned cache)
    state_dir: Path
    node: NodeInfo | None = None  # the real node, when this cluster has one
    node_unavailable: str | None = None  # why it has none (kwok only)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    running: bool
    healthy: bool
    log: Path


def _state_dir() -> Path:
    return paths.cluster_dir()


def _locked() -> contextlib.AbstractContextManager[None]:
    state_dir = _state_dir()
    return locks.exclusive(state_dir.with_name(state_dir.name + ".lock"))


def _read_state(lay: Layout) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(lay.state_file.read_text())
    except (OSError, ValueError):
        return None
    return data


def _write_state(lay: Layout, state: dict[str, Any]) -> None:
    tmp = lay.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(lay.state_file)


def _info(lay: Layout, ports: Ports, state: dict[str, Any] | None = None) -> ClusterInfo:
    state = state or {}
    return ClusterInfo(
        kubeconfig=lay.kubeconfig,
        server=ports.server,
        bin_dir=paths.path_dir(),
        state_dir=lay.state_dir,
        node=node.info(nodeconf.NodeLayout(lay.state_dir)) if state.get("node") else None,
        node_unavailable=state.get("node_unavailable"),
    )


def _statuses(lay: Layout, state: dict[str, Any]) -> list[ComponentStatus]:
    ports = Ports(**state["ports"])
    out = []
    for name in START_ORDER:
        proc = state.get("components", {}).get(name)
        pid = int(proc["pid"]) if proc else 0
        running = bool(proc) and processes.is_running(pid, proc["binary"])
        healthy = running and health.probe(components.health(name, ports), lay.pki)
        out.append(ComponentStatus(name, pid, running, healthy, lay.log(name)))
    out += [ComponentStatus(*row) for row in node.statuses(lay.state_dir)]
    return out


def status() -> list[ComponentStatus]:
    """Each recorded component's pid, liveness and health; empty when nothing is recorded."""
    lay = Layout(_state_dir())
    state = _read_state(lay)
    return _statuses(lay, state) if state else []


def _healthy(lay: Layout, want: Mode) -> ClusterInfo | None:
    state = _read_state(lay)
    if not state or not state.get("bootstrapped"):
        return None
    if not all(s.healthy for s in _statuses(lay, state)):
        return None
    if state.get("node") and not node.healthy(lay.state_dir):
        return None
    if want is Mode.REQUIRE and not state.get("node"):
        return None
    return _info(lay, Ports(**state["ports"]), state)


def _stop_processes(lay: Layout) -> None:
    """Stop the real node (putting the host back), then every recorded process."""
    problems = node.down(lay.state_dir, kube_proxy=build.binary_path(_tool("kube-proxy")))
    if problems:
        print(f"down: the host could not be fully restored: {problems}", file=sys.stderr)
    state = _read_state(lay) or {}
    recorded = state.get("components", {})
    for name in reversed(START_ORDER):
        proc = recorded.get(name)
        if proc:
            processes.terminate(int(proc["pid"]), proc["binary"])


def _teardown(lay: Layout) -> None:
    # Kafka and Redis of `scorefleet up --streams` keep their state in the cluster directory
    # and may listen on the node IP: stopped first, never orphaned by the rmtree below.
    from scorefleet.dev import streams

    streams.down()
    _stop_processes(lay)
    shutil.rmtree(lay.state_dir, ignore_errors=True)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _tool(name: str) -> versions.Tool:
    return versions.tool(name)


def default_images() -> ImageSource:
    """The project's images (pause and scorer), built here and cached by content.

    If they cannot be built here, the cluster runs kwok only (or fails when required).
    """
    from scorefleet.dev import image

    try:
        images = image.build_images()
    except (image.ImageBuildError, OSError, subprocess.SubprocessError) as err:
        raise NodeUnavailable(f"the images could not be built: {err}") from err

    def load(ctr: Path, socket: Path) -> None:
        image.import_images(images, ctr=ctr, address=socket)

    return ImageSource(pause=images.pause.name, load=load)


def _start_node(lay: Layout, info: ClusterInfo, files: pki.PkiFiles,
                binaries: dict[str, Path], want: Mode,
                images: Callable[[], ImageSource]) -> dict[str, Any]:
    """Start the real node unless unwanted or impossible; what to record in the state."""
    if want is Mode.OFF:
        return {"node_unavailable": f"not requested ({node.MODE_ENV}=off)"}
    try:
        node.up(lay.state_dir, server=info.server, files=files, logs=lay.logs,
                binaries=binaries, images=images(),
                kubectl=functools.partial(bootstrap.kubectl, info.bin_dir, info.kubeconfig))
    except NodeUnavailable as err:
        if want is Mode.REQUIRE:
            raise RuntimeError(f"real node required ({node.MODE_ENV}=require): {err}") from err
        print(f"{'real node':<24} not started: {err}; kwok nodes only", file=sys.stderr)
        return {"node_unavailable": str(err)}
    return {"node": True}


def _start(lay: Layout, binaries: dict[str, Path], want: Mode = Mode.OFF,
           images: Callable[[], ImageSource] = default_images,
           kwok_nodes: KwokNodes | None = None) -> ClusterInfo:
    lay.state_dir.mkdir(parents=True, exist_ok=True)
    lay.logs.mkdir(exist_ok=True)
    files = pki.write_pki(lay.state_dir / "pki")
    ports = Ports(*processes.free_ports(6))
    kubeconfig.write(lay.kubeconfig, ports.server, files.ca_cert, files.admin_cert, files.admin_key)
    state: dict[str, Any] = {"ports": asdict(ports), "components": {}, "bootstrapped": False}
    _write_state(lay, state)
    for name in START_ORDER:
        binary = binaries[name]
        argv = components.args(name, binary, lay, ports)
        started = time.monotonic()
        pid = processes.spawn(argv, lay.log(name))
        # Recorded before waiting, so a failed start is still cleaned up by stop().
        state["components"][name] = {"pid": pid, "binary": str(binary), "argv": argv}
        _write_state(lay, state)
        probe = components.health(name, ports)
        try:
            health.wait_until(
                name,
                functools.partial(health.probe, probe, files),
                READY_TIMEOUT[name],
                alive=functools.partial(processes.is_running, pid, str(binary)),
            )
        except RuntimeError as err:  # the process died while we waited
            raise RuntimeError(
                f"{err} ({processes.exit_reason(pid)})\n"
                f"--- {lay.log(name)} ---\n{_log_tail(lay.log(name))}"
            ) from err
        except TimeoutError as err:
            raise RuntimeError(
                f"{err}\n--- {lay.log(name)} ---\n{_log_tail(lay.log(name))}"
            ) from err
        print(
            f"{name:<24} pid {pid:<8} ready in {time.monotonic() - started:.1f}s", file=sys.stderr
        )
    info = _info(lay, ports)
    nodes = kwok_nodes or KwokNodes()
    state["kwok_nodes"] = asdict(nodes)
    _bootstrap(info, files, nodes)
    state.update(_start_node(lay, info, files, binaries, want, images))
    state["bootstrapped"] = True
    _write_state(lay, state)
    return _info(lay, ports, state)


def _bootstrap(info: ClusterInfo, files: pki.PkiFiles, nodes: KwokNodes) -> None:
    started = time.monotonic()
    bootstrap.create_nodes(info.bin_dir, info.kubeconfig, nodes)
    bootstrap.apply_gateway_crds(info.bin_dir, info.kubeconfig, build.gateway_api_crd_dir())
    health.wait_until(
        "kwok nodes Ready",
        lambda: health.nodes_ready(info.server, files, nodes.names),
        60.0,
    )
    # Pods are admitted only once the controller-manager made the namespace's ServiceAccount.
    health.wait_until(
        "default ServiceAccount",
        lambda: (
            health.get_json(
                info.server, "/api/v1/namespaces/default/serviceaccounts/default", files
            )
            is not None
        ),
        60.0,
    )
    print(f"{'bootstrap':<24} {'':<12} done in {time.monotonic() - started:.1f}s", file=sys.stderr)


def ensure_up(attempts: int = 2, *, real_node: Mode | None = None,
              images: Callable[[], ImageSource] = default_images,
              kwok_nodes: KwokNodes | None = None) -> ClusterInfo:
    """Build what is missing, start the cluster unless it is already healthy, and return it.

    real_node: whether to add the real node (default: $SCOREFLEET_REAL_NODE, else auto:
    when this machine can run one). images: the pause and scorer images for it.
    A failed start is retried once from scratch: ports are picked free but only bound a
    moment later, and other clusters on the machine (tests start their own) can take one
    in between.
    """
    want = real_node or node.mode()
    built = build.build_all()
    binaries = {b.tool.name: b.path for b in built}
    with _locked():
        lay = Layout(_state_dir())
        info = _healthy(lay, want)
        if info is not None:
            return info
        for attempt in range(1, attempts + 1):
            _teardown(lay)
            try:
                return _start(lay, binaries, want, images, kwok_nodes)
            except (RuntimeError, TimeoutError) as err:
                # Keep the state directory: its logs say what went wrong; the next `up` or
                # `down` removes it.
                _stop_processes(lay)
                if attempt == attempts:
                    raise
                print(f"up: attempt {attempt} failed, retrying: {err}", file=sys.stderr)
            except BaseException:
                _stop_processes(lay)
                raise
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def stop() -> None:
    """Stop every component, free its ports and delete the state directory."""
    with _locked():
        _teardown(Layout(_state_dir()))


def stop_node() -> list[str]:
    """Stop only the real node and put the host back (the control plane keeps running);
    returns what could not be undone. The Node object stays, NotReady."""
    with _locked():
        lay = Layout(_state_dir())
        problems = node.down(lay.state_dir, kube_proxy=build.binary_path(_tool("kube-proxy")))
        state = _read_state(lay)
        if state is not None:
            state.pop("node", None)
            state["node_unavailable"] = "stopped by stop_node()"
            _write_state(lay, state)
        return problems


def start_node(images: Callable[[], ImageSource] = default_images) -> ClusterInfo:
    """Start the real node again on the running control plane (after stop_node())."""
    binaries = {t.name: build.binary_path(t) for t in versions.TOOLS}
    with _locked():
        lay = Layout(_state_dir())
        state = _read_state(lay)
        if not state or not state.get("bootstrapped"):
            raise RuntimeError(f"no running cluster in {lay.state_dir}")
        ports = Ports(**state["ports"])
        state.pop("node_unavailable", None)
        state.update(_start_node(lay, _info(lay, ports), lay.pki, binaries, Mode.REQUIRE, images))
        _write_state(lay, state)
        return _info(lay, ports, state)


def current() -> ClusterInfo | None:
    """The recorded cluster (without starting or checking anything), if there is one."""
    lay = Layout(_state_dir())
    state = _read_state(lay)
    if not state or not state.get("bootstrapped"):
        return None
    return _info(lay, Ports(**state["ports"]), state)
