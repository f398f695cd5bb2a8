"""The README's first command's core: `scorefleet up` brings the example pipeline to Ready on
its own control plane, and `scorefleet down` leaves no process and no state behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.cluster


def test_up_then_down(control_plane: Any, tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    # kwok only: the machine's one real node stays with the session's cluster.
    env = {**os.environ, "SCOREFLEET_CLUSTER_DIR": str(state), "SCOREFLEET_REAL_NODE": "off"}
    env.pop("KUBECONFIG", None)
    up = subprocess.run([sys.executable, "-m", "scorefleet.cli", "up"], env=env,
                        capture_output=True, text=True, timeout=300, check=False)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Ready after" in up.stdout
        assert "phishing   Ready   v1" in up.stdout
        pid = int((state / "operator.pid").read_text())
    finally:
        down = subprocess.run([sys.executable, "-m", "scorefleet.cli", "down"], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True,
                               check=False).stdout
    assert leftovers == "", leftovers
