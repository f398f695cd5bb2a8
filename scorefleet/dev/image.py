"""The images the real node runs, built on this machine without a registry, and their import
into containerd.

    images = build_images()                  # cached; rebuilt only when an input changed
    import_images(images, ctr, address)      # `ctr -n k8s.io images import` each, idempotent

- pause: pause/pause.c compiled static, one layer (pause_image.py);
- scorer: the repository's Dockerfile built by buildah (buildah.py) on a Debian bookworm base
  made with debootstrap (debian_base.py), passed as the Dockerfile's PYTHON_IMAGE; named
  scorefleet.api.spec.DEFAULT_SCORER_IMAGE, which is what the operator writes into scorer pods.

Each image is an OCI layout tar under <cache>/images, named after a hash of everything that
goes into it: for the scorer, the Dockerfile, .dockerignore, every file of the build context,
the base's recipe and buildah's version. Builds take a lock of their own, so test sessions and
`scorefleet up`s started together build once. The dependencies pip resolves from PyPI are not
part of the key: an image is rebuilt when our inputs change, not when PyPI does.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from scorefleet.api.spec import DEFAULT_SCORER_IMAGE
from scorefleet.dev import buildah, debian_base, locks, oci, paths, pause_image
from scorefleet.dev.dockerfile import DockerIgnore

REPO = Path(__file__).resolve().parents[2]
# Bump when the way images are built here changes in a way the hashed inputs do not show.
RECIPE_VERSION = 1
KEEP_ARCHIVES = 8  # per image: other checkouts' (worktrees') versions stay cached too
# buildah keeps every step of every build (--layers); past this size, the steps no tagged
# image needs are dropped, the cached deps and build-tools stages with them (the next build
# installs them again, ~1-4 min). Several checkouts building on one machine fill 4 GB within
# a few builds, hence the margin.
BUILDAH_STORAGE_LIMIT = 12 << 30
NAMESPACE = "k8s.io"  # the CRI plugin's containerd namespace: what the kubelet sees


class ImageBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    name: str
    archive: Path  # an OCI image layout tar
    digest: str  # the manifest's, as containerd reports it after import
    compressed_bytes: int  # the layers as stored in the archive (gzip)
    unpacked_bytes: int  # the layers as tars
    seconds: float  # spent building it in this call (0 when cached)

    @property
    def cached(self) -> bool:
        return self.seconds == 0.0


@dataclass(frozen=True)
class ImageSet:
    pause: Image
    scorer: Image

    def __iter__(self) -> Iterator[Image]:
        return iter((self.pause, self.scorer))


def images_root() -> Path:
    return paths.cache_root() / "images"


def _lock() -> contextlib.AbstractContextManager[None]:
    return locks.exclusive(images_root() / "build.lock")


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def context_key(repo: Path = REPO) -> str:
    """The Dockerfile, .dockerignore and every file of the build context (path, mode, bytes)."""
    ignore = DockerIgnore.read(repo / ".dockerignore")
    parts = [(repo / "Dockerfile").read_bytes(), (repo / ".dockerignore").read_bytes()]
    for path in ignore.files(repo):
        executable = os.access(path, os.X_OK)
        parts.append(f"{path.relative_to(repo).as_posix()}:{int(executable)}".encode())
        parts.append(path.read_bytes())
    return _digest(*parts)


def _unpacked_bytes(layout_archive: Path) -> int:
    """The layers' size as tars. Measuring means decompressing them, so sizes are remembered
    by layer digest: a rebuild measures only its new layers."""
    import tarfile

    known_path = images_root() / "layer-sizes.json"
    known: dict[str, int] = json.loads(known_path.read_text()) if known_path.exists() else {}
    total = 0
    with tarfile.open(layout_archive) as tar:
        for layer in oci.inspect(layout_archive).layers:
            if layer.digest not in known:
                fh = tar.extractfile(f"blobs/sha256/{layer.digest.removeprefix('sha256:')}")
                if fh is None:
                    raise ImageBuildError(f"{layout_archive}: layer {layer.digest} missing")
                stream = gzip.GzipFile(fileobj=fh) if layer.media_type.endswith("+gzip") else fh
                size = 0
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                known[layer.digest] = size
            total += known[layer.digest]
    partial = known_path.with_name(f".{known_path.name}.{os.getpid()}")
    partial.write_text(json.dumps(known))
    partial.rename(known_path)
    return total


def _finish(archive: Path, seconds: float) -> Image:
    """Describe an archive, with its sizes kept beside it (measuring means reading it all)."""
    info = oci.inspect(archive)
    sizes = archive.with_suffix(".json")
    if not sizes.exists():
        partial = sizes.with_name(f".{sizes.name}.{os.getpid()}")
        partial.write_text(json.dumps({"unpacked": _unpacked_bytes(archive)}))
        partial.rename(sizes)
    os.utime(archive)  # most recently used: the pruning below keeps it
    return Image(info.name, archive, info.manifest_digest, info.compressed_size,
                 json.loads(sizes.read_text())["unpacked"], seconds)


def _prune(kind: str) -> None:
    archives = sorted(images_root().glob(f"{kind}-*.tar"), key=lambda p: p.stat().st_mtime,
                      reverse=True)
    for old in archives[KEEP_ARCHIVES:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)


def _disk_usage(path: Path) -> int:
    proc = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=False)
    return int(proc.stdout.split()[0]) if proc.returncode == 0 and proc.stdout else 0


def _pause_archive() -> Path:
    return images_root() / f"pause-{pause_image.cache_key()[:16]}.tar"


def _scorer_key() -> tuple[str, str]:
    """(the build context's digest, the scorer image's cache key)."""
    recipe = (debian_base.cache_key(debian_base.find_mirror()), buildah.version(),
              str(RECIPE_VERSION))
    context = context_key()
    return context, _digest(context.encode(), *(part.encode() for part in recipe))[:16]


def _pause(out: TextIO) -> Image:
    archive = _pause_archive()
    started = time.monotonic()
    seconds = 0.0
    if not archive.exists():
        pause_image.build(archive)
        seconds = time.monotonic() - started
        _prune("pause")
    return _report(_finish(archive, seconds), out)


def _base(tool: buildah.Buildah, out: TextIO) -> str:
    """The debootstrap base as a local image in buildah's storage; returns its name."""
    mirror = debian_base.find_mirror()
    key = debian_base.cache_key(mirror)[:16]
    name = f"localhost/scorefleet/debian-python:{debian_base.SUITE}-{key}"
    rootfs = images_root() / f"base-{key}.tar"
    started = time.monotonic()
    cached = True
    if not rootfs.exists():
        print(f"image base    debootstrap {debian_base.SUITE} from {mirror.uri} ...",
              file=out, flush=True)
        debian_base.build(rootfs, mirror, images_root() / "logs" / f"base-{key}.log")
        cached = False
    if not tool.has_image(name):
        tool.import_rootfs(rootfs, name)
        cached = False
    note = "cached" if cached else f"built in {time.monotonic() - started:.1f}s"
    print(f"image base    {name:<44} {note:<16} {rootfs.stat().st_size / 1e6:.0f} MB (rootfs tar)",
          file=out, flush=True)
    return name


def _scorer(out: TextIO) -> Image:
    if not (REPO / "Dockerfile").exists():
        raise ImageBuildError(f"no Dockerfile in {REPO}: images are built from a checkout")
    # A file edited while buildah reads the context would give an image matching no key: the
    # key is taken again after the build, and a mismatch builds again (twice at most).
    for _ in range(3):
        context, key = _scorer_key()
        archive = images_root() / f"scorer-{key}.tar"
        if archive.exists():
            return _report(_finish(archive, 0.0), out)
        image = _build_scorer(key, context, archive, out)
        if image is not None:
            return _report(image, out)
        print("image scorer  the build context changed during the build: again", file=out,
              flush=True)
    raise ImageBuildError("the build context kept changing during the scorer image's build")


def _build_scorer(key: str, context: str, archive: Path, out: TextIO) -> Image | None:
    """buildah bud, then the OCI archive; None when the context changed meanwhile."""
    if os.geteuid() != 0:
        raise ImageBuildError("building the scorer image needs root (debootstrap, buildah)")
    storage = images_root() / "buildah"
    logs = images_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tool = buildah.Buildah(storage, logs / f"scorer-{key}.log")
    tool.log.unlink(missing_ok=True)
    # Working containers left by a build that was killed would pin their images forever.
    tool.run("rm", "--all", check=False)
    base = _base(tool, out)
    print(f"image scorer  buildah bud {REPO / 'Dockerfile'} (log: {tool.log}) ...", file=out,
          flush=True)
    tool.build(REPO, REPO / "Dockerfile", DEFAULT_SCORER_IMAGE, {"PYTHON_IMAGE": base})
    if context_key() != context:
        return None
    layout = images_root() / f".scorer-{key}.layout"
    try:
        tool.push_layout(DEFAULT_SCORER_IMAGE, layout)
        oci.name_image(layout, DEFAULT_SCORER_IMAGE)
        oci.pack(layout, archive)
    finally:
        subprocess.run(["rm", "-rf", str(layout)], check=False)
    image = _finish(archive, time.monotonic() - started)
    _prune("scorer")
    if _disk_usage(storage) > BUILDAH_STORAGE_LIMIT:
        tool.run("rmi", "--prune", check=False)
    return image


