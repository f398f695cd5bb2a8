"""Config loading and change detection, including a ConfigMap-style symlink swap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scorefleet.scorer.config_watch import (
    ConfigError,
    ConfigWatcher,
    load_config,
    parse_config,
    restart_needed,
)

BASE = """
pipeline: mail-phish
model: {name: phish, version: v1, uri: "file:///models/m.onnx"}
"""


def test_defaults_and_camel_case() -> None:
    cfg = parse_config(BASE + "batching: {maxBatchSize: 64, maxQueueDelayUs: 500}\n")
    assert cfg.batching.max_batch_size == 64
    assert cfg.batching.max_queue_delay_us == 500
    assert cfg.workers == 0 and cfg.track == "stable"


@pytest.mark.parametrize(("text", "message"), [
    ("pipeline: [unclosed", "not valid YAML"),
    ("- a list", "expected a mapping"),
    (BASE + "bogusField: 1\n", "bogusField"),
    ("pipeline: p\nmodel: {name: phish, version: v1, uri: 's3://x'}\n", "uri"),
])
def test_invalid_configs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_restart_fields() -> None:
    a = parse_config(BASE)
    b = parse_config(BASE + "port: 9100\nbatching: {maxBatchSize: 8}\n")
    assert restart_needed(a, b) == ["port"]


def test_watcher_sees_symlink_swap_once(tmp_path: Path) -> None:
    # The kubelet's layout: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>
    v1, v2 = tmp_path / "..v1", tmp_path / "..v2"
    v1.mkdir()
    v2.mkdir()
    (v1 / "config.yaml").write_text(BASE)
    (v2 / "config.yaml").write_text(BASE.replace("v1", "v2"))
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/config.yaml", tmp_path / "config.yaml")
    watcher = ConfigWatcher(tmp_path / "config.yaml")
    assert watcher.prime().model.version == "v1"
    assert watcher.poll() is None
    os.symlink("..v2", tmp_path / "..data.tmp")
    os.replace(tmp_path / "..data.tmp", tmp_path / "..data")
    new = watcher.poll()
    assert new is not None and new.model.version == "v2"
    assert watcher.poll() is None


def test_watcher_reports_invalid_change_once_and_survives_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(BASE)
    watcher = ConfigWatcher(path)
    watcher.prime()
    path.write_text("pipeline: [")
    with pytest.raises(ConfigError, match="keeping the running config"):
        watcher.poll()
    assert watcher.poll() is None
    path.unlink()
    assert watcher.poll() is None
