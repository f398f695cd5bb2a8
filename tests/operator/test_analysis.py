"""Judging intervals: checks carry measured value and threshold; little data is Inconclusive;
counter resets are not judged; PSI over the scorer's own bucket layout sees real drift."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorefleet.api.spec import AnalysisSpec, ShadowSpec, SLOSpec
from scorefleet.api.status import AnalysisStatus
from scorefleet.operator.decide.analysis import (
    CanaryWindow,
    ShadowWindow,
    TrackWindow,
    Verdict,
    bucket_counts,
    describe,
    histogram_quantile,
    judge_canary,
    judge_shadow,
    psi,
    psi_noise,
    tally,
)
from scorefleet.scorer.metrics import DELTA_BUCKETS, SCORE_BUCKETS

ANALYSIS = AnalysisSpec()  # minRequestCount 200, ratio 1.2, error increase 0.001
SLO = SLOSpec()  # p99 25 ms, error rate 0.001


def track(requests: float | None = 1000, errors: float | None = 0, p99: float | None = 10,
          resets: int = 0) -> TrackWindow:
    return TrackWindow(requests=requests, errors=errors, p99_ms=p99, resets=resets)


def canary(cand: TrackWindow, stable: TrackWindow | None = None, **spec: Any) -> Verdict:
    return judge_canary(AnalysisSpec(**spec), SLO, CanaryWindow(stable=stable or track(),
                                                                candidate=cand))


def checks(v: Verdict) -> dict[str, Any]:
    return {c.metric: c for c in v.checks}


# -- canary ------------------------------------------------------------------------------------
def test_healthy_candidate_passes_every_check_with_numbers() -> None:
    v = canary(track(p99=11))
    assert v.result == "Successful"
    by = checks(v)
    assert set(by) == {"requestCount", "errorRate", "errorRateIncrease", "p99LatencyMs",
                       "p99LatencyRatio"}
    assert all(c.measured is not None and c.threshold is not None for c in v.checks)
    assert by["p99LatencyMs"].threshold == 25.0
    assert by["p99LatencyRatio"].measured == pytest.approx(1.1)
    assert by["requestCount"].comparator == ">="


def test_slower_only_at_p99_relative_to_stable_fails() -> None:
    v = canary(track(p99=15), stable=track(p99=10))  # under the 25 ms SLO, 1.5x stable
    assert v.result == "Failed"
    ratio = checks(v)["p99LatencyRatio"]
    assert (ratio.result, ratio.measured, ratio.threshold) == ("Failed", 1.5, 1.2)
    assert "p99LatencyRatio 1.5 > 1.2 (Failed)" in v.summary()


def test_ratio_of_tiny_p99s_is_taken_against_the_floor() -> None:
    # 0.8 ms -> 1.5 ms is 1.9x, but within the 1 ms histogram buckets it is noise.
    v = canary(track(p99=1.5), stable=track(p99=0.8))
    ratio = checks(v)["p99LatencyRatio"]
    assert (v.result, ratio.measured) == ("Successful", 0.3)
    assert "stable 0.8 ms, compared as the 5 ms floor" in ratio.message
    # A real slowdown still fails against the floor, and the floor can be turned off.
    assert canary(track(p99=6.5), stable=track(p99=0.8)).result == "Failed"
    raw = canary(track(p99=1.5), stable=track(p99=0.8), p99_latency_ratio_floor="0s")
    assert checks(raw)["p99LatencyRatio"].measured == pytest.approx(1.875)
    assert raw.result == "Failed"
    # Above the floor the stable p99 itself is the base.
    assert "floor" not in checks(canary(track(p99=15), stable=track(p99=10)))[
        "p99LatencyRatio"].message


def test_absolute_p99_limit_defaults_to_the_slo() -> None:
    v = canary(track(p99=30), stable=track(p99=29))
    assert checks(v)["p99LatencyMs"].result == "Failed"
    assert checks(v)["p99LatencyRatio"].result == "Successful"
    assert canary(track(p99=30), stable=track(p99=29), max_p99_latency="40ms").result == (
        "Successful")


def test_error_spike_fails_absolute_and_relative() -> None:
    v = canary(track(errors=30))
    assert v.result == "Failed"
    assert checks(v)["errorRate"].measured == pytest.approx(0.03)
    assert checks(v)["errorRateIncrease"].result == "Failed"


def test_no_traffic_is_inconclusive_not_success() -> None:
    for cand in (track(requests=None, errors=None, p99=None), track(requests=0, p99=None),
                 track(requests=199)):
        v = canary(cand)
        assert v.result == "Inconclusive", cand
        assert checks(v)["requestCount"].result == "Inconclusive"
        assert checks(v)["requestCount"].threshold == 200


def test_few_requests_with_certainly_too_many_errors_fail_at_once() -> None:
    # 1 error could still be fine (1/200 > 0.001 though: 0.2 allowed); 5 errors cannot.
    assert canary(track(requests=50, errors=0)).result == "Inconclusive"
    v = canary(track(requests=50, errors=5))
    assert v.result == "Failed"
    assert "exceed" in checks(v)["errorRate"].message


def test_stable_without_data_makes_relative_checks_inconclusive() -> None:
    v = canary(track(), stable=track(requests=None, errors=None, p99=None))
    assert v.result == "Inconclusive"
    assert checks(v)["p99LatencyRatio"].result == "Inconclusive"
    assert checks(v)["errorRate"].result == "Successful"


@pytest.mark.parametrize("stable", [track(requests=0, errors=0, p99=None),
                                    track(requests=None, errors=None, p99=None)])
def test_stream_pipeline_without_stable_rpcs_is_judged_on_absolute_limits(
        stable: TrackWindow) -> None:
    # A stream pipeline's stable pods score in process, not over gRPC: with the relative
    # checks Inconclusive every interval, a default stream canary could only ever pause.
    window = CanaryWindow(stable=stable, candidate=track())
    healthy = judge_canary(ANALYSIS, SLO, window, stream=True)
    assert healthy.result == "Successful"
    assert checks(healthy)["p99LatencyRatio"].result == "NotCompared"
    assert checks(healthy)["errorRateIncrease"].result == "NotCompared"
    assert "no stable side" in describe(checks(healthy)["p99LatencyRatio"])
    broken = judge_canary(ANALYSIS, SLO, CanaryWindow(stable=stable, candidate=track(errors=50)),
                          stream=True)
    assert broken.result == "Failed" and checks(broken)["errorRate"].result == "Failed"
    slow = judge_canary(ANALYSIS, SLO, CanaryWindow(stable=stable, candidate=track(p99=80)),
                        stream=True)
    assert slow.result == "Failed" and checks(slow)["p99LatencyMs"].result == "Failed"
    # Not a stream pipeline: no stable data stays Inconclusive (the stable track should serve).
    assert judge_canary(ANALYSIS, SLO, window).result == "Inconclusive"


def test_stream_pipeline_with_stable_rpcs_still_compares() -> None:
    v = judge_canary(ANALYSIS, SLO, CanaryWindow(stable=track(), candidate=track(p99=20)),
                     stream=True)
    assert checks(v)["p99LatencyRatio"].result == "Failed"


def test_disabled_relative_checks_are_not_listed() -> None:
    v = canary(track(), max_p99_latency_ratio=None, max_error_rate_increase=None)
    assert "p99LatencyRatio" not in checks(v) and "errorRateIncrease" not in checks(v)


@pytest.mark.parametrize("window", [
    CanaryWindow(stable=track(), candidate=track(resets=1, errors=500)),
    CanaryWindow(stable=track(resets=2), candidate=track()),
    CanaryWindow(stable=track(), candidate=track(requests=-40)),
])
def test_counter_reset_produces_no_verdict(window: CanaryWindow) -> None:
    v = judge_canary(ANALYSIS, SLO, window)
    assert v.result is None
    assert v.checks[0].metric == "counterReset"


# -- shadow ------------------------------------------------------------------------------------
def cumulative(counts: list[float], bounds: tuple[float, ...] = SCORE_BUCKETS,
               ) -> list[tuple[float, float]]:
    out, running = [], 0.0
    for b, c in zip([*bounds, math.inf], counts, strict=True):
        running += c
        out.append((b, running))
    return out


def histogram(scores: np.ndarray[Any, Any], bounds: tuple[float, ...] = SCORE_BUCKETS,
              ) -> list[tuple[float, float]]:
    idx = np.searchsorted(np.asarray(bounds), scores, side="left")
    return cumulative([float(c) for c in np.bincount(idx, minlength=len(bounds) + 1)], bounds)


RNG = np.random.default_rng(3)
# Detection-like scores: most events benign and scored near 0.
BASE = 1.0 / (1.0 + np.exp(-RNG.normal(-3.0, 1.2, 20000)))


def shadow_window(stable: np.ndarray[Any, Any], cand: np.ndarray[Any, Any],
                  threshold: float = 0.5, interval: float = 5000) -> ShadowWindow:
    p, s = stable >= threshold, cand >= threshold
    return ShadowWindow(
        interval_pairs=interval,
        outcomes={"both_positive": float(np.sum(p & s)), "both_negative": float(np.sum(~p & ~s)),
                  "flip_to_positive": float(np.sum(~p & s)),
                  "flip_to_negative": float(np.sum(p & ~s))},
        stable_scores=histogram(stable), candidate_scores=histogram(cand),
        delta=histogram(cand - stable, DELTA_BUCKETS))


def test_same_model_in_shadow_passes_with_zero_drift() -> None:
    v = judge_shadow(ShadowSpec(), 200, shadow_window(BASE, BASE))
    assert v.result == "Successful"
    assert v.agreement == 1.0 and v.score_drift == 0.0
    assert v.samples == 20000
    assert "flips 0.000% to positive" in checks(v)["agreement"].message


def test_drifting_scores_fail_even_when_decisions_agree() -> None:
    # Every score doubled in odds: few decisions at 0.5 change, the distribution does.
    drifted = 1.0 / (1.0 + (1.0 / BASE - 1.0) / 4.0)
    v = judge_shadow(ShadowSpec(min_agreement=0.9), 200, shadow_window(BASE, drifted))
    by = checks(v)
    assert by["agreement"].result == "Successful"
    assert by["scoreDrift"].result == "Failed"
    assert by["scoreDrift"].measured is not None and by["scoreDrift"].measured > 0.1
    assert ", p50 +" in by["scoreDrift"].message


def test_flipped_decisions_fail_agreement() -> None:
    cand = BASE.copy()
    cand[:600] = 1.0 - cand[:600]  # 3% of events change their decision
    v = judge_shadow(ShadowSpec(), 200, shadow_window(BASE, cand))
    a = checks(v)["agreement"]
    assert (a.result, a.threshold) == ("Failed", 0.99)
    assert a.measured is not None and a.measured < 0.99


def test_too_few_pairs_is_inconclusive() -> None:
    w = shadow_window(BASE[:50], BASE[:50], interval=50)
    v = judge_shadow(ShadowSpec(), 200, w)
    assert v.result == "Inconclusive"
    assert checks(v)["agreement"].result == "Inconclusive"


def test_interval_prometheus_did_not_see_whole_is_not_judged() -> None:
    v = judge_canary(AnalysisSpec(), SLO, CanaryWindow(
        stable=track(), candidate=track(errors=500), unobserved_seconds=12.4))
    assert v.result is None
    assert [(c.metric, c.measured) for c in v.checks] == [("prometheusRestart", 12.4)]
    assert "Prometheus (re)started 12s into this interval" in v.summary()
    w = shadow_window(BASE, BASE)
    shadow = judge_shadow(ShadowSpec(), 200, ShadowWindow(
        interval_pairs=w.interval_pairs, outcomes=w.outcomes, stable_scores=w.stable_scores,
        candidate_scores=w.candidate_scores, unobserved_seconds=3.0))
    assert shadow.result is None and shadow.checks[0].metric == "prometheusRestart"


def test_shadow_counter_reset_is_not_judged() -> None:
    w = shadow_window(BASE, BASE)
    v = judge_shadow(ShadowSpec(), 200, ShadowWindow(
        interval_pairs=w.interval_pairs, outcomes=w.outcomes, stable_scores=w.stable_scores,
        candidate_scores=w.candidate_scores, resets=1))
    assert v.result is None


# -- PSI and the scorer's buckets --------------------------------------------------------------
def test_psi_of_identical_histograms_is_zero_and_symmetric_in_shift() -> None:
    counts = [10.0, 20.0, 30.0, 40.0]
    assert psi(counts, counts) == 0.0
    assert psi(counts, [40.0, 30.0, 20.0, 10.0]) == pytest.approx(
        psi([40.0, 30.0, 20.0, 10.0], counts))
    with pytest.raises(ValueError, match="bucket layouts differ"):
        psi([1.0], [1.0, 2.0])


def test_psi_matches_the_textbook_formula_on_large_counts() -> None:
    e, a = [5000.0, 3000.0, 2000.0], [4000.0, 3500.0, 2500.0]
    pe, pa = [x / 10000 for x in e], [x / 10000 for x in a]
    expected = sum((y - x) * math.log(y / x) for x, y in zip(pe, pa, strict=True))
    assert psi(e, a) == pytest.approx(expected, rel=1e-3)


def test_scorer_bucket_layout_sees_drift_among_low_scores() -> None:
    """Why the scorer's score buckets are spaced in log-odds: a candidate that doubles the odds
    of every event drifts by the same PSI (~0.33) wherever the scores sit, while with 0.05-wide
    buckets the PSI of that very shift falls below the 0.1 gate once most events score near 0,
    as they do in detection (median score 0.0025 here)."""
    rng = np.random.default_rng(5)
    equal_width = tuple(round(0.05 * i, 2) for i in range(1, 21))
    seen = []
    for centre in (-3.0, -4.5, -6.0):
        base = 1.0 / (1.0 + np.exp(-rng.normal(centre, 1.2, 20000)))
        doubled = 1.0 / (1.0 + (1.0 / base - 1.0) / 2.0)
        fine = psi(bucket_counts(histogram(base)), bucket_counts(histogram(doubled)))
        coarse = psi(bucket_counts(histogram(base, equal_width)),
                     bucket_counts(histogram(doubled, equal_width)))
        seen.append((fine, coarse))
    assert all(0.25 < fine < 0.45 for fine, _ in seen)
    assert seen[-1][1] < 0.1 < seen[-1][0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=200))
def test_bucket_counts_invert_cumulative(values: list[float]) -> None:
    cum = histogram(np.asarray(values))
    counts = bucket_counts(cum)
    assert sum(counts) == len(values)
    assert all(c >= 0 for c in counts)


# -- histogram_quantile (Prometheus semantics) -------------------------------------------------
def test_histogram_quantile_interpolates_like_prometheus() -> None:
    b = [(0.1, 50.0), (0.2, 80.0), (0.5, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, b) == pytest.approx(0.1)
    assert histogram_quantile(0.25, b) == pytest.approx(0.05)
    assert histogram_quantile(0.65, b) == pytest.approx(0.15)
    assert histogram_quantile(0.99, b) == pytest.approx(0.2 + 0.3 * 19 / 20)


def test_histogram_quantile_edges() -> None:
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.9, [(1.0, 1.0), (math.inf, 10.0)]) == 1.0  # in +Inf
    assert histogram_quantile(0.1, [(-0.5, 5.0), (0.0, 8.0), (math.inf, 10.0)]) == -0.5


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-0.99, 0.99, allow_nan=False), min_size=5, max_size=300),
       st.sampled_from([0.01, 0.5, 0.99]))
def test_histogram_quantile_lands_in_the_bucket_of_the_true_quantile(
        values: list[float], q: float) -> None:
    arr = np.asarray(values)
    got = histogram_quantile(q, histogram(arr, DELTA_BUCKETS))
    assert got is not None
    bounds = [-math.inf, *DELTA_BUCKETS, math.inf]
    true = float(np.quantile(arr, q, method="inverted_cdf"))
    i = int(np.searchsorted(np.asarray(DELTA_BUCKETS), true, side="left"))
    lo, hi = bounds[i], bounds[i + 1]
    assert min(lo, 0.0 if i == 0 else lo) - 1e-9 <= got <= hi + 1e-9 or got == DELTA_BUCKETS[0]


# -- tally -------------------------------------------------------------------------------------
def verdict(result: Any) -> Verdict:
    return Verdict(result, ())


def test_failures_accumulate_to_the_limit() -> None:
    s = AnalysisStatus()
    s, out = tally(s, verdict("Failed"), ANALYSIS, "t1")
    assert (s.failures, out) == (1, "Continue")
    s, out = tally(s, verdict("Successful"), ANALYSIS, "t2")
    s, out = tally(s, verdict("Failed"), ANALYSIS, "t3")
    assert (s.failures, s.successes, out) == (2, 1, "Fail")
    assert s.last_run_at == "t3" and s.last_result == "Failed"


def test_inconclusive_counts_in_a_row_then_pauses() -> None:
    s = AnalysisStatus()
    for n in (1, 2):
        s, out = tally(s, verdict("Inconclusive"), ANALYSIS, f"t{n}")
        assert (s.inconclusive, out) == (n, "Continue")
    s2, _ = tally(s, verdict("Successful"), ANALYSIS, "t3")
    assert s2.inconclusive == 0
    s, out = tally(s, verdict("Inconclusive"), ANALYSIS, "t3")
    assert (s.inconclusive, out) == (3, "Pause")


def test_unjudged_interval_decides_nothing_but_is_no_progress() -> None:
    s = AnalysisStatus(failures=1, inconclusive=1, successes=3, last_result="Successful")
    after, out = tally(s, Verdict(None, ()), ANALYSIS, "t9")
    assert out == "Continue"
    assert (after.failures, after.successes) == (1, 3)
    # No step may end on the strength of the Successful interval before it...
    assert (after.last_run_at, after.last_result) == ("t9", None)
    # ...and unjudged intervals in a row pause like Inconclusive ones (a candidate whose
    # counters reset every interval does not run on unjudged).
    assert after.inconclusive == 2
    again, out = tally(after, Verdict(None, ()), ANALYSIS, "t10")
    assert (again.inconclusive, out) == (3, "Pause")


def test_describe_puts_measured_beside_threshold() -> None:
    v = canary(track(errors=30))
    text = describe(checks(v)["errorRate"])
    assert text == "errorRate 0.03 > 0.001 (Failed)"
    assert describe(checks(canary(track()))["requestCount"]) == "requestCount 1000 >= 200 " \
                                                               "(Successful)"


def test_psi_sampling_noise_is_not_drift() -> None:
    """Two samples of one score distribution: at a few hundred pairs the raw PSI is often above
    the 0.1 limit on noise alone; less the expected noise, they pass, while a real shift (odds x4)
    on as few pairs still fails."""
    rng = np.random.default_rng(3)
    raw_values, judged = [], []
    for _ in range(20):
        a = rng.choice(BASE, 300)
        b = rng.choice(BASE, 300)
        v = judge_shadow(ShadowSpec(min_agreement=0.0), 200, shadow_window(a, b))
        raw_values.append(psi(bucket_counts(histogram(a)), bucket_counts(histogram(b))))
        judged.append(checks(v)["scoreDrift"])
    # What the uncorrected check would have failed (about a third at 300 pairs; 95% at 100).
    assert sum(r > 0.1 for r in raw_values) >= 4
    assert sum(c.result == "Failed" for c in judged) <= 1
    assert "less its sampling noise" in judged[0].message
    small = rng.choice(BASE, 300)
    drifted = 1.0 / (1.0 + (1.0 / small - 1.0) / 4.0)
    v = judge_shadow(ShadowSpec(min_agreement=0.0), 200, shadow_window(small, drifted))
    assert checks(v)["scoreDrift"].result == "Failed"


def test_psi_noise_of_nothing_is_nothing() -> None:
    assert psi_noise([0, 0], [0, 0]) == 0.0
    assert psi_noise([10, 0, 0], [10, 0, 0]) == 0.0  # one bucket in use: no freedom
    assert psi_noise([50, 50], [100, 0]) == pytest.approx(1 / 100 + 1 / 100)


# -- p99 within sampling noise -----------------------------------------------------------------
def measured(latencies_ms: Any) -> TrackWindow:
    """A track whose interval served these latencies, as the scorer's histogram records them."""
    from scorefleet.scorer.metrics import LATENCY_BUCKETS

    values = np.asarray(latencies_ms, dtype=float) / 1000.0
    buckets = (*((le, float(np.sum(values <= le))) for le in LATENCY_BUCKETS),
               (math.inf, float(len(values))))
    p99 = histogram_quantile(0.99, buckets)
    assert p99 is not None
    return TrackWindow(requests=float(len(values)), errors=0.0, p99_ms=1000.0 * p99,
                       latency=buckets)


