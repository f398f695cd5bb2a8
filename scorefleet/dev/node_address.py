"""The real node's bridge address, as a place for host servers that pods must reach.

Pods on the real node cannot reach this host's 127.0.0.1 (inside a pod it is the pod's own
loopback); they reach the host on the node IP, the address of the pod bridge (nodeconf.py).
Kafka and Redis listen there as well when the cluster has a real node. A typo or a stale
address must never make them listen on an interface other machines reach, so the address is
checked first: it must be a private IPv4 address held by a bridge of this host. What may reach
that address is limited by the node's INPUT guard (hostnet.add_forward_rules): this host and
its pods only.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from pathlib import Path


class NodeAddressError(ValueError):
    """The address is not a local bridge's address; the message says what it is instead."""


def interface_of(ip: str) -> str | None:
    """The local interface that holds ``ip``, or None."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         check=False, timeout=10).stdout
    for line in out.splitlines():
        words = line.split()
        # "<index>: <ifname> inet <addr>/<prefix> ..."
        if len(words) >= 4 and words[2] == "inet" and words[3].split("/")[0] == ip:
            return words[1]
    return None


def check(ip: str) -> str:
    """``ip`` if it is a private IPv4 address held by a bridge of this host; else raises."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise NodeAddressError(f"{ip!r} is not an IPv4 address") from None
    if addr.is_loopback or not addr.is_private:
        raise NodeAddressError(f"{ip} is not a private non-loopback address (the node IP is "
                               "the pod bridge's, e.g. 10.165.0.1)")
    name = interface_of(ip)
    if name is None:
        raise NodeAddressError(f"{ip} is not an address of this host (is the real node up?)")
    if not (Path("/sys/class/net") / name / "bridge").is_dir():
        raise NodeAddressError(f"{ip} belongs to {name}, which is not a bridge: only the real "
                               "node's pod bridge is allowed")
    return ip


def free_port(ip: str) -> int:
    """A port free on ``ip`` just now (closed again before the caller binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        port: int = s.getsockname()[1]
        return port
