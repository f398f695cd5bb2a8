"""onnxruntime session options shared by every Python server in the benchmark.

A copy of ``scorefleet.scorer.model_store.session_options`` (this module also runs inside
KServe's own virtualenv, where scorefleet is not installed): one intra-op thread, sequential
execution, no spinning. KServe's model and the model-compute ceiling use it so the three Python
paths run the same model the same way; :func:`check_matches_scorer` guards against drift.
"""

from __future__ import annotations

from typing import Any

import onnxruntime as ort


def session_options(intra_op_threads: int = 1) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def check_matches_scorer() -> None:
    """Raise if the scorer's own options differ from ours (run where scorefleet is installed)."""
    from scorefleet.scorer.model_store import session_options as scorer_options

    ours, theirs = session_options(1), scorer_options(1)
    for attr in ("intra_op_num_threads", "inter_op_num_threads", "execution_mode",
                 "graph_optimization_level"):
        if getattr(ours, attr) != getattr(theirs, attr):
            raise RuntimeError(f"session option {attr} drifted from the scorer's")
    spin = "session.intra_op.allow_spinning"
    if ours.get_session_config_entry(spin) != theirs.get_session_config_entry(spin):
        raise RuntimeError(f"session config {spin} drifted from the scorer's")
