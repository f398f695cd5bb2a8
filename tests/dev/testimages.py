"""Throwaway OCI images for node tests: one static Go program (testimage/main.go), no base.

The pause image (pod sandboxes) and a tiny HTTP app are the same binary with different
entrypoints, written as OCI layout archives that `ctr images import` loads. These test the
node itself (pods, probes, Services, DNS, logs, exec); scorer pods run the project's image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from scorefleet.dev.node import ImageSource

HERE = Path(__file__).resolve().parent
PAUSE = "localhost/scorefleet-test/pause:1"
APP = "localhost/scorefleet-test/app:1"


def build_binary(out: Path) -> Path:
    go = shutil.which("go")
    assert go, "go is needed to build the test image"
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
    subprocess.run([go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(out),
                    str(HERE / "testimage" / "main.go")], env=env, check=True, cwd=out.parent,
                   capture_output=True, timeout=300)
    return out


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def oci_archive(out: Path, name: str, binary: Path, entrypoint: list[str]) -> Path:
    """An OCI layout tar with one layer holding /app; annotated with its image name."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as tar:
        info = tar.gettarinfo(str(binary), arcname="app")
        info.mode = 0o755
        info.uid = info.gid = 0
        with binary.open("rb") as fh:
            tar.addfile(info, fh)
    layer = layer_buf.getvalue()
    blobs: dict[str, bytes] = {}
    layer_desc = _blob(blobs, layer, "application/vnd.oci.image.layer.v1.tar")
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    config_desc = _blob(blobs, json.dumps(config).encode(),
                        "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer_desc]}
    manifest_desc = _blob(blobs, json.dumps(manifest).encode(),
                          "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {"io.containerd.image.name": name,
                                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps(index).encode()}
    files |= {f"blobs/sha256/{d.split(':')[1]}": b for d, b in blobs.items()}
    with tarfile.open(out, "w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def image_source(workdir: Path) -> ImageSource:
    """The test pause and app images, imported into the node's containerd."""
    workdir.mkdir(parents=True, exist_ok=True)
    binary = build_binary(workdir / "app")
    archives = [oci_archive(workdir / "pause.tar", PAUSE, binary, ["/app", "pause"]),
                oci_archive(workdir / "app.tar", APP, binary, ["/app"])]

    def load(ctr: Path, socket: Path) -> None:
        for archive in archives:
            subprocess.run([str(ctr), "--address", str(socket), "-n", "k8s.io", "images",
                            "import", str(archive)], check=True, capture_output=True, timeout=120)

    return ImageSource(pause=PAUSE, load=load)
