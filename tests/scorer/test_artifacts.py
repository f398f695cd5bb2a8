"""Artifact fetching and sha256 verification (file:// and a local http server)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from scorefleet.scorer.artifacts import ArtifactError, fetch, verify_digest


def test_verify_digest_accepts_match_and_none() -> None:
    digest = hashlib.sha256(b"abc").hexdigest()
    assert verify_digest(b"abc", digest, "x") == digest
    assert verify_digest(b"abc", None, "x") == digest


def test_verify_digest_mismatch_names_both() -> None:
    with pytest.raises(ArtifactError, match=r"sha256 mismatch .* expected 0+, got ba7816bf"):
        verify_digest(b"abc", "0" * 64, "file:///m.onnx")


def test_file_uri(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"model")
    data, digest = fetch(path.as_uri(), hashlib.sha256(b"model").hexdigest())
    assert data == b"model" and len(digest) == 64
    with pytest.raises(ArtifactError, match="cannot read"):
        fetch((tmp_path / "missing.onnx").as_uri(), None)


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[str]:
    handler = partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_uri(tmp_path: Path, http_dir: str) -> None:
    (tmp_path / "m.onnx").write_bytes(b"model")
    data, _ = fetch(f"{http_dir}/m.onnx", hashlib.sha256(b"model").hexdigest())
    assert data == b"model"
    with pytest.raises(ArtifactError, match="HTTP 404"):
        fetch(f"{http_dir}/missing.onnx", None)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        fetch(f"{http_dir}/m.onnx", "1" * 64)