def test_a_p99_set_by_a_handful_of_slow_requests_is_not_a_failure() -> None:
    """450 requests an interval (the e2e test's load): the p99 is set by the 5 slowest.
    Eight requests the machine delayed to 7 ms on the candidate, three on stable, move the
    candidate's p99 into the next bucket: 1.22x by point estimate, noise by its bounds."""
    v = canary(measured([0.8] * 442 + [7.0] * 8),
               stable=measured([0.8] * 444 + [0.9] * 3 + [6.5] * 3), min_request_count=20)
    ratio = checks(v)["p99LatencyRatio"]
    assert ratio.measured is not None and ratio.measured > 1.2
    assert ratio.result == "Inconclusive" and "within sampling noise" in ratio.message
    assert v.result == "Inconclusive"


def test_a_candidate_slower_at_every_request_still_fails_at_low_traffic() -> None:
    v = canary(measured([30.8] * 450), stable=measured([0.8] * 444 + [6.5] * 6),
               min_request_count=20)
    assert checks(v)["p99LatencyRatio"].result == "Failed" and v.result == "Failed"


def test_a_p99_only_regression_fails_once_the_sample_resolves_it() -> None:
    """2 % of requests at 12 ms against stable's 0.5 % at 6 ms: noise at 450 requests, a
    regression at 20,000."""
    def pair(n: int) -> Verdict:
        cand = [0.8] * (n - n // 50) + [12.0] * (n // 50)
        stable = [0.8] * (n - n // 200) + [6.0] * (n // 200)
        return canary(measured(cand), stable=measured(stable), min_request_count=20)
    assert checks(pair(20000))["p99LatencyRatio"].result == "Failed"
    assert checks(pair(20000))["p99LatencyMs"].result == "Successful"  # under the 25 ms SLO


def test_same_latency_on_both_tracks_rarely_fails_an_interval() -> None:
    """Both tracks draw from one heavy-tailed distribution (a loaded 2-core machine: 1.5 % of
    requests delayed 5-9 ms), 450 requests each, 400 seeded intervals. By point estimates
    about a fifth of the intervals fail a healthy candidate (two in a rollout roll it back);
    with the noise bounds at most a few percent."""
    rng = np.random.default_rng(7)

    def interval() -> TrackWindow:
        base = rng.gamma(4.0, 0.2, 450)
        slow = rng.random(450) < 0.015
        return measured(np.where(slow, rng.uniform(5.0, 9.0, 450), base))

    results = [checks(canary(interval(), stable=interval(), min_request_count=20))[
        "p99LatencyRatio"] for _ in range(400)]
    by_point = sum(c.measured is not None and c.measured > 1.2 for c in results) / 400
    failed = sum(c.result == "Failed" for c in results) / 400
    assert by_point >= 0.15, by_point
    assert failed <= 0.05, failed
