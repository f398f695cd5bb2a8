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
import fcntl
import functools
import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scorefleet.dev import bootstrap, build, components, health, kubeconfig, paths, pki, processes
from scorefleet.dev.components import START_ORDER, Layout, Ports

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


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    running: bool
    healthy: bool
    log: Path


def _state_dir() -> Path:
    return paths.cluster_dir()


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    state_dir = _state_dir()
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = state_dir.with_name(state_dir.name + ".lock")
    with lock.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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


def _info(lay: Layout, ports: Ports) -> ClusterInfo:
    return ClusterInfo(
        kubeconfig=lay.kubeconfig,
        server=ports.server,
        bin_dir=paths.path_dir(),
        state_dir=lay.state_dir,
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
    return out


def status() -> list[ComponentStatus]:
    """Each recorded component's pid, liveness and health; empty when nothing is recorded."""
    lay = Layout(_state_dir())
    state = _read_state(lay)
    return _statuses(lay, state) if state else []


def _healthy(lay: Layout) -> ClusterInfo | None:
    state = _read_state(lay)
    if not state or not state.get("bootstrapped"):
        return None
    if not all(s.healthy for s in _statuses(lay, state)):
        return None
    return _info(lay, Ports(**state["ports"]))


def _stop_processes(lay: Layout) -> None:
    """Stop every recorded process, in reverse start order."""
    state = _read_state(lay) or {}
    recorded = state.get("components", {})
    for name in reversed(START_ORDER):
        proc = recorded.get(name)
        if proc:
            processes.terminate(int(proc["pid"]), proc["binary"])


def _teardown(lay: Layout) -> None:
    _stop_processes(lay)
    shutil.rmtree(lay.state_dir, ignore_errors=True)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(lay: Layout, binaries: dict[str, Path]) -> ClusterInfo:
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
    _bootstrap(info, files)
    state["bootstrapped"] = True
    _write_state(lay, state)
    return info


def _bootstrap(info: ClusterInfo, files: pki.PkiFiles) -> None:
    started = time.monotonic()
    bootstrap.create_nodes(info.bin_dir, info.kubeconfig)
    bootstrap.apply_gateway_crds(info.bin_dir, info.kubeconfig, build.gateway_api_crd_dir())
    health.wait_until(
        "kwok nodes Ready",
        lambda: health.nodes_ready(info.server, files, bootstrap.NODE_NAMES),
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


def ensure_up(attempts: int = 2) -> ClusterInfo:
    """Build what is missing, start the cluster unless it is already healthy, and return it.

    A failed start is retried once from scratch: ports are picked free but only bound a
    moment later, and other clusters on the machine (tests start their own) can take one
    in between.
    """
    built = build.build_all()
    binaries = {b.tool.name: b.path for b in built}
    with _locked():
        lay = Layout(_state_dir())
        info = _healthy(lay)
        if info is not None:
            return info
        for attempt in range(1, attempts + 1):
            _teardown(lay)
            try:
                return _start(lay, binaries)
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
