"""Fetching model artifacts (file://, http://, https://) and verifying their sha256.

A digest mismatch is the one failure that must never be "retried into success": the bytes are
not the model the operator asked for, so the load fails with both digests in the message.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

# Large enough for any tree ensemble or MLP we expect; bounds memory if a URL serves garbage.
MAX_ARTIFACT_BYTES = 1 << 30
HTTP_TIMEOUT_SECONDS = 30.0


class ArtifactError(Exception):
    """The artifact could not be fetched or is not the expected bytes."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_digest(data: bytes, expected: str | None, uri: str) -> str:
    """Return the actual sha256; raise if an expected digest is given and differs."""
    actual = sha256_hex(data)
    if expected is not None and actual != expected.lower():
        raise ArtifactError(
            f"sha256 mismatch for {uri}: expected {expected.lower()}, got {actual} "
            f"({len(data)} bytes); refusing to load"
        )
    return actual


def _read_file(uri: str) -> bytes:
    parsed = urllib.parse.urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise ArtifactError(f"{uri}: file:// URIs must be local (file:///path), "
                            f"got host {parsed.netloc!r}")
    path = Path(urllib.parse.unquote(parsed.path))
    try:
        size = path.stat().st_size
        if size > MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"{uri}: {size} bytes exceeds the {MAX_ARTIFACT_BYTES} limit")
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read {uri}: {exc.strerror or exc}") from exc


def _read_http(uri: str) -> bytes:
    request = urllib.request.Request(uri, headers={"User-Agent": "scorefleet-scorer"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            data: bytes = response.read(MAX_ARTIFACT_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ArtifactError(f"cannot fetch {uri}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ArtifactError(f"cannot fetch {uri}: {reason}") from exc
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ArtifactError(f"{uri}: larger than the {MAX_ARTIFACT_BYTES} byte limit")
    return data


def fetch(uri: str, expected_sha256: str | None) -> tuple[bytes, str]:
    """The artifact's bytes and their sha256, verified against ``expected_sha256`` if given."""
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "file":
        data = _read_file(uri)
    elif scheme in ("http", "https"):
        data = _read_http(uri)
    else:
        raise ArtifactError(f"{uri}: unsupported scheme {scheme!r} (use file, http or https)")
    return data, verify_digest(data, expected_sha256, uri)
