"""Probing component health and reading the API over HTTPS with the admin certificate.

Plain urllib rather than the kubernetes client: `up` polls often, and this module is also
what the CLI's `status` uses, so it must not need anything beyond the standard library.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from scorefleet.dev.components import Health
from scorefleet.dev.pki import PkiFiles


def admin_context(pki: PkiFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return ctx


def _unverified_context() -> ssl.SSLContext:
    # The controller-manager and scheduler serve a self-signed cert generated in memory;
    # only "does it answer 200" matters here, on loopback.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def get(url: str, ctx: ssl.SSLContext | None, timeout: float = 3.0) -> tuple[int, bytes]:
    """GET url; (status, body), with status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


def probe(h: Health, pki: PkiFiles) -> bool:
    if h.url.startswith("http://"):
        ctx = None
    elif h.authenticated:
        ctx = admin_context(pki)
    else:
        ctx = _unverified_context()
    status, _ = get(h.url, ctx)
    return status == 200


def get_json(server: str, path: str, pki: PkiFiles) -> dict[str, Any] | None:
    status, body = get(f"{server}{path}", admin_context(pki))
    if status != 200:
        return None
    data: dict[str, Any] = json.loads(body)
    return data


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.2,
) -> None:
    """Poll check() until it holds; fail fast if alive() says the process behind it died."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if not alive():
            raise RuntimeError(f"{what}: the process exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(interval)


def nodes_ready(server: str, pki: PkiFiles, names: tuple[str, ...]) -> bool:
    data = get_json(server, "/api/v1/nodes", pki)
    if data is None:
        return False
    ready = {
        n["metadata"]["name"]
        for n in data.get("items", [])
        for c in n.get("status", {}).get("conditions", [])
        if c.get("type") == "Ready" and c.get("status") == "True"
    }
    return set(names) <= ready
