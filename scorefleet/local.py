"""The embedded local default: control plane + real node + operator + a pipeline really serving.

    scorefleet up [--pipeline FILE] [--streams] [--kwok-nodes N] [--kwok-node-cpu C] ...
    scorefleet down                   # stop the operator, the node and the control plane

With a real node (root on Linux): the example models go into the cluster's model store, the
`default` namespace is dedicated to the real node (PodNodeSelector/PodTolerationRestriction
annotations), the pipeline's scorer pods run the project's image, a short bounded load goes
through cluster DNS, and the pipeline is printed with the QPS and p99 Prometheus measured.
Without one, the pipeline runs on kwok fake nodes (Ready, serving nothing) and `up` says why.
`--streams` adds Kafka and Redis, started once the node is up so that they listen on its
address too (dev/streams.py), and the example stream pipeline (stream_example.py): with a real
node, a bounded batch of events is produced and the verdicts its scorer pods wrote are counted.
The operator runs as a local process; its pid and log live in the cluster's state directory,
so `scorefleet down` finds it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from scorefleet.api.crd import CRD_PATH
from scorefleet.dev import cluster, nodeconf, paths
from scorefleet.dev.bootstrap import KwokNodes
from scorefleet.dev.streams import StreamsInfo

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline.yaml"
# What the operator measures from for the local default: short, so the demo shows numbers
# within seconds (the operator's own defaults are 30 s and 1m).
RESYNC_SECONDS = "2"
METRICS_WINDOW = "20s"
# Shorter than the window: QPS then reads as the load's requests over the window (10 s of
# 100 RPC/s shows as about 50), which the README explains.
LOAD_SECONDS = 10


def _kubectl(info: cluster.ClusterInfo, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([str(info.bin_dir / "kubectl"), f"--kubeconfig={info.kubeconfig}",
                           *args], capture_output=True, text=True, check=False, timeout=120,
                          input=stdin)
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
    if info.node is not None:
        env.update({"SCOREFLEET_PROMETHEUS_URL": info.node.prometheus_url,
                    "SCOREFLEET_RESYNC_SECONDS": RESYNC_SECONDS,
                    "SCOREFLEET_METRICS_WINDOW": METRICS_WINDOW})
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


def _prepare_real_node(info: cluster.ClusterInfo, namespace: str) -> None:
    """Example models into the model store; the namespace's pods onto the real node."""
    from scorefleet.scorer.example_model import build

    assert info.node is not None
    build(info.node.models)
    _kubectl(info, "apply", "-f", "-", stdin=_kubectl(
        info, "create", "namespace", namespace, "--dry-run=client", "-o", "yaml"))
    _kubectl(info, "annotate", "namespace", namespace, "--overwrite",
             *(f"{k}={v}" for k, v in nodeconf.namespace_annotations().items()))


def _wait_phase(info: cluster.ClusterInfo, name: str, namespace: str, deadline: float) -> str:
    phase = ""
    while time.monotonic() < deadline:
        phase = _kubectl(info, "get", "scoringpipeline", name, "-n", namespace, "-o",
                         "jsonpath={.status.phase}").strip()
        if phase == "Ready":
            break
        time.sleep(1)
    return phase


def _serve_and_measure(info: cluster.ClusterInfo, name: str, namespace: str,
                       deadline: float) -> str:
    """A short bounded load through cluster DNS, then wait for Prometheus's numbers from a
    measurement taken after the load ended, so the window holds all of it (a measurement
    taken during the load would show part of it, one before it none)."""
    from scorefleet import load

    assert info.node is not None
    target = load.headless_target(name, namespace, info.node.dns)
    result = load.run(target, rate=100, duration=LOAD_SECONDS, concurrency=4, wait_ready=30)
    ended = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # measuredAt's form
    while time.monotonic() < deadline:
        at, _, qps = _kubectl(info, "get", "scoringpipeline", name, "-n", namespace, "-o",
                              "jsonpath={.status.metrics.measuredAt},"
                              "{.status.metrics.stable.qps}").strip().partition(",")
        if qps and at > ended:
            break
        time.sleep(1)
    return f"load: {result.summary()}"


def _start_streams(info: cluster.ClusterInfo) -> StreamsInfo:
    from scorefleet.dev import streams

    started = time.monotonic()
    found = streams.up(node_ip=info.node.ip if info.node is not None else None)
    bootstrap, redis = found.pod_facing
    print(f"{'kafka, redis':<24} {'':<12} ready in {time.monotonic() - started:.1f}s "
          f"(for pods: {bootstrap}, {redis}; host: {found.bootstrap}, {found.redis})",
          file=sys.stderr)
    return found


