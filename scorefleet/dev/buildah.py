"""The project's Dockerfile, built by buildah (Debian's package) with no registry and no daemon.

- storage of our own under the image cache (overlay driver), never the machine's default;
- chroot isolation and the host network: the build runs as root on a machine without a
  container engine, and only the RUN steps that call pip reach out (to PyPI);
- `--pull-never` and the base passed as the Dockerfile's PYTHON_IMAGE build arg: the base is the
  debootstrap root filesystem, committed into that storage as a local image;
- the host's CA bundle is mounted read-only over the build containers' bundle for the RUN steps
  only: pip then trusts what the host trusts (a TLS-inspecting egress proxy here), and nothing
  of it lands in an image layer;
- `--layers`: unchanged steps (the build-tools venv) are reused from the previous build.

The result is pushed to an OCI layout directory (`oci:` transport, gzip layers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from scorefleet.dev import debian_base

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STORAGE_DRIVER = "overlay"


class BuildahError(RuntimeError):
    pass


def binary() -> str:
    found = shutil.which("buildah")
    if found is None:
        raise BuildahError("buildah is not installed (scripts/setup.sh installs Debian's buildah)")
    return found


def version() -> str:
    return subprocess.run([binary(), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def host_ca_bundle() -> Path | None:
    """The CA bundle the host's own pip uses (PIP_CERT, SSL_CERT_FILE, else Debian's)."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      str(CA_BUNDLE)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class Buildah:
    def __init__(self, storage: Path, log: Path) -> None:
        self.storage = storage
        self.log = log

    def _cmd(self, *args: str) -> list[str]:
        return [binary(), "--root", str(self.storage / "root"), "--runroot",
                str(self.storage / "run"), "--storage-driver", STORAGE_DRIVER, *args]

    def run(self, *args: str, check: bool = True, capture: bool = False
            ) -> subprocess.CompletedProcess[str]:
        """Run buildah with our storage; its output goes to the log as it comes (a cold
        build takes minutes), unless `capture` (then stdout is returned)."""
        started = time.monotonic()
        with self.log.open("a") as out:
            out.write(f"$ buildah {' '.join(args)}\n")
            out.flush()
            proc = subprocess.run(self._cmd(*args),
                                  stdout=subprocess.PIPE if capture else out, stderr=out,
                                  text=True, check=False)
            out.write(f"# buildah {args[0]}: exit {proc.returncode} after "
                      f"{time.monotonic() - started:.1f}s\n")
        if check and proc.returncode != 0:
            raise BuildahError(f"buildah {args[0]} failed ({proc.returncode}); see {self.log}:\n"
                               + self.log.read_text()[-3000:])
        return proc

    def has_image(self, name: str) -> bool:
        return self.run("inspect", "--type", "image", name, check=False).returncode == 0

    def import_rootfs(self, rootfs_tar: Path, name: str) -> None:
        """A one-layer image from a root filesystem tar (ADD unpacks it), with a base image's
        usual environment."""
        container = self.run("from", "--pull-never", "scratch", capture=True).stdout.strip()
        try:
            self.run("add", container, str(rootfs_tar), "/")
            config = ["config"]
            for env in debian_base.ENV:
                config += ["--env", env]
            self.run(*config, "--cmd", "python3", container)
            self.run("commit", "--rm", container, name)
        except BuildahError:
            self.run("rm", container, check=False)
            raise

    def build(self, context: Path, dockerfile: Path, name: str, build_args: dict[str, str]
              ) -> None:
        args = ["bud", "--isolation", "chroot", "--network", "host", "--pull-never", "--layers",
                "--format", "oci", "-f", str(dockerfile), "-t", name]
        ca = host_ca_bundle()
        if ca is not None:
            args += ["--volume", f"{ca}:{CA_BUNDLE}:ro"]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        self.run(*args, str(context))

    def push_layout(self, name: str, layout: Path) -> None:
        """Copy the image into a new OCI layout directory (gzip-compressed layers)."""
        shutil.rmtree(layout, ignore_errors=True)
        self.run("push", "--format", "oci", name, f"oci:{layout}:{name}")
