"""A minimal DNS A-record query over UDP (stdlib only), to ask the cluster DNS directly."""

from __future__ import annotations

import random
import socket
import struct

NOERROR = 0
NXDOMAIN = 3
REFUSED = 5


def _skip_name(data: bytes, i: int) -> int:
    while True:
        length = data[i]
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return i + 2
        if length == 0:
            return i + 1
        i += 1 + length


def query(server: str, name: str, port: int = 53, timeout: float = 3.0) -> tuple[int, list[str]]:
    """(rcode, sorted A addresses) for name, asked of server only."""
    ident = random.randrange(1 << 16)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    packet = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + b"\0" + \
        struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, port))
        data = s.recv(4096)
    got_id, flags, qd, an = struct.unpack(">HHHH", data[:8])
    assert got_id == ident
    i = 12
    for _ in range(qd):
        i = _skip_name(data, i) + 4
    addresses = []
    for _ in range(an):
        i = _skip_name(data, i)
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", data[i:i + 10])
        i += 10
        if rtype == 1:
            addresses.append(socket.inet_ntoa(data[i:i + length]))
        i += length
    return flags & 0xF, sorted(addresses)
