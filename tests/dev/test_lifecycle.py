"""Stale state and teardown, on a second throwaway cluster in its own state directory."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from scorefleet.dev import cluster, node, paths, processes

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_up_recovers_from_dead_pids_and_down_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(paths.CLUSTER_DIR_ENV, str(tmp_path / "cluster"))
    # The control plane's own lifecycle: the machine's one real node stays with the session.
    monkeypatch.setenv(node.MODE_ENV, "off")
    try:
        _crash_and_recover_then_stop(tmp_path)
    finally:
        cluster.stop()  # a no-op after a pass; no stray processes after a failure


def _crash_and_recover_then_stop(tmp_path: Path) -> None:
    first = cluster.ensure_up()
    assert first.state_dir == tmp_path / "cluster"
    before = {s.name: s.pid for s in cluster.status()}
    assert all(s.healthy for s in cluster.status())

    # As after a crash or reboot: the recorded processes are gone, the state files are not.
    for name in ("kube-apiserver", "etcd"):
        os.kill(before[name], signal.SIGKILL)
    second = cluster.ensure_up()
    after = {s.name: s.pid for s in cluster.status()}
    assert all(s.healthy for s in cluster.status())
    assert not set(before.values()) & set(after.values())
    for pid in before.values():
        assert not processes.is_running(pid)

    cluster.stop()
    assert not second.state_dir.exists()
    assert cluster.status() == []
    for pid in after.values():
        assert not processes.is_running(pid)
    port = int(second.server.rsplit(":", 1)[1])
    assert not processes.port_open(port)
