"""Where the control plane keeps things: all outside the repository, all overridable by env."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "SCOREFLEET_CACHE"
CLUSTER_DIR_ENV = "SCOREFLEET_CLUSTER_DIR"


def _home_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def cache_root() -> Path:
    """Binaries and wrapper modules (default ~/.cache/scorefleet)."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else _home_cache() / "scorefleet"


def bin_root() -> Path:
    """One directory per tool and version: bin/<name>-v<version>/<name>."""
    return cache_root() / "bin"


def path_dir() -> Path:
    """A directory of symlinks to the pinned versions, for PATH (kubectl, helm, ...)."""
    return bin_root() / "current"


def wrappers_root() -> Path:
    return cache_root() / "wrappers"


def cluster_dir() -> Path:
    """Pids, logs, PKI, etcd data and the kubeconfig of the running cluster."""
    override = os.environ.get(CLUSTER_DIR_ENV)
    return Path(override) if override else cache_root() / "cluster"
