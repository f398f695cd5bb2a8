"""Build or locate the benchmark's tools, outside the repository, cached by version.

    python benchmarks/scorer/build_tools.py          # prints the paths as JSON

Everything lands under ``$SCOREFLEET_BENCH_HOME`` (default ``~/.cache/scorefleet/bench``):

* ``ghz``, built from its Go module with the local Go toolchain (``GOTOOLCHAIN=local``);
* ``grpcgo_ceiling``, our minimal grpc-go server (source in ``grpcgo_ceiling/``), whose Go stubs
  are generated here by ``protoc`` + ``protoc-gen-go`` + ``protoc-gen-go-grpc`` from the scorer's
  own ``.proto`` files, so the ceiling speaks exactly the scorer's wire contract;
* a virtualenv with KServe's Python ModelServer from PyPI and the same onnxruntime as ours.

Each artifact sits in a directory named by a digest of its inputs (versions, sources), so a
second run finds it and does nothing, and a changed input builds a fresh one beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "v0.121.0"  # newest tag on the module proxy; builds with Go 1.26
PROTOC_GEN_GO = ("google.golang.org/protobuf/cmd/protoc-gen-go", "v1.36.12")
PROTOC_GEN_GO_GRPC = ("google.golang.org/grpc/cmd/protoc-gen-go-grpc", "v1.6.2")
KSERVE_VERSION = "0.21.0"

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CEILING_SRC = HERE / "grpcgo_ceiling"
PROTO_ROOT = REPO / "scorefleet" / "scorer" / "proto"
# proto file -> Go package (inside the ceiling module) its stubs are generated into
GO_PACKAGES = {
    "inference/grpc_service.proto": "gen/inferencepb",
    "scorefleet/v1/scorer.proto": "gen/scorerpb",
}
CEILING_MODULE = "scorefleet.local/bench/grpcgo_ceiling"


@dataclass(frozen=True)
class Tools:
    ghz: str
    grpcgo_ceiling: str
    kserve_python: str
    proto_root: str


def bench_home() -> Path:
    default = Path.home() / ".cache" / "scorefleet" / "bench"
    return Path(os.environ.get("SCOREFLEET_BENCH_HOME", default))


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    print(f"[build] {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, check=True, timeout=1200)


def _go_env(gobin: Path) -> dict[str, str]:
    return {"GOTOOLCHAIN": "local", "GOBIN": str(gobin), "GOFLAGS": "-mod=mod"}


def go_install(module: str, version: str, name: str) -> Path:
    """``go install module@version`` into bin/<name>-<version>/ unless already there."""
    gobin = bench_home() / "bin" / f"{name}-{version}"
    exe = gobin / name
    if not exe.exists():
        gobin.mkdir(parents=True, exist_ok=True)
        _run(["go", "install", f"{module}@{version}"], cwd=Path(tempfile.gettempdir()),
             env=_go_env(gobin))
    return exe


def ensure_protoc() -> str:
    found = shutil.which("protoc")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _run(["apt-get", "install", "-y", "-q", "protobuf-compiler"],
             env={"DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("protoc")
    if not found:
        raise SystemExit("protoc not found: install Debian's protobuf-compiler")
    return found


def build_ceiling() -> Path:
    protoc = ensure_protoc()
    plugin_go = go_install(*PROTOC_GEN_GO, name="protoc-gen-go")
    plugin_grpc = go_install(*PROTOC_GEN_GO_GRPC, name="protoc-gen-go-grpc")
    sources = sorted(p for p in CEILING_SRC.iterdir() if p.is_file())
    protos = [PROTO_ROOT / rel for rel in GO_PACKAGES]
    key = _digest(*(p.read_bytes() for p in [*sources, *protos]), PROTOC_GEN_GO[1],
                  PROTOC_GEN_GO_GRPC[1], subprocess.run([protoc, "--version"], check=True,
                                                        capture_output=True).stdout)
    exe = bench_home() / "bin" / f"grpcgo_ceiling-{key}" / "grpcgo_ceiling"
    if exe.exists():
        return exe
    work = bench_home() / "build" / f"grpcgo_ceiling-{key}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(CEILING_SRC, work)
    mapping = [f"M{rel}={CEILING_MODULE}/{pkg}" for rel, pkg in GO_PACKAGES.items()]
    _run([protoc, f"-I{PROTO_ROOT}",
          f"--plugin=protoc-gen-go={plugin_go}", f"--plugin=protoc-gen-go-grpc={plugin_grpc}",
          f"--go_out={work}", f"--go-grpc_out={work}",
          f"--go_opt=module={CEILING_MODULE}", f"--go-grpc_opt=module={CEILING_MODULE}",
          *[f"--go_opt={m}" for m in mapping], *[f"--go-grpc_opt={m}" for m in mapping],
          *GO_PACKAGES], cwd=work)
    env = _go_env(exe.parent)
    _run(["go", "mod", "tidy"], cwd=work, env=env)
    exe.parent.mkdir(parents=True, exist_ok=True)
    _run(["go", "build", "-trimpath", "-o", str(exe), "."], cwd=work, env=env)
    return exe


def build_kserve_venv() -> Path:
    """KServe in its own venv, with the onnxruntime version our scorer runs (fair comparison)."""
    ort = metadata.version("onnxruntime")
    venv = bench_home() / f"kserve-venv-{KSERVE_VERSION}-ort{ort}"
    python = venv / "bin" / "python"
    stamp = venv / ".complete"
    if stamp.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(python), "-m", "pip", "install", "-q", f"kserve=={KSERVE_VERSION}",
          f"onnxruntime=={ort}"])
    stamp.write_text(f"kserve=={KSERVE_VERSION} onnxruntime=={ort}\n")
    return python


def build_all() -> Tools:
    return Tools(
        ghz=str(go_install(GHZ_MODULE, GHZ_VERSION, name="ghz")),
        grpcgo_ceiling=str(build_ceiling()),
        kserve_python=str(build_kserve_venv()),
        proto_root=str(PROTO_ROOT),
    )


if __name__ == "__main__":
    print(json.dumps(asdict(build_all()), indent=2))
