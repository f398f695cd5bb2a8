"""The embedded local default: control plane + CRD + operator process + example pipeline.

    scorefleet up [--pipeline FILE]   # everything, then wait for the pipeline to be Ready
    scorefleet down                   # stop the operator and the control plane

The operator runs as a local process against the local control plane (kwok nodes have no
container runtime, so it cannot run as a pod here); its pid and log live in the cluster's
state directory, so `scorefleet down` finds it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scorefleet.api.crd import CRD_PATH
from scorefleet.dev import cluster, paths
from scorefleet.dev.node import Mode

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline.yaml"


def _kubectl(info: cluster.ClusterInfo, *args: str) -> str:
    proc = subprocess.run([str(info.bin_dir / "kubectl"), f"--kubeconfig={info.kubeconfig}",
                           *args], capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _operator_files() -> tuple[Path, Path]:
    state = paths.cluster_dir()
    return state / "operator.pid", state / "logs" / "operator.log"


def _running(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start_operator(info: cluster.ClusterInfo) -> int:
    pid_file, log = _operator_files()
    pid = _running(pid_file)
    if pid is not None:
        return pid
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KUBECONFIG": str(info.kubeconfig)}
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scorefleet.operator"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def stop_operator() -> None:
    pid_file, _ = _operator_files()
    pid = _running(pid_file)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if _running(pid_file) is None:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def _wait_established(info: cluster.ClusterInfo, timeout: float = 60.0) -> None:
    """`kubectl wait` fails at once (".status.conditions accessor error") on a CRD whose status
    has no conditions yet, which happens right after the apply on a loaded machine: retry."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _kubectl(info, "wait", "--for=condition=Established", "--timeout=60s",
                     "crd/scoringpipelines.scorefleet.io")
            return
        except SystemExit:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def up(pipeline: Path = EXAMPLE, namespace: str = "default", timeout: float = 120.0) -> int:
    started = time.monotonic()
    # kwok only until `up` serves the example from real pods (branch issue-6-node): a real
    # node here would cost the scorer image's build and import and run nothing.
    info = cluster.ensure_up(real_node=Mode.OFF)
    _kubectl(info, "apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))
    _wait_established(info)
    pid = start_operator(info)
    _, log = _operator_files()
    print(f"operator: pid {pid}, log {log}", file=sys.stderr)
    _kubectl(info, "apply", "-n", namespace, "-f", str(pipeline))
    name = json.loads(_kubectl(info, "create", "--dry-run=client", "-o", "json", "-f",
                               str(pipeline)))["metadata"]["name"]
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        out = _kubectl(info, "get", "scoringpipeline", name, "-n", namespace, "-o",
                       "jsonpath={.status.phase}")
        phase = out.strip()
        if phase == "Ready":
            break
        time.sleep(1)
    print(_kubectl(info, "get", "scoringpipelines,deployments,services,pods", "-n", namespace,
                   "-l", f"scorefleet.io/pipeline={name}", "--ignore-not-found")
          if phase != "Ready" else
          _kubectl(info, "get", "scoringpipeline", name, "-n", namespace))
    verdict = "Ready" if phase == "Ready" else f"NOT Ready ({phase or 'no status'})"
    print(f"{verdict} after "
          f"{time.monotonic() - started:.1f}s. Next:\n"
          f"  eval \"$({sys.executable} -m scorefleet.dev env)\"   # kubectl, local cluster\n"
          f"  kubectl describe scoringpipeline {name}\n"
          f"  {Path(sys.executable).parent / 'scorefleet'} down   # stop operator and cluster")
    return 0 if phase == "Ready" else 1


def down() -> int:
    from scorefleet.dev import streams

    streams.down()  # Kafka and Redis of `up --streams` keep their state in the cluster dir
    stop_operator()
    cluster.stop()
    print(f"down: operator stopped, control plane removed ({paths.cluster_dir()})",
          file=sys.stderr)
    return 0