def _serve_stream(info: cluster.ClusterInfo, found: StreamsInfo, namespace: str,
                  deadline: float) -> tuple[str, str]:
    """The example stream pipeline applied; on a real node, events through its pods.
    Returns (its phase, what happened to the events); the phase is "Incomplete" when not every
    event got its verdict (or dead letter) in time."""
    from scorefleet import stream_example

    def kubectl(*args: str, stdin: str | None = None) -> str:
        return _kubectl(info, *args, stdin=stdin)

    ex = stream_example.apply_example(kubectl, namespace, *found.pod_facing,
                                      host_bootstrap=found.bootstrap, host_redis=found.redis)
    phase = _wait_phase(info, ex.name, namespace, deadline)
    if phase != "Ready" or info.node is None:
        return phase, ""
    count, poison = 1000, 2
    run = stream_example.produce(found.bootstrap, ex, count, rate=200, poison=poison)
    out = stream_example.read_outcome(found.bootstrap, ex, expect=count + poison,
                                      timeout=max(10.0, min(120.0, deadline - time.monotonic())))
    mine = out.of_run(run)
    complete = len(mine.verdicts) == count and len(mine.dead) == poison
    return ("Ready" if complete else "Incomplete",
            f"stream: {count} events and {poison} poison messages produced (run {run}):\n"
            + stream_example.summary(mine, None, show=1))


def up(pipeline: Path = EXAMPLE, namespace: str = "default", timeout: float = 900.0,
       kwok_nodes: KwokNodes | None = None, streams: bool = False) -> int:
    started = time.monotonic()
    info = cluster.ensure_up(kwok_nodes=kwok_nodes)
    if info.node is None:
        print(f"real node: none ({info.node_unavailable}); the pipeline runs on kwok fake "
              "nodes: scheduled and Ready, serving nothing", file=sys.stderr)
    else:
        _prepare_real_node(info, namespace)
    found = _start_streams(info) if streams else None
    _kubectl(info, "apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))
    _wait_established(info)
    pid = start_operator(info)
    _, log = _operator_files()
    print(f"operator: pid {pid}, log {log}", file=sys.stderr)
    _kubectl(info, "apply", "-n", namespace, "-f", str(pipeline))
    name = json.loads(_kubectl(info, "create", "--dry-run=client", "-o", "json", "-f",
                               str(pipeline)))["metadata"]["name"]
    deadline = time.monotonic() + timeout
    phase = _wait_phase(info, name, namespace, deadline)
    served = ""
    if phase == "Ready" and info.node is not None:
        served = _serve_and_measure(info, name, namespace, deadline)
    print(_kubectl(info, "get", "scoringpipelines,deployments,services,pods", "-n", namespace,
                   "-l", f"scorefleet.io/pipeline={name}", "--ignore-not-found")
          if phase != "Ready" else
          _kubectl(info, "get", "scoringpipeline", name, "-n", namespace))
    if served:
        print(served)
    stream_phase = "Ready"
    if found is not None:
        stream_phase, streamed = _serve_stream(info, found, namespace, deadline)
        print(_kubectl(info, "get", "scoringpipeline", "-n", namespace,
                       stream_example_name()))
        if streamed:
            print(streamed)
    verdict = "Ready" if phase == "Ready" else f"NOT Ready ({phase or 'no status'})"
    scorefleet = Path(sys.executable).parent / "scorefleet"
    score = (f"  {scorefleet} score {name}   # score one event through cluster DNS\n"
             if info.node is not None else "")
    stream_next = (f"  {scorefleet} stream produce --count 500   # more events\n"
                   f"  {scorefleet} stream verdicts            # count their verdicts\n"
                   if found is not None and info.node is not None else "")
    if stream_phase != "Ready":
        verdict += f"; {stream_example_name()} NOT Ready ({stream_phase or 'no status'})"
    print(f"{verdict} after "
          f"{time.monotonic() - started:.1f}s. Next:\n"
          f"{score}{stream_next}"
          f"  eval \"$({sys.executable} -m scorefleet.dev env)\"   # kubectl, local cluster\n"
          f"  kubectl describe scoringpipeline {name}\n"
          f"  {scorefleet} down   # stop operator and cluster")
    return 0 if phase == "Ready" and stream_phase == "Ready" else 1


def stream_example_name() -> str:
    from scorefleet import stream_example

    return stream_example.load().name


def down() -> int:
    from scorefleet.dev import streams

    streams.down()  # Kafka and Redis of `up --streams` keep their state in the cluster dir
    stop_operator()
    cluster.stop()
    print(f"down: operator stopped, control plane removed ({paths.cluster_dir()})",
          file=sys.stderr)
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scorefleet up")
    parser.add_argument("--pipeline", type=Path, default=EXAMPLE)
    parser.add_argument("--streams", action="store_true",
                        help="also Kafka, Redis and the example stream pipeline")
    parser.add_argument("-n", "--namespace", default="default")
    defaults = KwokNodes()
    parser.add_argument("--kwok-nodes", type=int, default=defaults.count,
                        help=f"fake nodes for scale tests (default {defaults.count})")
    parser.add_argument("--kwok-node-cpu", default=defaults.cpu)
    parser.add_argument("--kwok-node-memory", default=defaults.memory)
    parser.add_argument("--kwok-node-pods", default=defaults.pods)
    args = parser.parse_args(argv)
    nodes = KwokNodes(count=args.kwok_nodes, cpu=args.kwok_node_cpu,
                      memory=args.kwok_node_memory, pods=args.kwok_node_pods)
    return up(args.pipeline, args.namespace, kwok_nodes=nodes, streams=args.streams)
