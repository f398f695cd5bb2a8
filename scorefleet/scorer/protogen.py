"""Build step: generate Python code for the scorer's .proto files.

    python -m scorefleet.scorer.protogen

Generated code is never edited by hand or committed; it lands in ``scorefleet/scorer/_generated``
(gitignored). protoc writes imports relative to the proto root (``from scorefleet.v1 import
...``), which would collide with the real ``scorefleet`` package, so the imports are rewritten to
``scorefleet.scorer._generated...``. The scorer calls :func:`ensure_generated` at start so a fresh
editable install works without a separate step; CI runs this module explicitly.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO_ROOT = PACKAGE_DIR / "proto"
OUT_DIR = PACKAGE_DIR / "_generated"
GENERATED_PACKAGE = "scorefleet.scorer._generated"
# Written last: its presence means the whole tree is complete (generation is atomic by rename).
STAMP = "PROTO_SHA"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


# Bump when the generation or rewriting changes, so trees made by an older protogen are rebuilt.
GENERATOR_VERSION = "2"


def _sources_digest() -> str:
    import hashlib

    h = hashlib.sha256(f"protogen {GENERATOR_VERSION}\n".encode())
    for p in proto_files():
        h.update(p.relative_to(PROTO_ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _top_level_packages() -> list[str]:
    return sorted({p.relative_to(PROTO_ROOT).parts[0] for p in proto_files()})


def rewrite_imports(text: str, packages: list[str]) -> str:
    """Point protoc's root-relative imports at our package, each import line exactly once.

    One pass with all packages in one alternation: rewriting package by package would rewrite
    an already rewritten ``from scorefleet.scorer._generated.inference import`` a second time
    when ``inference`` came before ``scorefleet`` (found by the benchmark run).
    """
    names = "|".join(re.escape(p) for p in packages)
    done = rf"(?!{re.escape(GENERATED_PACKAGE)}\b)"  # idempotent: skip rewritten lines
    text = re.sub(rf"^from {done}({names})((?:\.\w+)*) import",
                  rf"from {GENERATED_PACKAGE}.\1\2 import", text, flags=re.MULTILINE)
    return re.sub(rf"^import {done}({names})\.", rf"import {GENERATED_PACKAGE}.\1.", text,
                  flags=re.MULTILINE)


def _rewrite_imports(path: Path, packages: list[str]) -> None:
    path.write_text(rewrite_imports(path.read_text(), packages))


def generate(out_dir: Path = OUT_DIR) -> Path:
    """Run protoc into a temporary directory and swap it into place."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # build-time (grpcio-tools)

    grpc_tools_include = Path(protoc.__file__).resolve().parent / "_proto"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="._generated-", dir=out_dir.parent))
    try:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{grpc_tools_include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *[str(p) for p in proto_files()],
        ]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}: {' '.join(args)}")
        packages = _top_level_packages()
        for dirpath, _dirs, _files in os.walk(tmp):
            (Path(dirpath) / "__init__.py").touch()
        for py in [*tmp.rglob("*.py"), *tmp.rglob("*.pyi")]:
            _rewrite_imports(py, packages)
        (tmp / STAMP).write_text(_sources_digest() + "\n")
        # Swap: another process may be generating at the same time; whoever renames last wins
        # and both trees are identical.
        old = out_dir.with_name(f"._old-{os.getpid()}")
        try:
            if out_dir.exists():
                os.replace(out_dir, old)
            os.replace(tmp, out_dir)
        except OSError:
            if not is_current(out_dir):  # lost a race to a concurrent, identical generation
                raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def is_current(out_dir: Path = OUT_DIR) -> bool:
    stamp = out_dir / STAMP
    try:
        return stamp.read_text().strip() == _sources_digest()
    except OSError:
        return False


def ensure_generated() -> None:
    """Generate the code if it is missing or stale (protos changed since last run).

    Many processes call this at import (workers, tests, benchmarks); an exclusive lock makes
    one of them generate and the others wait for it instead of swapping directories under
    each other.
    """
    if is_current():
        return
    import fcntl
    import hashlib

    # Outside the source tree (nothing to gitignore), one lock per checkout.
    tag = hashlib.sha256(str(OUT_DIR).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"scorefleet-protogen-{tag}.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not is_current():
                generate()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scorefleet.scorer.protogen",
                                     description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    out = generate(args.out)
    print(f"generated {len(proto_files())} protos into {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