def _report(image: Image, out: TextIO) -> Image:
    kind = "pause" if image.name == pause_image.NAME else "scorer"
    note = "cached" if image.cached else f"built in {image.seconds:.1f}s"
    print(f"image {kind:<7} {image.name:<44} {note:<16} "
          f"{image.compressed_bytes / 1e6:.1f} MB gz, {image.unpacked_bytes / 1e6:.1f} MB "
          f"unpacked  {image.archive}", file=out, flush=True)
    return image


def _cached() -> ImageSet | None:
    """Both images, when both archives are already there: no lock needed (archives appear by
    rename, complete), so a cache hit never waits for another checkout's build."""
    pause, scorer = _pause_archive(), images_root() / f"scorer-{_scorer_key()[1]}.tar"
    if not all(p.exists() and p.with_suffix(".json").exists() for p in (pause, scorer)):
        return None
    try:
        return ImageSet(pause=_finish(pause, 0.0), scorer=_finish(scorer, 0.0))
    except FileNotFoundError:  # pruned by another build in between
        return None


def build_images(out: TextIO | None = None) -> ImageSet:
    """Build (or find cached) the pause and scorer images; prints one timing line per image."""
    stream = out if out is not None else sys.stderr
    started = time.monotonic()
    cached = _cached()
    if cached is not None:
        images = ImageSet(pause=_report(cached.pause, stream),
                          scorer=_report(cached.scorer, stream))
    else:
        with _lock():
            images = ImageSet(pause=_pause(stream), scorer=_scorer(stream))
    print(f"build_images: {time.monotonic() - started:.1f}s", file=stream, flush=True)
    return images


# -- containerd -----------------------------------------------------------------------------------
def _ctr(ctr: Path, address: Path, *args: str, namespace: str = NAMESPACE
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ctr), "-a", str(address), "-n", namespace, *args],
                          capture_output=True, text=True, check=False)


def imported_digest(image: Image, ctr: Path, address: Path, namespace: str = NAMESPACE
                    ) -> str | None:
    """The manifest digest containerd holds under the image's name, if any."""
    proc = _ctr(ctr, address, "images", "ls", f"name=={image.name}", namespace=namespace)
    if proc.returncode != 0:
        raise ImageBuildError(f"ctr images ls failed: {proc.stderr.strip()}")
    for line in proc.stdout.splitlines()[1:]:  # REF TYPE DIGEST SIZE PLATFORMS LABELS
        words = line.split()
        if len(words) >= 3 and words[0] == image.name:
            return words[2]
    return None


def import_images(images: ImageSet, ctr: Path, address: Path, namespace: str = NAMESPACE,
                  out: TextIO | None = None) -> None:
    """`ctr -a ADDRESS -n k8s.io images import ARCHIVE` for each image containerd does not
    already hold at the same digest (so calling it again costs one `ctr images ls` each)."""
    stream = out if out is not None else sys.stderr
    for image in images:
        if imported_digest(image, ctr, address, namespace) == image.digest:
            continue
        started = time.monotonic()
        proc = _ctr(ctr, address, "images", "import", str(image.archive), namespace=namespace)
        if proc.returncode != 0:
            raise ImageBuildError(f"ctr images import {image.archive} failed:\n"
                                  f"{proc.stdout}{proc.stderr}")
        found = imported_digest(image, ctr, address, namespace)
        if found != image.digest:
            raise ImageBuildError(f"after importing {image.archive}, containerd holds "
                                  f"{image.name} at {found}, expected {image.digest}")
        print(f"import {image.name:<44} {time.monotonic() - started:.1f}s", file=stream,
              flush=True)
