"""Replaying a real run in the simulator (benchmarks/autoscaling/replay.py): a replica
calibrated from measured points, the run's own spec and windows, and the comparison."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "autoscaling"))

import calibration
from replay import RunSetup, compare, predict

from scorefleet.api.spec import ScalingSpec, SLOSpec

CAL = calibration.from_points("test pod", saturation_qps=400.0, idle_p99_ms=3.0,
                              points=[(100.0, 5.0), (200.0, 9.0), (300.0, 20.0)])


def test_points_become_a_curve_through_them() -> None:
    assert float(CAL.p99_at(np.array(0.5))) == pytest.approx(9.0)
    assert float(CAL.p99_at(np.array(0.0))) == pytest.approx(3.0)
    assert float(CAL.p99_at(np.array(0.9))) > 20.0  # beyond the last point: Kingman's tail
    with pytest.raises(ValueError):
        calibration.from_points("none", 100.0, 1.0, [(150.0, 5.0)])


def setup(offered: np.ndarray) -> RunSetup:
    spec = ScalingSpec.model_validate({"minReplicas": 1, "maxReplicas": 4,
                                       "scaleDown": {"stabilizationWindow": "30s"}})
    return RunSetup(offered=offered, spec=spec, slo=SLOSpec(p99_latency="25ms"), startup_s=10,
                    scrape_s=2, loop_s=5, window_s=20, panic_window_s=10, initial=1)


def test_a_step_scales_up_and_back_down_and_the_comparison_says_so() -> None:
    offered = np.concatenate([np.full(60, 100.0), np.full(120, 700.0), np.full(120, 0.0)])
    fleet = predict(setup(offered), CAL)
    assert fleet.n_pods[:60].max() == 1
    assert fleet.n_pods[60:180].max() >= 3  # 700 req/s need 3+ pods of 400 at 25 ms
    assert fleet.n_pods[-1] == 1
    real = fleet.n_pods.astype(float)
    real_p99 = np.full(len(offered) // 10, 5.0)
    out = compare(real, real_p99, fleet, 25.0, load_stop_s=180)
    assert out["seconds_equal_replicas_fraction"] == 1.0  # compared with itself
    assert out["first_scale_up_s"]["real"] == out["first_scale_up_s"]["simulated"]
    assert out["first_scale_up_s"]["real"] is not None
    assert 60 <= out["first_scale_up_s"]["real"] <= 80
    assert out["first_scale_down_after_load_stop_s"]["simulated"] is not None
    assert out["windows_over_slo"]["real"] == 0


def test_prometheus_outage_holds_in_the_replay() -> None:
    offered = np.concatenate([np.full(120, 700.0), np.full(120, 0.0)])
    s = setup(offered)
    held = predict(RunSetup(**{**s.__dict__, "outages": ((110, 240),)}), CAL)
    free = predict(s, CAL)
    assert held.n_pods[-1] == held.n_pods[110] > 1  # no scale-down without metrics
    assert free.n_pods[-1] == 1


def test_a_real_run_is_rebuilt_per_second_replayed_and_plotted(tmp_path: Path) -> None:
    from real_report import p99_per_window, replay_setup, replicas_per_second, report
    from real_run import Calibration, Chunk, RunResult, Sample, Timeline

    tl = Timeline()
    tl.chunks = [Chunk(float(t), 100.0 if t < 60 else 700.0, 500, 500, 5.0 if t < 60 else 40.0)
                 for t in range(0, 180, 5)]
    tl.samples = [Sample(float(t), 1 if t < 75 else 3, 1 if t < 90 else 3, "ScaleUp", None,
                         0.0) for t in range(0, 300)]
    res = RunResult(tl, load_stop_at=180.0, outage=(180.0, 240.0))
    asked, ready = replicas_per_second(tl.samples, 300)
    assert (asked[74], asked[75], ready[89], ready[90]) == (1, 3, 1, 3)
    p99 = p99_per_window(tl.chunks, 300)
    assert p99[0] == 5.0 and p99[10] == 40.0 and np.isnan(p99[20])
    cal = Calibration(points=[(100.0, 5.0), (200.0, 9.0), (300.0, 20.0)], saturation_qps=400.0,
                      idle_p99_ms=3.0, steps=[])
    spec = ScalingSpec.model_validate({"minReplicas": 1, "maxReplicas": 4})
    setup = replay_setup(res, spec, SLOSpec(p99_latency="25ms"), startup_s=10, scrape_s=2,
                         loop_s=5, window="20s", panic_window="10s")
    assert setup.outages == ((180, 240),) and setup.offered[100] == 700.0
    out, fleet = report(res, cal, setup, tmp_path / "real.png", "test")
    assert (tmp_path / "real.png").stat().st_size > 10_000
    assert out["peak_replicas"]["real"] == 3 and out["peak_replicas"]["simulated"] >= 2
    assert fleet.n_pods[179] == fleet.n_pods[239]  # the replay holds through the outage too
