"""What the real node changes on the host, and putting it all back.

Every change is made here and undone here: the pod bridge, the FORWARD rules that keep pod
traffic on the machine, sysctls, and at teardown whatever the kubelet, containerd, the CNI
plugins and kube-proxy left (pod network namespaces and veths, mounts, pod cgroups, KUBE-*
iptables chains, /var/log/containers links). Commands are the ordinary tools (`ip`,
`iptables`, `umount`), so what teardown does can be read and repeated by hand.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from scorefleet.dev.nodeconf import NodeLayout

# Host-wide sysctls the node's parts set: the bridge plugin (ip_forward), the kubelet
# (overcommit, panic), kube-proxy (bridge-nf-call-iptables). Saved before, restored after.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Directories the kubelet and containerd create at fixed host paths whatever they are told.
HOST_DIRS = (Path("/run/netns"), Path("/run/containerd"), Path("/var/log/containers"),
             Path("/var/lib/cni"), Path("/var/lib/kubelet"))
NETNS_DIR = Path("/run/netns")
CGROUP_FS = Path("/sys/fs/cgroup")


class HostError(RuntimeError):
    pass


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    if check and proc.returncode != 0:
        raise HostError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


# --- sysctls ------------------------------------------------------------------------------
def read_sysctls(names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    out = {}
    for name in names:
        with contextlib.suppress(OSError):
            out[name] = (Path("/proc/sys") / name).read_text().strip()
    return out


def write_sysctls(values: dict[str, str]) -> list[str]:
    """Write each value; returns what could not be written (e.g. without CAP_SYS_ADMIN)."""
    failed = []
    for name, value in values.items():
        path = Path("/proc/sys") / name
        try:
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
        except OSError as err:
            failed.append(f"{name}={value}: {err.strerror}")
    return failed


def existing_host_dirs() -> list[str]:
    return [str(d) for d in HOST_DIRS if d.exists()]


# --- the bridge and FORWARD rules -----------------------------------------------------------
def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def create_bridge(lay: NodeLayout) -> None:
    if link_exists(lay.bridge):
        _run("ip", "link", "delete", lay.bridge)
    _run("ip", "link", "add", "name", lay.bridge, "type", "bridge")
    _run("ip", "addr", "add", f"{lay.node_ip}/{lay.pod_cidr.prefixlen}", "dev", lay.bridge)
    _run("ip", "link", "set", lay.bridge, "up")


def input_chain(lay: NodeLayout) -> str:
    """The chain guarding what listens on the node IP (kubelet, CoreDNS, model store, and the
    Kafka and Redis of `scorefleet up --streams`)."""
    return f"{lay.chain}-IN"


def add_forward_rules(lay: NodeLayout) -> None:
    """Drop whatever would be routed between the pod bridge and any other interface, and
    whatever reaches the node IP from anywhere but this host and its pods.

    FORWARD: pod-to-pod (bridged, seen by iptables through br_netfilter) and host-to-pod
    (OUTPUT) traffic is untouched. kube-proxy, started later, puts its own jumps (KUBE-FORWARD
    ACCEPTs marked and established traffic) before ours: `guards_first` moves ours back.
    INPUT: the node IP is a local address, and Linux accepts a packet for any local address
    on any interface (weak host model), so without this a machine on eth0's network could
    reach the servers bound to the node IP. Only lo (this host) and the bridge (pods) may.
    """
    remove_forward_rules(lay)
    _run("iptables", "-w", "-N", lay.chain)
    _run("iptables", "-w", "-A", lay.chain, "-i", lay.bridge, "!", "-o", lay.bridge, "-j", "DROP")
    _run("iptables", "-w", "-A", lay.chain, "!", "-i", lay.bridge, "-o", lay.bridge, "-j", "DROP")
    _run("iptables", "-w", "-I", "FORWARD", "1", "-j", lay.chain)
    guard = input_chain(lay)
    _run("iptables", "-w", "-N", guard)
    _run("iptables", "-w", "-A", guard, "-i", "lo", "-j", "RETURN")
    _run("iptables", "-w", "-A", guard, "-i", lay.bridge, "-j", "RETURN")
    _run("iptables", "-w", "-A", guard, "-j", "DROP")
    _run("iptables", "-w", "-I", "INPUT", "1", *_input_match(lay), "-j", guard)


def _input_match(lay: NodeLayout) -> tuple[str, ...]:
    return ("-d", f"{lay.node_ip}/32")


def guards_first(lay: NodeLayout, timeout: float = 30.0) -> None:
    """Our FORWARD and INPUT jumps first again, ahead of the ones kube-proxy inserts in its
    first sync (after that it only checks that its jumps exist, so they stay behind ours)."""
    deadline = time.monotonic() + timeout
    while "-j KUBE-FORWARD" not in _run("iptables", "-w", "-S", "FORWARD").stdout:
        if time.monotonic() > deadline:
            raise HostError(f"kube-proxy made no FORWARD rules within {timeout:.0f}s")
        time.sleep(0.2)
    for chain, match, target in (("FORWARD", (), lay.chain),
                                 ("INPUT", _input_match(lay), input_chain(lay))):
        _run("iptables", "-w", "-D", chain, *match, "-j", target)
        _run("iptables", "-w", "-I", chain, "1", *match, "-j", target)


def remove_forward_rules(lay: NodeLayout) -> None:
    while _run("iptables", "-w", "-D", "FORWARD", "-j", lay.chain, check=False).returncode == 0:
        pass
    guard = input_chain(lay)
    while _run("iptables", "-w", "-D", "INPUT", *_input_match(lay), "-j", guard,
               check=False).returncode == 0:
        pass
    for chain in (lay.chain, guard):
        _run("iptables", "-w", "-F", chain, check=False)
        _run("iptables", "-w", "-X", chain, check=False)


def remove_kube_chains() -> None:
    """Every KUBE-* chain (the kubelet's canaries and firewall, kube-proxy's rules).

    Safe only because one real node holds the machine-wide lock: these chain names are fixed.
    """
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            saved = _run(f"{tool}-save", "-t", table, check=False).stdout.splitlines()
            chains = [ln[1:].split()[0] for ln in saved
                      if ln.startswith(":") and ln[1:].startswith("KUBE-")]
            if not chains:
                continue
            for line in saved:
                parts = line.split()
                if (line.startswith("-A ") and not parts[1].startswith("KUBE-")
                        and any(c in parts for c in chains)):
                    _run(tool, "-w", "-t", table, "-D", *parts[1:], check=False)
            for chain in chains:
                _run(tool, "-w", "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(tool, "-w", "-t", table, "-X", chain, check=False)


def iptables_mentions(words: Iterable[str]) -> list[str]:
    """Rules or chains naming any of `words` (for checks that teardown removed them)."""
    found = []
    for tool in ("iptables-save", "ip6tables-save"):
        for line in _run(tool, check=False).stdout.splitlines():
            if any(w in line for w in words):
                found.append(line)
    return found


# --- pods' leftovers ------------------------------------------------------------------------
def kill_cgroup(lay: NodeLayout) -> None:
    """SIGKILL every process left in the node's cgroup root (containers, pause processes)."""
    for _ in range(20):
        pids = {int(p) for f in (CGROUP_FS / "pids" / lay.cgroup_root.lstrip("/")).rglob(
            "cgroup.procs") for p in _read(f).split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _run("sleep", "0.2")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def create_cgroups(lay: NodeLayout) -> None:
    """The kubelet's cgroupRoot must exist in every v1 hierarchy before it starts."""
    for hierarchy in CGROUP_FS.iterdir():
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        top = hierarchy / lay.cgroup_root.lstrip("/")
        top.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            # A new cpuset is empty: no process may join it until it has CPUs and memory.
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(top / name).strip():
                    (top / name).write_text(_read(hierarchy / name))


def remove_cgroups(lay: NodeLayout) -> list[str]:
    """rmdir the node's cgroup root in every hierarchy, deepest first; returns what stayed."""
    left = []
    for hierarchy in CGROUP_FS.iterdir():
        top = hierarchy / lay.cgroup_root.lstrip("/")
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        try:
            top.rmdir()
        except OSError as err:
            left.append(f"{top}: {err.strerror}")
    return left


def kill_shims(socket: Path) -> None:
    """containerd's runc shims outlive containerd by design; ours name our socket."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        argv = _read(proc / "cmdline").split("\0")
        if argv and argv[0].endswith("containerd-shim-runc-v2") and str(socket) in argv:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def mounts_under(dirs: Iterable[Path]) -> list[str]:
    roots = [str(d) for d in dirs]
    points = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == r or point.startswith(r + "/") for r in roots):
            points.append(point)
    return points


def unmount_under(dirs: Iterable[Path]) -> None:
    for point in sorted(set(mounts_under(dirs)), key=len, reverse=True):
        _run("umount", "--lazy", point, check=False)


def pod_netns(lay: NodeLayout) -> list[str]:
    """Network namespaces (containerd's cni-*) holding an address in this node's pod CIDR."""
    if not NETNS_DIR.is_dir():
        return []
    found = []
    for ns in NETNS_DIR.iterdir():
        out = _run("ip", "-n", ns.name, "-4", "-o", "addr", "show", check=False).stdout
        for word in out.split():
            if "/" in word and word[0].isdigit():
                with contextlib.suppress(ValueError):
                    if ipaddress.ip_interface(word).ip in lay.pod_cidr:
                        found.append(ns.name)
                        break
    return found


def remove_network(lay: NodeLayout) -> None:
    """Pod netns (their veths go with them), any veth still on the bridge, the bridge."""
    for ns in pod_netns(lay):
        _run("ip", "netns", "delete", ns, check=False)
    if link_exists(lay.bridge):
        for port in (Path("/sys/class/net") / lay.bridge / "brif").iterdir():
            _run("ip", "link", "delete", port.name, check=False)
        _run("ip", "link", "delete", lay.bridge, check=False)
    remove_forward_rules(lay)


def remove_host_files(lay: NodeLayout, existed_before: Iterable[str]) -> None:
    """The kubelet's /var/log/containers links into our pod logs, CNI result caches of our
    network, and the fixed host directories that did not exist before the node started."""
    logs = Path("/var/log/containers")
    if logs.is_dir():
        for link in logs.iterdir():
            with contextlib.suppress(OSError):
                if str(os.readlink(link)).startswith(str(lay.pod_logs)):
                    link.unlink()
    results = Path("/var/lib/cni/results")
    if results.is_dir():
        # <network>-<sandbox id>-<ifname>: ours, and containerd's loopback of our sandboxes.
        prefix = f"scorefleet-{lay.tag}-"
        for f in results.glob(prefix + "*"):
            sandbox = f.name.removeprefix(prefix).rsplit("-", 1)[0]
            (results / f"cni-loopback-{sandbox}-lo").unlink(missing_ok=True)
            f.unlink(missing_ok=True)
    before = set(existed_before)
    for d in HOST_DIRS:
        if str(d) not in before and d.exists():
            _rmdir_empty_tree(d)


def _rmdir_empty_tree(top: Path) -> None:
    """Remove top and its subdirectories if they hold no files, only stale sockets (the
    kubelet's device-plugin socket lives at a fixed path whatever its --root-dir)."""
    for f in top.rglob("*"):
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(f.lstat().st_mode):
                f.unlink()
    for d in sorted((p for p in top.rglob("*") if p.is_dir() and not p.is_symlink()),
                    key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()
