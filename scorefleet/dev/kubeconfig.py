"""Rendering the admin kubeconfig (pure): certificate data embedded, one context.

Embedded `*-data` rather than file paths so the file stays valid when copied, and because
both Kopf's and the kubernetes client's loaders read it.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

CONTEXT = "scorefleet-dev"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str = "admin") -> str:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cert_pem),
                    "client-key-data": _b64(key_pem),
                },
            }
        ],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write(path: Path, server: str, ca: Path, cert: Path, key: Path) -> Path:
    path.write_text(render(server, ca.read_bytes(), cert.read_bytes(), key.read_bytes()))
    path.chmod(0o600)
    return path
