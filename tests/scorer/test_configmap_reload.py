"""Hot reload through a ConfigMap volume's layout (the kubelet swaps `..data` to a new
directory and deletes the old one): the scorer must follow the path it was given, not the
directory it pointed to at start. The e2e on a real pod is in tests/cluster/test_real_pods.py."""

from __future__ import annotations

from pathlib import Path

from tests.scorer.scorer_process import Models, ScorerProcess


def test_a_configmap_update_is_applied_after_the_old_directory_is_gone(
        tmp_path: Path, models: Models) -> None:
    scorer = ScorerProcess(tmp_path, {"model": models.ref("v1")}, configmap=True)
    try:
        scorer.wait_serving()
        first = (tmp_path / "..data").resolve()
        assert (tmp_path / "config.yaml").is_symlink()
        scorer.update_config(batching={"maxQueueDelayUs": 500})
        assert not first.exists()  # what the kubelet does; the scorer started from it
        assert scorer.wait_for("the update applied", lambda: scorer.metric(
            "scorefleet_config_reloads_total", result="applied") >= 1)
        scorer.update_config(batching={"maxQueueDelayUs": 700})
        assert scorer.wait_for("the second update applied", lambda: scorer.metric(
            "scorefleet_config_reloads_total", result="applied") >= 2)
    finally:
        scorer.kill()
