"""The image's base: Debian bookworm with its python3 (3.11), made with debootstrap.

No image registry is reachable from the development machines or CI, so `python:3.11-slim`
cannot be pulled; Debian's package mirror can. The mirror is the one this machine's apt already
uses (read from /etc/apt/sources.list*), never a host name of our own. The root filesystem is
cached as a tar keyed by everything that shapes it, so debootstrap runs once per machine.

What the Dockerfile's stages need from a Python base image, and so what is included:
`python` (python-is-python3), `python -m venv` (python3-venv), `python -m pip` (python3-pip,
which brings ca-certificates), and `groupadd`/`useradd` (passwd, part of minbase).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scorefleet.dev import oci

SUITE = "bookworm"  # Debian 12: python3 is 3.11, the project's requires-python floor
VARIANT = "minbase"
INCLUDE = ("python3", "python3-venv", "python3-pip", "python-is-python3")
# Dropped from the root filesystem after debootstrap: package indexes and downloaded .debs
# (apt-get update restores them), docs except copyright notices, man/info pages, translations.
STRIP_VERSION = 2
ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


class BaseBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Mirror:
    uri: str
    keyring: str | None  # Signed-By of the apt source, when it names a file


def _deb822_entries(text: str) -> list[dict[str, str]]:
    entries = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields:
            entries.append(fields)
    return entries


def find_mirror(sources: tuple[Path, ...] = APT_SOURCES, suite: str = SUITE) -> Mirror:
    """The first apt source serving `deb` packages of `suite` main, as apt is configured here."""
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(p for p in src.iterdir() if p.suffix in (".list", ".sources"))
        elif src.is_file():
            files.append(src)
    for path in files:
        text = path.read_text()
        if path.suffix == ".sources":
            for e in _deb822_entries(text):
                types, suites = e.get("types", "").split(), e.get("suites", "").split()
                if ("deb" in types and suite in suites and "main" in e.get("components", "").split()
                        and e.get("enabled", "yes") != "no" and e.get("uris")):
                    signed = e.get("signed-by", "")
                    return Mirror(e["uris"].split()[0], signed if signed.startswith("/") else None)
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == suite \
                        and "main" in words[3:]:
                    return Mirror(words[1], None)
    raise BaseBuildError(f"no apt source for Debian {suite} main in "
                         f"{', '.join(str(s) for s in sources)}: debootstrap needs a mirror")


def cache_key(mirror: Mirror) -> str:
    recipe = {"suite": SUITE, "variant": VARIANT, "include": INCLUDE, "mirror": mirror.uri,
              "arch": oci.go_arch(), "strip": STRIP_VERSION, "env": ENV}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _strip(root: Path) -> None:
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*", "var/cache/debconf/*-old",
                    "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
                    "var/log/*.log", "var/log/apt/*"):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    doc = root / "usr" / "share" / "doc"
    for path in sorted(doc.rglob("*"), reverse=True):  # children before their directories
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif path.name != "copyright":
            path.unlink()
    # debootstrap copies the host's resolver and host name in: not ours to ship. The runtime
    # (and buildah, for RUN steps) mounts its own over these; they exist, as plain files, so
    # that buildah has no mount point of its own to create (it would land in a layer).
    for name, text in (("etc/resolv.conf", ""), ("etc/hostname", ""),
                       ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
                                     "ip6-loopback\n")):
        path = root / name
        path.unlink(missing_ok=True)
        path.write_text(text)
        path.chmod(0o644)


def _unmount_below(root: Path) -> None:
    """A debootstrap killed half-way leaves /proc and /sys mounted inside its target."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mnt in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False)


def build(tar_path: Path, mirror: Mirror, log: Path) -> None:
    """debootstrap into a temporary directory beside `tar_path`, strip it, tar it (numeric
    owners, real mtimes), rename the tar into place."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise BaseBuildError("debootstrap is not installed (scripts/setup.sh installs it)")
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".debootstrap-", dir=tar_path.parent))
    try:
        root = work / "rootfs"
        cmd = [debootstrap, f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}"]
        if mirror.keyring:
            cmd.append(f"--keyring={mirror.keyring}")
        cmd += [SUITE, str(root), mirror.uri]
        with log.open("w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            raise BaseBuildError(f"debootstrap failed ({proc.returncode}); see {log}:\n"
                                 + log.read_text()[-2000:])
        _strip(root)
        partial = work / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf",
                        str(partial), "."], check=True)
        partial.rename(tar_path)
    finally:
        _unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)
