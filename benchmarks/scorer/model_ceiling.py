"""Model-compute ceiling: rows/s of onnxruntime alone on the example model, one thread.

No gRPC, no protobuf, no Python server: one ``InferenceSession.run`` after another on a fixed
batch, bounded in time and count. Both wall-clock and CPU-time rates are reported; the CPU rate
(rows per CPU-second of this process) is the steadier one on a shared machine. With one intra-op
thread a run uses one core, so on N idle cores N processes could reach up to N times the rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from ort_options import session_options

from scorefleet.scorer.example_model import synthetic_features


@dataclass(frozen=True)
class ComputeResult:
    batch: int
    runs: int
    rows_per_s: float  # wall clock, one thread
    rows_per_cpu_s: float
    us_per_row: float  # wall clock


def measure(model: Path, batch: int, seconds: float, max_runs: int = 2_000_000) -> ComputeResult:
    sess = ort.InferenceSession(str(model), sess_options=session_options(1),
                                providers=["CPUExecutionProvider"])
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    x = np.ascontiguousarray(synthetic_features(batch, seed=3))
    for _ in range(20):  # warm-up
        sess.run([out], {name: x})
    runs = 0
    w0, c0 = time.perf_counter(), time.process_time()
    deadline = w0 + seconds
    while runs < max_runs:
        sess.run([out], {name: x})
        runs += 1
        if runs % 16 == 0 and time.perf_counter() >= deadline:
            break
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    rows = runs * batch
    return ComputeResult(batch, runs, round(rows / wall, 1), round(rows / max(cpu, 1e-9), 1),
                         round(wall * 1e6 / rows, 3))


def measure_all(model: Path, batches: tuple[int, ...], seconds: float) -> list[ComputeResult]:
    return [measure(model, b, seconds) for b in batches]
