"""The servers under test and how to start each one; the calls each is measured with.

Each server process is started once; every target (a kind of call with its SLO) is measured
against it in turn. scorefleet runs from its own command with a config file, as in production.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from build_tools import REPO, Tools

from scorefleet.api.scorer_config import ScorerConfig

MODEL_NAME = "example"
# The scorer binds 0.0.0.0 unless told otherwise; benchmark servers listen on loopback only.
SCOREFLEET_ENV = {"SCOREFLEET_HOST": "127.0.0.1"}
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Target:
    """One measured series: a server answering one kind of call, judged at one SLO."""

    key: str
    label: str  # payload label (payloads.py)
    slo_ms: float


@dataclass(frozen=True)
class ServerDef:
    name: str
    description: str
    argv: Callable[[int, Path], list[str]]  # (port, run dir) -> command line
    targets: tuple[Target, ...]
    ready_label: str  # the payload used to probe readiness
    env: dict[str, str] = field(default_factory=dict)


def ensure_scorer_importable() -> str | None:
    """Work around a scorer build bug; returns a note when the workaround was needed.

    ``scorefleet.scorer.protogen._rewrite_imports`` rewrites imports once per top-level proto
    package, iterating a ``set``: when "inference" comes before "scorefleet" (about half of all
    hash seeds), the already-rewritten ``from scorefleet.scorer._generated.inference import`` is
    rewritten again into ``scorefleet.scorer._generated.scorefleet.scorer._generated...`` and
    every worker dies at import. The stamp still matches, so the broken tree is never rebuilt.
    Here: check the import; if it fails, regenerate with a hash seed whose order is correct.
    """
    check = [sys.executable, "-c", "import scorefleet.scorer.protos"]
    if subprocess.run(check, cwd=REPO, capture_output=True, timeout=120).returncode == 0:
        return None
    for seed in range(10):
        subprocess.run([sys.executable, "-m", "scorefleet.scorer.protogen"], cwd=REPO,
                       env={**os.environ, "PYTHONHASHSEED": str(seed)}, capture_output=True,
                       check=True, timeout=300)
        if subprocess.run(check, cwd=REPO, capture_output=True, timeout=120).returncode == 0:
            return f"generated code was broken (protogen import rewrite); regenerated, seed {seed}"
    raise RuntimeError("scorer's generated code does not import; see protogen._rewrite_imports")


def scorefleet_config(port: int, metrics_port: int, model: Path,
                      batching: dict[str, object]) -> dict[str, object]:
    cfg: dict[str, object] = {
        "pipeline": "bench",
        "track": "stable",
        "model": {"name": MODEL_NAME, "version": "v1", "uri": model.resolve().as_uri(),
                  "sha256": hashlib.sha256(model.read_bytes()).hexdigest(), "threshold": 0.5},
        "batching": batching,
        "port": port,
        "metricsPort": metrics_port,
        "workers": 0,  # one per core, the default a user gets
        "intraOpThreads": 1,
        "drainDelaySeconds": 0.0,
        "gracePeriodSeconds": 2.0,
    }
    ScorerConfig.model_validate(cfg)  # fail here, not as a server that never gets ready
    return cfg


def _scorefleet(name: str, batching: dict[str, object], model: Path,
                metrics_port: Callable[[], int]) -> Callable[[int, Path], list[str]]:
    def argv(port: int, run_dir: Path) -> list[str]:
        path = run_dir / f"scorefleet-{name}.yaml"
        path.write_text(yaml.safe_dump(scorefleet_config(port, metrics_port(), model, batching)))
        return [sys.executable, "-m", "scorefleet.scorer", "--config", str(path),
                "--log-level", "WARNING"]
    return argv


def server_defs(tools: Tools, model: Path, metrics_port: Callable[[], int], quick: bool
                ) -> list[ServerDef]:
    def ceiling(port: int, _run_dir: Path) -> list[str]:
        return [tools.grpcgo_ceiling, "-addr", f"127.0.0.1:{port}"]

    def kserve(port: int, _run_dir: Path) -> list[str]:
        return [tools.kserve_python, str(HERE / "kserve_server.py"), "--model_name", MODEL_NAME,
                "--model_path", str(model), "--grpc_port", str(port),
                "--http_port", str(metrics_port())]

    batched_targets = [
        Target("scorefleet_unary", "score_1", 10.0),
        Target("scorefleet_batched_64", "batch_matrix_64", 20.0),
        Target("scorefleet_oip_unary", "oip_infer_1", 10.0),
    ]
    if not quick:
        batched_targets.append(Target("scorefleet_batched_64_events", "batch_events_64", 20.0))
    ceiling_targets = [Target("grpcgo_ceiling_unary", "score_1", 10.0)]
    if not quick:
        ceiling_targets += [Target("grpcgo_ceiling_oip_unary", "oip_infer_1", 10.0),
                            Target("grpcgo_ceiling_batched_64", "batch_matrix_64", 20.0)]
    defs = [
        ServerDef("grpcgo_ceiling", "minimal grpc-go server, constant answers (no model)",
                  ceiling, tuple(ceiling_targets), "score_1"),
        ServerDef("kserve", "KServe ModelServer, OIP v2 gRPC, custom kserve.Model + onnxruntime",
                  kserve, (Target("kserve_unary", "oip_infer_1", 10.0),), "oip_infer_1"),
        ServerDef("scorefleet", "scorefleet scorer, the defaults (idle-aware dynamic batching)",
                  _scorefleet("batched", {"enabled": True}, model, metrics_port),
                  tuple(batched_targets), "score_1", SCOREFLEET_ENV),
        ServerDef("scorefleet_unbatched", "scorefleet scorer, batching.enabled: false",
                  _scorefleet("unbatched", {"enabled": False}, model, metrics_port),
                  (Target("scorefleet_unbatched_unary", "score_1", 10.0),), "score_1",
                  SCOREFLEET_ENV),
    ]
    # The batcher as it was before issue 10 (the default then): every request waits up to
    # maxQueueDelayUs (1 ms) for a full batch, even when the worker is idle. Measured in the same
    # run so the idle-aware default is compared with it side by side.
    defs.append(ServerDef(
        "scorefleet_fixedwait", "scorefleet, batching.dispatchWhenIdle: false (fixed 1 ms wait)",
        _scorefleet("fixedwait", {"enabled": True, "dispatchWhenIdle": False}, model,
                    metrics_port),
        (Target("scorefleet_fixedwait_unary", "score_1", 10.0),), "score_1", SCOREFLEET_ENV))
    if not quick:
        # Not a default: the batcher tuned for this model (see docs/benchmarks.md): no wait
        # for a batch to fill (requests arriving during a model run still coalesce) and
        # model batches of at most 64 rows, where onnxruntime's tree ensemble is cheapest.
        defs.append(ServerDef(
            "scorefleet_eager", "scorefleet, batching maxQueueDelayUs 0, maxBatchSize 64",
            _scorefleet("eager", {"enabled": True, "maxQueueDelayUs": 0, "maxBatchSize": 64},
                        model, metrics_port),
            (Target("scorefleet_eager_unary", "score_1", 10.0),
             Target("scorefleet_eager_batched_64", "batch_matrix_64", 20.0)), "score_1",
            SCOREFLEET_ENV))
    return defs


__all__ = ["REPO", "ServerDef", "Target", "server_defs"]
