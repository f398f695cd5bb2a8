"""Cache and state locations, and the PATH directory of symlinks (pure, on a tmp dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorefleet.dev import build, paths
from scorefleet.dev.versions import tool


def test_cache_and_cluster_dirs_follow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.CLUSTER_DIR_ENV, raising=False)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "c"))
    assert paths.cache_root() == tmp_path / "c"
    assert paths.cluster_dir() == tmp_path / "c" / "cluster"
    assert build.binary_path(tool("kubectl")) == tmp_path / "c/bin/kubectl-v1.34.4/kubectl"
    monkeypatch.setenv(paths.CLUSTER_DIR_ENV, str(tmp_path / "state"))
    assert paths.cluster_dir() == tmp_path / "state"


def test_default_cache_is_outside_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert paths.cache_root() == Path.home() / ".cache" / "scorefleet"
    repo = Path(__file__).resolve().parents[2]
    assert not paths.cache_root().resolve().is_relative_to(repo)


def test_path_dir_links_each_pinned_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path))
    built = []
    for name in ("kubectl", "helm"):
        t = tool(name)
        target = build.binary_path(t)
        target.parent.mkdir(parents=True)
        target.write_text("#!/bin/sh\n")
        built.append(build.Built(t, target, 0.0, cached=True))
    current = build.link_path_dir(built)
    assert (current / "kubectl").resolve() == build.binary_path(tool("kubectl"))
    # Relinking (e.g. after a version bump) replaces the link instead of failing.
    build.link_path_dir(built)
    assert sorted(p.name for p in current.iterdir()) == ["helm", "kubectl"]
