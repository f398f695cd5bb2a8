"""What the operator last confirmed each child to be, so a steady reconcile needs no dry run.

The reconcile compares each child it wants with the live one through a server-side-apply dry
run: the API server's answer (defaults filled in) against the live object. That is one request
per child per reconcile, half of what a steady resync cost (docs/scale.md). But a Kubernetes
object does not change without its `resourceVersion` changing, so once a child has been
confirmed equal to a manifest (by a dry run, or because the operator just applied it), the
same manifest against the same resourceVersion needs no second look: the answer would be the
same. Anything else (a hand edit, a status update, another controller's write, a new manifest,
an operator restart with an empty memory) goes through the dry run as before.

Only the manifest's digest and the resourceVersion are kept: a few dozen bytes per child.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

Key = tuple[str, str, str]  # kind, namespace, name


def digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def _key(obj: dict[str, Any], kind: str) -> Key:
    meta = obj["metadata"]
    return kind, meta["namespace"], meta["name"]


class Confirmed:
    def __init__(self) -> None:
        self._seen: dict[Key, tuple[str, str]] = {}
        self._guard = threading.Lock()

    def unchanged(self, manifest: dict[str, Any], live: dict[str, Any]) -> bool:
        """Was `live`, at its current resourceVersion, confirmed to be what `manifest` asks?"""
        version = live.get("metadata", {}).get("resourceVersion")
        with self._guard:
            seen = self._seen.get(_key(manifest, manifest["kind"]))
        return version is not None and seen == (version, digest(manifest))

    def record(self, manifest: dict[str, Any], obj: dict[str, Any]) -> None:
        """`obj` (live or just applied) is what `manifest` asks for."""
        version = obj.get("metadata", {}).get("resourceVersion")
        if version is None:
            return
        with self._guard:
            self._seen[_key(manifest, manifest["kind"])] = (version, digest(manifest))

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._guard:
            self._seen.pop((kind, namespace, name), None)

    def __len__(self) -> int:
        return len(self._seen)
