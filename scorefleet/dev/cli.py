"""`python -m scorefleet.dev build|up|env|status|down`.

stdout carries only what a script wants (paths, `export` lines, the status table); progress
and timings go to stderr, so `export KUBECONFIG=$(python -m scorefleet.dev up)` works.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence

from scorefleet.dev import build, cluster, components, paths


def _build(_: argparse.Namespace) -> int:
    for b in build.build_all():
        print(b.path)
    print(paths.path_dir())
    return 0


def _up(_: argparse.Namespace) -> int:
    started = time.monotonic()
    info = cluster.ensure_up()
    print(f"up: {info.server} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(info.kubeconfig)
    return 0


def _env(_: argparse.Namespace) -> int:
    lay = components.Layout(paths.cluster_dir())
    if not lay.kubeconfig.exists():
        print("# the cluster is not up: run `python -m scorefleet.dev up`", file=sys.stderr)
    print(f"export KUBECONFIG={shlex.quote(str(lay.kubeconfig))}")
    print(f'export PATH={shlex.quote(str(paths.path_dir()))}:"$PATH"')
    return 0


def _status(_: argparse.Namespace) -> int:
    rows = cluster.status()
    if not rows:
        print(f"down (no state in {paths.cluster_dir()})")
        return 1
    for r in rows:
        state = "healthy" if r.healthy else ("running" if r.running else "dead")
        print(f"{r.name:<24} pid {r.pid:<8} {state:<8} {r.log}")
    return 0 if all(r.healthy for r in rows) else 1


def _down(_: argparse.Namespace) -> int:
    cluster.stop()
    print(f"down: removed {paths.cluster_dir()}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scorefleet.dev", description="Local Kubernetes control plane for tests."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("build", _build, "build missing binaries into the version-keyed cache; print paths"),
        ("up", _up, "start the control plane (idempotent); print the kubeconfig path"),
        ("env", _env, "print export lines for KUBECONFIG and PATH (for eval)"),
        ("status", _status, "each component's pid and health; exit 1 unless all healthy"),
        ("down", _down, "stop everything and delete the state directory"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc
