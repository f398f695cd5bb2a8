"""OCI image layouts and their tar archives: what `ctr images import` loads without a registry.

A layout is a directory holding `oci-layout`, `index.json` and `blobs/sha256/<hex>` (layers,
image config, manifest). The archive is that directory as a tar. containerd names the image it
imports after the `io.containerd.image.name` annotation of the index's manifest entry; we also
set the standard `org.opencontainers.image.ref.name` so other tools see the same name.

Layer mtimes are kept as they are: Python compares a module's mtime with its .pyc, so zeroed
mtimes would make every start recompile (or, on a read-only root, re-parse) the whole venv.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTAINERD_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


def go_arch() -> str:
    """This machine's architecture in OCI (Go) terms."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str  # "sha256:<hex>"
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def put_blob(layout: Path, data: bytes, media_type: str) -> Descriptor:
    digest = hashlib.sha256(data).hexdigest()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest).write_bytes(data)
    return Descriptor(media_type, f"sha256:{digest}", len(data))


@dataclass(frozen=True)
class LayerFile:
    """One regular file of a layer, as it lands in the image."""

    path: str  # inside the image, without the leading slash
    data: bytes
    mode: int = 0o644
    mtime: float = 0.0


def layer_tar(files: list[LayerFile]) -> bytes:
    """An uncompressed layer tar of regular files (parent directories added, owned by root)."""
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            parts = f.path.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent not in seen:
                    seen.add(parent)
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(f.mtime)
                    tar.addfile(info)
            info = tarfile.TarInfo(f.path)
            info.size, info.mode, info.mtime = len(f.data), f.mode, int(f.mtime)
            tar.addfile(info, io.BytesIO(f.data))
    return buf.getvalue()


def write_image(layout: Path, name: str, layers: list[bytes], config: dict[str, Any]) -> str:
    """A one-image layout from uncompressed layer tars and an image config's `config` section
    (Entrypoint, Cmd, Env, User...). Returns the manifest digest."""
    layout.mkdir(parents=True, exist_ok=True)
    layer_descs = []
    diff_ids = []
    for tar in layers:
        diff_ids.append(f"sha256:{hashlib.sha256(tar).hexdigest()}")
        # mtime=0 in the gzip header only: the same tar always gives the same blob.
        layer_descs.append(put_blob(layout, gzip.compress(tar, mtime=0), LAYER_GZIP))
    image_config = {
        "architecture": go_arch(), "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = put_blob(layout, _canonical(image_config), CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config_desc.as_json(),
                "layers": [d.as_json() for d in layer_descs]}
    manifest_desc = put_blob(layout, _canonical(manifest), MANIFEST)
    index = {"schemaVersion": 2, "manifests": [manifest_desc.as_json()]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps(LAYOUT_VERSION))
    return name_image(layout, name)


def name_image(layout: Path, name: str) -> str:
    """Keep only the image named `name` in the layout's index (the one entry whose OCI ref name
    is `name`, or the only entry), give it containerd's name annotation and its platform;
    returns its manifest digest.

    Layouts written by other tools (buildah's `oci:` transport) carry only the OCI ref name;
    containerd's importer wants its own annotation to keep the full reference.
    """
    index = json.loads((layout / "index.json").read_text())
    manifests = index["manifests"]
    named = [m for m in manifests if m.get("annotations", {}).get(REF_NAME) == name]
    if len(named) != 1 and len(manifests) != 1:
        raise ValueError(f"{layout}: expected one manifest named {name} in index.json, "
                         f"found {len(named)} among {len(manifests)}")
    entry = named[0] if len(named) == 1 else manifests[0]
    entry.setdefault("annotations", {}).update({CONTAINERD_NAME: name, REF_NAME: name})
    entry.setdefault("platform", {"architecture": go_arch(), "os": "linux"})
    index["manifests"] = [entry]
    (layout / "index.json").write_text(json.dumps(index))
    return str(entry["digest"])


def pack(layout: Path, archive: Path) -> None:
    """Tar the layout into `archive`, atomically (written aside, then renamed into place)."""
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)
    partial.rename(archive)


@dataclass(frozen=True)
class ArchiveInfo:
    name: str
    manifest_digest: str
    layers: list[Descriptor]
    config: dict[str, Any]

    @property
    def compressed_size(self) -> int:
        return sum(d.size for d in self.layers)


def inspect(archive: Path) -> ArchiveInfo:
    """Name, manifest digest, layers and image config of a one-image archive."""
    with tarfile.open(archive) as tar:

        def read(member: str) -> Any:
            fh = tar.extractfile(member)
            if fh is None:
                raise ValueError(f"{archive}: {member} is not a file")
            return json.load(fh)

        (entry,) = read("index.json")["manifests"]
        digest = str(entry["digest"])
        manifest = read(f"blobs/sha256/{digest.removeprefix('sha256:')}")
        config = read(f"blobs/sha256/{manifest['config']['digest'].removeprefix('sha256:')}")
    layers = [Descriptor(d["mediaType"], d["digest"], d["size"]) for d in manifest["layers"]]
    return ArchiveInfo(entry["annotations"][CONTAINERD_NAME], digest, layers, config)
