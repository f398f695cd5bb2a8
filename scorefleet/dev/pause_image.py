"""The pod sandbox ("pause") image, built here: pause/pause.c compiled static, one file per image.

No registry is reachable from the development machines or CI, so the kubelet's usual
registry.k8s.io/pause cannot be pulled; containerd's CRI `sandbox_image` points at this one.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from scorefleet.dev import oci

SOURCE = Path(__file__).with_name("pause") / "pause.c"
# The tag follows the upstream pause release whose behaviour this reproduces (sleep, reap
# children, exit 0 on TERM/INT); the name says it is ours.
NAME = "localhost/scorefleet/pause:3.10"
CFLAGS = ["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror"]


class PauseBuildError(RuntimeError):
    pass


def compiler() -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise PauseBuildError("no C compiler: install gcc and libc6-dev (scripts/setup.sh does)")
    return cc


def cache_key() -> str:
    """Source, flags and compiler version: what the binary depends on."""
    cc = compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(CFLAGS).encode(), version.encode(),
                 oci.go_arch().encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def build(archive: Path) -> str:
    """Compile pause.c and write its one-layer image as an OCI archive; returns the manifest
    digest."""
    with tempfile.TemporaryDirectory(prefix="pause-", dir=archive.parent) as tmp:
        binary = Path(tmp) / "pause"
        proc = subprocess.run([compiler(), *CFLAGS, "-o", str(binary), str(SOURCE)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PauseBuildError(f"gcc {SOURCE} failed:\n{proc.stderr}")
        layer = oci.layer_tar([oci.LayerFile("pause", binary.read_bytes(), 0o755,
                                             SOURCE.stat().st_mtime)])
        layout = Path(tmp) / "layout"
        digest = oci.write_image(layout, NAME, [layer], {"Entrypoint": ["/pause"]})
        oci.pack(layout, archive)
    return digest
