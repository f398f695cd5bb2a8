"""The CLI's script-facing output (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorefleet.dev import paths
from scorefleet.dev.cli import main


def test_env_prints_eval_ready_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache dir"))
    monkeypatch.setenv(paths.CLUSTER_DIR_ENV, str(tmp_path / "state"))
    assert main(["env"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        f"export KUBECONFIG={tmp_path}/state/kubeconfig",
        f"export PATH='{tmp_path}/cache dir/bin/current':\"$PATH\"",
    ]
    assert "not up" in out.err


def test_status_without_state_says_down_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(paths.CLUSTER_DIR_ENV, str(tmp_path / "state"))
    assert main(["status"]) == 1
    assert capsys.readouterr().out.startswith("down")


def test_down_without_state_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.CLUSTER_DIR_ENV, str(tmp_path / "state"))
    assert main(["down"]) == 0
    assert not (tmp_path / "state").exists()


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
