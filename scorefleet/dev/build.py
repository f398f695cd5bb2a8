"""Building and caching the control-plane binaries from Go modules.

Everything is keyed by version under the cache root (see paths.py), outside the repository:
a binary that exists is never rebuilt, so `build_all()` is cheap once warm. Go's own caches
(GOCACHE, GOMODCACHE) are used as configured, so a second checkout or a version bump reuses
every unchanged package. Builds run one at a time: on 2 cores `go build` already uses both,
and the Kubernetes binaries share most of their packages through GOCACHE.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from scorefleet.dev import gomod, locks, paths
from scorefleet.dev.versions import (
    ETCD_SERVER_MODULE,
    ETCD_VERSION,
    GATEWAY_API_MODULE,
    GATEWAY_API_VERSION,
    KUBERNETES_MODULE,
    KUBERNETES_VERSION,
    TOOLS,
    Family,
    Tool,
)


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Built:
    tool: Tool
    path: Path
    seconds: float
    cached: bool


def go_env() -> dict[str, str]:
    """Environment for every go command: the local toolchain, static binaries.

    GOTOOLCHAIN=local: never fetch another toolchain (etcd 3.6.16 suggests go1.26.10).
    CGO_ENABLED=0: as upstream releases, and no C toolchain needed.
    """
    env = dict(os.environ)
    env.update({"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"})
    return env


def _go(args: list[str], cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("`go` not found on PATH: Go 1.24+ is needed to build the control plane")
    env = {**go_env(), **(extra_env or {})}
    proc = subprocess.run(
        [go, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BuildError(f"go {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def module_download(module: str, version: str) -> dict[str, str]:
    """`go mod download -json`: fills GOMODCACHE and tells where the module lies."""
    info: dict[str, str] = json.loads(_go(["mod", "download", "-json", f"{module}@v{version}"]))
    if "Error" in info:
        raise BuildError(f"{module}@v{version}: {info['Error']}")
    return info


def gateway_api_crd_dir() -> Path:
    """The standard-channel Gateway API CRDs, read in place from the module cache."""
    info = module_download(GATEWAY_API_MODULE, GATEWAY_API_VERSION)
    return Path(info["Dir"]) / "config" / "crd" / "standard"


def binary_path(t: Tool) -> Path:
    return paths.bin_root() / t.key / t.name


def prepare_wrapper(family: Family) -> Path:
    """Generate (or refresh) a wrapper module and resolve its go.sum; returns its directory."""
    tools = [t for t in TOOLS if t.family is family]
    if family is Family.K8S:
        mod = module_download(KUBERNETES_MODULE, KUBERNETES_VERSION)
        text = gomod.kubernetes_wrapper(
            Path(mod["GoMod"]).read_text(), KUBERNETES_VERSION, [t.package for t in tools]
        )
        wrapper = paths.wrappers_root() / f"k8s-v{KUBERNETES_VERSION}"
    elif family is Family.ETCD:
        mod = module_download(ETCD_SERVER_MODULE, ETCD_VERSION)
        text = gomod.etcd_wrapper(Path(mod["GoMod"]).read_text(), ETCD_VERSION, tools[0].package)
        wrapper = paths.wrappers_root() / f"etcd-v{ETCD_VERSION}"
    else:
        raise ValueError(f"{family} needs no wrapper")
    wrapper.mkdir(parents=True, exist_ok=True)
    # `go mod tidy` rewrites go.mod (it adds the indirect requires), so what we generated is
    # kept beside it to tell whether the wrapper is current.
    stamp = wrapper / "go.mod.generated"
    if stamp.exists() and stamp.read_text() == text and (wrapper / "go.sum").exists():
        return wrapper
    (wrapper / "go.mod").write_text(text)
    (wrapper / "go.sum").unlink(missing_ok=True)
    # tidy resolves go.sum; the tool block keeps it from dropping anything we build.
    _go(["mod", "tidy"], cwd=wrapper)
    stamp.write_text(text)
    return wrapper


def _build_flags(t: Tool) -> list[str]:
    ldflags = " ".join(("-s", "-w", *t.ldflags))
    tags = [f"-tags={','.join(t.tags)}"] if t.tags else []
    return ["-trimpath", f"-ldflags={ldflags}", *tags]


def build_tool(t: Tool, wrappers: dict[Family, Path]) -> Built:
    """Build one tool into its versioned cache directory (atomically, via a temp name)."""
    target = binary_path(t)
    if target.exists():
        return Built(t, target, 0.0, cached=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{t.name}.{os.getpid()}.partial")
    start = time.monotonic()
    if t.family is Family.INSTALL:
        # `go install pkg@version` builds in module mode with that module's own go.mod.
        gobin = target.parent / f".gobin.{os.getpid()}"
        gobin.mkdir(exist_ok=True)
        args = ["install", *_build_flags(t), f"{t.package}@v{t.go_version}"]
        _go(args, extra_env={"GOBIN": str(gobin)})
        (gobin / t.name).rename(partial)
        shutil.rmtree(gobin, ignore_errors=True)
    else:
        wrapper = wrappers.get(t.family) or prepare_wrapper(t.family)
        wrappers[t.family] = wrapper
        _go(["build", *_build_flags(t), "-o", str(partial), t.package], cwd=wrapper)
    partial.rename(target)
    return Built(t, target, time.monotonic() - start, cached=False)


def link_path_dir(built: list[Built]) -> Path:
    """Point bin/current/<name> at each pinned binary, for PATH and ClusterInfo.bin_dir."""
    current = paths.path_dir()
    current.mkdir(parents=True, exist_ok=True)
    for b in built:
        link = current / b.tool.name
        if not b.tool.on_path:
            link.unlink(missing_ok=True)  # an older build may have linked it
            continue
        tmp = current / f".{b.tool.name}.link"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(b.path)
        tmp.replace(link)
    return current


def _build_lock() -> contextlib.AbstractContextManager[None]:
    """One builder at a time per cache: test sessions and `up`s may start together."""
    return locks.exclusive(paths.cache_root() / "build.lock")


def build_all(out: TextIO | None = None) -> list[Built]:
    """Build every missing binary, print one timing line per binary, return them all.

    Idempotent: cached binaries cost a stat each. `out` is a text stream (default stderr).
    """
    stream = out if out is not None else sys.stderr
    wrappers: dict[Family, Path] = {}
    built: list[Built] = []
    total = time.monotonic()
    with _build_lock():
        for t in TOOLS:
            b = build_tool(t, wrappers)
            note = "cached" if b.cached else f"built in {b.seconds:.1f}s"
            print(f"{t.name:<24} v{t.version:<8} {note:<18} {b.path}", file=stream, flush=True)
            built.append(b)
        link_path_dir(built)
    print(f"build_all: {time.monotonic() - total:.1f}s", file=stream, flush=True)
    return built
