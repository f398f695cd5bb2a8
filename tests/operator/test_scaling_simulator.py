"""The autoscaling simulator's own parts: HPA's algorithm, calibration, CSV replay, determinism.

The simulator (benchmarks/autoscaling) is a benchmark, but its baselines must be the real HPA
algorithm and its physics must come from the scorer's measurements, so those are tested here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "autoscaling"))

import calibration
import hpa
import traces
from fleet import Fleet, Physics, PromView
from policies import HpaQps, Scorefleet, oracle_schedule
from scoring import score
from simulate import simulate

from scorefleet.api.spec import SLOSpec


def test_hpa_resource_ratio_and_tolerance() -> None:
    assert hpa.resource_replicas(4, 4, 0, utilization=0.85, target=0.8) == 4  # within 10 %
    assert hpa.resource_replicas(4, 4, 0, utilization=1.2, target=0.8) == 6
    assert hpa.resource_replicas(10, 10, 0, utilization=0.4, target=0.8) == 5


def test_hpa_counts_starting_pods_as_idle_when_scaling_up() -> None:
    # 4 ready at 120 %, 4 starting: (1.2 x 4) / (0.8 x 8) = 0.75 -> direction flips: keep 8.
    assert hpa.resource_replicas(8, 4, 4, utilization=1.2, target=0.8) == 8
    # 4 ready at 200 %, 2 starting: 8 / (0.8 x 6) = 1.67 -> ceil(1.67 x 6) = 10.
    assert hpa.resource_replicas(6, 4, 2, utilization=2.0, target=0.8) == 10


def test_hpa_external_average_value() -> None:
    assert hpa.external_average_value_replicas(4, 4200.0, 1000.0) == 4  # within 10 %
    assert hpa.external_average_value_replicas(4, 10_000.0, 1000.0) == 10
    assert hpa.external_average_value_replicas(4, 0.0, 1000.0) == 0  # KEDA's empty answer


def test_hpa_default_behaviour_limits_and_windows() -> None:
    b = hpa.Behavior(min_replicas=2, max_replicas=100)
    assert b.normalize(0.0, 10, 40) == 20  # +100 % (more than +4 pods)
    assert b.normalize(15.0, 20, 40) == 40
    b = hpa.Behavior(min_replicas=2, max_replicas=100)
    assert b.normalize(0.0, 2, 40) == 6  # +4 pods (more than +100 %)
    b = hpa.Behavior(min_replicas=2, max_replicas=100)
    b.normalize(0.0, 10, 10)
    assert b.normalize(100.0, 10, 3) == 10  # a higher recommendation is still in the window
    assert b.normalize(301.0, 10, 3) == 3  # 300 s later it is gone; -100 % allows it all


def test_calibration_comes_from_the_scorer_results_file() -> None:
    cal = calibration.load()
    data = json.loads(calibration.SCORER_RESULTS.read_text())
    steps = data["curves"]["scorefleet_unary"]
    assert cal.saturation_qps == max(s["ok_rps"] for s in steps["open"] + steps["closed"])
    assert cal.capacity_qps == data["summary"]["scorefleet_unary"]["closed_peak_rps"]
    measured = {round(s["p99_ms"], 3) for s in steps["open"]}
    assert {23.262, 43.675} <= measured
    assert 23.262 in cal.p99_ms and 43.675 in cal.p99_ms
    assert list(cal.p99_ms) == sorted(cal.p99_ms)  # the measured points are monotone
    p = cal.p99_at(np.array([0.3, 0.6, 0.9, 0.99]))
    assert list(p) == sorted(p) and p[-1] > 100


def test_csv_replay(tmp_path: Path) -> None:
    f = tmp_path / "mine.csv"
    f.write_text("t_seconds,rps\n0,100\n10,200\n20,100\n")
    trace = traces.from_csv(f)
    assert trace.name == "csv_mine"
    body = trace.rate[trace.scored]
    assert len(body) == 21 and body[5] == pytest.approx(150) and body[10] == 200
    f.write_text("t_seconds,rps\n0,100\nten,200\n")
    with pytest.raises(ValueError, match="not a number"):
        traces.from_csv(f)
    f.write_text("0,100\n0,200\n")
    with pytest.raises(ValueError, match="increasing"):
        traces.from_csv(f)


def _short_step() -> traces.Trace:
    full = traces.step("step", 15_000, 3.0)
    keep = traces.WARMUP_S + 20 * 60
    return traces.Trace("step", full.rate[:keep], full.step_at, "", keep)


@pytest.mark.slow
def test_simulation_is_deterministic_and_prometheus_lags_the_truth() -> None:
    cal, trace = calibration.load(), _short_step()
    arrivals = trace.arrivals(seed=3)
    assert np.array_equal(arrivals, trace.arrivals(seed=3))
    runs = [simulate(trace, Scorefleet(SLOSpec()), Physics(), cal, arrivals, 4)
            for _ in range(2)]
    assert runs[0].targets == runs[1].targets
    assert score(trace, runs[0], 25.0) == score(trace, runs[1], 25.0)
    # Five seconds after the step no scrape has seen it yet; 30 s after, rate[1m] lags.
    view = PromView(runs[0])
    assert trace.step_at is not None
    before = view.rate("requests", trace.step_at + 5, 60)
    after = view.rate("requests", trace.step_at + 30, 60)
    assert before is not None and before == pytest.approx(15_000, rel=0.02)
    assert after is not None and 15_000 < after < 40_000


@pytest.mark.slow
def test_scorefleet_scales_the_step_and_recovers() -> None:
    cal, trace = calibration.load(), _short_step()
    arrivals = trace.arrivals(seed=3)
    fleet = simulate(trace, Scorefleet(SLOSpec()), Physics(), cal, arrivals, 4)
    r = score(trace, fleet, 25.0)
    assert r["recovery_s"] is not None and r["recovery_s"] < 120
    assert fleet.n_pods[-1] >= 8  # 45k req/s needs at least 45k / 5.6k per replica
    oracle = oracle_schedule(arrivals, cal, 25.0)
    assert oracle[-1] == 9  # 45k at p99 <= 25 ms, from the measured curve


@pytest.mark.slow
def test_baselines_share_the_physics() -> None:
    cal, trace = calibration.load(), _short_step()
    arrivals = trace.arrivals(seed=3)
    slow = simulate(trace, HpaQps(3905.0, "q"), Physics(startup_s=90), cal, arrivals, 4)
    fast = simulate(trace, HpaQps(3905.0, "q"), Physics(startup_s=10), cal, arrivals, 4)
    assert score(trace, slow, 25.0)["violation_minutes"] >= \
        score(trace, fast, 25.0)["violation_minutes"]
    assert isinstance(slow, Fleet)


@pytest.mark.slow
def test_a_prometheus_outage_holds_scorefleet_and_drops_keda_to_minimum() -> None:
    cal, trace = calibration.load(), traces.prometheus_outage()
    arrivals = trace.arrivals(seed=3)
    start, end = trace.outages[0]
    ours = simulate(trace, Scorefleet(SLOSpec()), Physics(), cal, arrivals, 7)
    keda = simulate(trace, HpaQps(3905.0, "q"), Physics(), cal, arrivals, 8)
    assert set(ours.n_pods[start:end]) == {int(ours.n_pods[start - 1])}  # held throughout
    assert keda.n_pods[start:end].min() == 2  # an empty answer read as 0 (KEDA #3065)
    assert score(trace, ours, 25.0)["violation_minutes"] == 0
    assert score(trace, keda, 25.0)["violation_minutes"] > 5
