"""Judging one analysis interval from measurements: checks with the measured value beside the
threshold, a verdict, and the running tally that turns verdicts into fail / pause / continue.

Canary (per interval, candidate against its own limits and against the stable track):

    requestCount       candidate requests >= minRequestCount        else Inconclusive
    errorRate          candidate errors / requests <= maxErrorRate (default slo.maxErrorRate)
    errorRateIncrease  candidate rate - stable rate <= maxErrorRateIncrease
    p99Latency         candidate p99 <= maxP99Latency (default slo.p99Latency)
    p99LatencyRatio    candidate p99 / stable p99 <= maxP99LatencyRatio
                       (both p99 checks fail only beyond the p99's sampling noise at the
                       interval's request counts, else Inconclusive: see Z below)

Shadow (pairs: the same event scored by both models inside the stable pods):

    pairs              pairs in this interval >= minRequestCount    else Inconclusive
    agreement          same decision at each model's threshold, since the shadow started
                       (the message adds the flips in each direction) >= minAgreement
    scoreDrift         PSI of the candidate's score histogram against the stable model's on the
                       same events, since the shadow started, less PSI's expected sampling noise
                       (message adds the raw PSI and score-delta quantiles) <= maxScoreDrift

Too little traffic is Inconclusive, never a pass and never a failure, with one exception that
needs no statistics: when the errors seen already exceed what `minRequestCount` requests could
tolerate, more requests cannot make the rate acceptable. A counter reset in the window (a
restarted scorer) or a Prometheus that (re)started inside it leaves the interval unjudged: its
increases are not trustworthy. Unjudged intervals count toward inconclusiveLimit like
Inconclusive ones (a candidate whose counters reset every interval is not making progress).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from scorefleet.api.common import duration_seconds
from scorefleet.api.spec import AnalysisSpec, ShadowSpec, SLOSpec
from scorefleet.api.status import AnalysisCheck, AnalysisStatus, CheckResult

# (upper bound, cumulative count) pairs of a Prometheus histogram, +Inf last.
Buckets = Sequence[tuple[float, float]]

AGREE = ("both_positive", "both_negative")
OUTCOMES = (*AGREE, "flip_to_positive", "flip_to_negative")


@dataclass(frozen=True)
class TrackWindow:
    """One track over one interval: increases of its counters, p99 over the interval, and how
    many counter resets Prometheus saw. None = no series (no data, never read as zero).
    `latency`: the interval's latency histogram (seconds), from which p99 was taken; with it,
    a p99 check fails only beyond the sampling noise of the two tracks' request counts."""

    requests: float | None
    errors: float | None
    p99_ms: float | None
    resets: int = 0
    latency: Buckets = ()


@dataclass(frozen=True)
class CanaryWindow:
    """`unobserved_seconds`: how much of the interval's start Prometheus did not see because
    it (re)started since; its increases then cover only part of the interval and resets() of
    the scorers' counters cannot show it (a Prometheus restart loses no scorer count)."""

    stable: TrackWindow
    candidate: TrackWindow
    unobserved_seconds: float = 0.0


@dataclass(frozen=True)
class ShadowWindow:
    """Pairs in this interval, and cumulative pair outcomes and histograms since the shadow
    started (drift needs the whole sample, not one minute of it)."""

    interval_pairs: float | None
    outcomes: Mapping[str, float]
    stable_scores: Buckets
    candidate_scores: Buckets
    delta: Buckets = ()
    resets: int = 0
    unobserved_seconds: float = 0.0  # as in CanaryWindow


@dataclass(frozen=True)
class Verdict:
    """One interval's result; `result` None = not judged (counter reset)."""

    result: CheckResult | None
    checks: tuple[AnalysisCheck, ...]
    samples: int = 0
    agreement: float | None = None
    score_drift: float | None = None

    def summary(self) -> str:
        shown = [c for c in self.checks if c.result != "Successful"] or list(self.checks)
        return "; ".join(describe(c) for c in shown)


def describe(check: AnalysisCheck) -> str:
    """`errorRate 0.031 > 0.001 (Failed)`: the measured value beside its threshold."""
    if check.measured is None or check.threshold is None:
        return f"{check.metric}: {check.message or 'no data'} ({check.result})"
    op: str
    if check.result == "Successful":
        op = check.comparator
    elif check.result == "Failed":
        op = {"<=": ">", ">=": "<"}[check.comparator]
    else:
        op = "vs"
    text = f"{check.metric} {_num(check.measured)} {op} {_num(check.threshold)} ({check.result})"
    return f"{text}: {check.message}" if check.message else text


def _num(x: float) -> str:
    return f"{x:.4g}"


def _check(metric: str, measured: float | None, threshold: float, comparator: Literal["<=", ">="],
           message: str = "") -> AnalysisCheck:
    if measured is None:
        return AnalysisCheck(metric=metric, result="Inconclusive", threshold=threshold,
                             comparator=comparator, message=message or "no data")
    ok = measured <= threshold if comparator == "<=" else measured >= threshold
    return AnalysisCheck(metric=metric, result="Successful" if ok else "Failed",
                         measured=_round(measured), threshold=threshold,
                         comparator=comparator, message=message)


def _inconclusive(metric: str, measured: float | None, threshold: float,
                  comparator: Literal["<=", ">="], message: str) -> AnalysisCheck:
    return AnalysisCheck(metric=metric, result="Inconclusive",
                         measured=None if measured is None else _round(measured),
                         threshold=threshold, comparator=comparator, message=message)


def _not_compared(metric: str, threshold: float) -> AnalysisCheck:
    return AnalysisCheck(metric=metric, result="NotCompared", threshold=threshold,
                         message="the stable track scores the stream outside gRPC (no RPCs "
                                 "this interval): no stable side; the absolute limits decide")


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _combine(checks: Sequence[AnalysisCheck]) -> CheckResult:
    results = {c.result for c in checks} - {"NotCompared"}
    if "Failed" in results:
        return "Failed"
    return "Inconclusive" if "Inconclusive" in results else "Successful"


def _reset(resets: int) -> Verdict:
    return Verdict(None, (AnalysisCheck(
        metric="counterReset", result="Inconclusive", measured=float(resets), threshold=0.0,
        message="a counter restarted in this interval (scorer restart): the interval is not "
                "judged"),))


def _unobserved(seconds: float) -> Verdict:
    return Verdict(None, (AnalysisCheck(
        metric="prometheusRestart", result="Inconclusive", measured=_round(seconds),
        threshold=0.0, message=f"Prometheus (re)started {seconds:.0f}s into this interval and "
                               "did not see its start: the interval is not judged"),))


# -- canary ------------------------------------------------------------------------------------
def judge_canary(analysis: AnalysisSpec, slo: SLOSpec, window: CanaryWindow,
                 stream: bool = False) -> Verdict:
    """`stream`: the pipeline consumes a stream. Its stable pods score the stream in process,
    not over gRPC (they send only the candidate's share to the candidate as ScoreBatch RPCs),
    so when the stable track served no RPCs in the interval the comparisons with it have no
    stable side: they are NotCompared (shown, never deciding) and the candidate's absolute
    limits decide, instead of every interval being Inconclusive until the rollout pauses."""
    cand, stable = window.candidate, window.stable
    if window.unobserved_seconds > 0:
        return _unobserved(window.unobserved_seconds)
    if cand.resets or stable.resets:
        return _reset(cand.resets + stable.resets)
    if (cand.requests is not None and cand.requests < 0) or (
            stable.requests is not None and stable.requests < 0):
        return _reset(1)
    minimum = analysis.min_request_count
    enough = cand.requests is not None and cand.requests >= minimum
    requests = _check("requestCount", cand.requests, float(minimum), ">=")
    if not enough:
        requests = _inconclusive("requestCount", cand.requests, float(minimum), ">=",
                                 "too few candidate requests to judge")
    checks = [requests]

    max_rate = analysis.max_error_rate if analysis.max_error_rate is not None \
        else slo.max_error_rate
    cand_rate = _rate(cand)
    if enough:
        checks.append(_check("errorRate", cand_rate, max_rate, "<="))
    elif cand.errors is not None and cand.errors > max_rate * minimum:
        # Even if every request still to come succeeded, the rate over the minimum sample
        # would exceed the limit: failing now needs no larger sample.
        checks.append(AnalysisCheck(
            metric="errorRate", result="Failed",
            measured=None if cand_rate is None else _round(cand_rate),
            threshold=max_rate, message=f"{cand.errors:.0f} errors in {cand.requests or 0:.0f} "
                                        f"requests exceed {max_rate:g} x {minimum} already"))
    else:
        checks.append(_inconclusive("errorRate", cand_rate, max_rate, "<=",
                                    "too few requests"))

    stable_enough = stable.requests is not None and stable.requests >= minimum
    no_stable_side = stream and not stable.requests
    if no_stable_side and analysis.max_error_rate_increase is not None:
        checks.append(_not_compared("errorRateIncrease", analysis.max_error_rate_increase))
    elif analysis.max_error_rate_increase is not None:
        limit = analysis.max_error_rate_increase
        stable_rate = _rate(stable)
        if enough and stable_enough and cand_rate is not None and stable_rate is not None:
            checks.append(_check("errorRateIncrease", cand_rate - stable_rate, limit, "<=",
                                 f"candidate {cand_rate:.4g} - stable {stable_rate:.4g}"))
        else:
            checks.append(_inconclusive("errorRateIncrease", None, limit, "<=",
                                        "too few requests on a track to compare"))

    max_p99 = 1000.0 * duration_seconds(analysis.max_p99_latency or slo.p99_latency)
    if enough:
        check = _check("p99LatencyMs", cand.p99_ms, max_p99, "<=")
        low = _p99_bound(cand, -1)
        if check.result == "Failed" and low is not None and low <= max_p99:
            check = _within_noise(check, f"the candidate's p{_pct(cand, -1)} {low:.4g} ms is "
                                         f"within {max_p99:g} ms")
        checks.append(check)
    else:
        checks.append(_inconclusive("p99LatencyMs", cand.p99_ms, max_p99, "<=",
                                    "too few requests for a p99"))
    if no_stable_side and analysis.max_p99_latency_ratio is not None:
        checks.append(_not_compared("p99LatencyRatio", analysis.max_p99_latency_ratio))
    elif analysis.max_p99_latency_ratio is not None:
        ratio_limit = analysis.max_p99_latency_ratio
        floor = 1000.0 * duration_seconds(analysis.p99_latency_ratio_floor)
        if enough and stable_enough and cand.p99_ms is not None and stable.p99_ms:
            base = max(stable.p99_ms, floor)
            shown = f"{stable.p99_ms:.4g} ms" + (
                f", compared as the {floor:g} ms floor" if base > stable.p99_ms else "")
            check = _check("p99LatencyRatio", cand.p99_ms / base, ratio_limit,
                           "<=", f"candidate {cand.p99_ms:.4g} ms / stable {shown}")
            low, high = _p99_bound(cand, -1), _p99_bound(stable, +1)
            if (check.result == "Failed" and low is not None and high is not None
                    and low / max(high, floor) <= ratio_limit):
                check = _within_noise(check, f"the candidate's p{_pct(cand, -1)} {low:.4g} ms "
                                             f"/ stable's p{_pct(stable, +1)} {high:.4g} ms = "
                                             f"{low / max(high, floor):.3g}")
            checks.append(check)
        else:
            checks.append(_inconclusive("p99LatencyRatio", None, ratio_limit, "<=",
                                        "too few requests on a track to compare"))
    return Verdict(_combine(checks), tuple(checks), samples=int(cand.requests or 0))


# A p99 from n requests is set by its n/100 slowest: at a few hundred requests an interval,
# a handful of requests delayed by the machine (not by the model) moves it across a bucket.
# Its distribution-free bound: the true p99 lies between the sample's q- and q+ quantiles,
# q+- = 0.99 +- Z sqrt(0.99 * 0.01 / n), at one-sided confidence 95 % each. A p99 check
# therefore fails only when it fails with the candidate at its lower bound and the stable track
# at its upper one; a failure within that noise is Inconclusive (neither pass nor failure, as
# for too few requests). At 100 RPC/s over 5 s the bounds are about p98.2 and p99.8; at
# 10,000 requests p98.8 and p99.2. A candidate slower at every request fails either way.
Z = 1.645


def _p99_quantile(track: TrackWindow, side: int) -> float | None:
    """The quantile bounding `track`'s p99 from below (side -1) or above (+1)."""
    total = track.latency[-1][1] if track.latency else 0.0
    if total <= 0:
        return None
    return min(1.0, max(0.0, 0.99 + side * Z * math.sqrt(0.99 * 0.01 / total)))


def _p99_bound(track: TrackWindow, side: int) -> float | None:
    """That quantile in milliseconds; None without the histogram."""
    q = _p99_quantile(track, side)
    value = None if q is None else histogram_quantile(q, track.latency)
    return None if value is None else 1000.0 * value


def _pct(track: TrackWindow, side: int) -> str:
    return f"{100 * (_p99_quantile(track, side) or 0.99):.3g}"


def _within_noise(check: AnalysisCheck, why: str) -> AnalysisCheck:
    return check.model_copy(update={
        "result": "Inconclusive",
        "message": f"{check.message}; within sampling noise: {why}" if check.message
        else f"within sampling noise: {why}"})


def _rate(track: TrackWindow) -> float | None:
    if not track.requests:
        return None
    return (track.errors or 0.0) / track.requests


# -- shadow ------------------------------------------------------------------------------------
def judge_shadow(shadow: ShadowSpec, min_pairs: int, window: ShadowWindow) -> Verdict:
    if window.unobserved_seconds > 0:
        return _unobserved(window.unobserved_seconds)
    if window.resets or (window.interval_pairs is not None and window.interval_pairs < 0):
        return _reset(max(1, window.resets))
    pairs = window.interval_pairs
    checks = [_check("pairs", pairs, float(min_pairs), ">=")]
    if pairs is None or pairs < min_pairs:
        checks = [_inconclusive("pairs", pairs, float(min_pairs), ">=",
                                "too few shadow pairs in this interval to judge")]
    total = sum(max(0.0, window.outcomes.get(o, 0.0)) for o in OUTCOMES)
    agreement = None
    drift = None
    if total >= min_pairs:
        agreement = sum(window.outcomes.get(o, 0.0) for o in AGREE) / total
        up = window.outcomes.get("flip_to_positive", 0.0) / total
        down = window.outcomes.get("flip_to_negative", 0.0) / total
        checks.append(_check("agreement", agreement, shadow.min_agreement, ">=",
                             f"{total:.0f} pairs; flips {up:.3%} to positive, "
                             f"{down:.3%} to negative"))
        expected = bucket_counts(window.stable_scores)
        actual = bucket_counts(window.candidate_scores)
        raw, noise = psi(expected, actual), psi_noise(expected, actual)
        drift = max(0.0, raw - noise)
        quantiles = [(q, histogram_quantile(q, window.delta)) for q in (0.01, 0.5, 0.99)]
        shown = ", ".join(f"p{round(q * 100)} {v:+.4f}" for q, v in quantiles if v is not None)
        checks.append(_check("scoreDrift", drift, shadow.max_score_drift, "<=",
                             f"PSI of candidate vs stable scores {raw:.4g} less its sampling "
                             f"noise {noise:.4g} at {total:.0f} pairs"
                             + (f"; score delta {shown}" if shown else "")))
    else:
        checks.append(_inconclusive("agreement", None, shadow.min_agreement, ">=",
                                    f"{total:.0f} pairs so far"))
        checks.append(_inconclusive("scoreDrift", None, shadow.max_score_drift, "<=",
                                    f"{total:.0f} pairs so far"))
    return Verdict(_combine(checks), tuple(checks), samples=int(total),
                   agreement=None if agreement is None else _round(agreement),
                   score_drift=None if drift is None else _round(drift))


def bucket_counts(buckets: Buckets) -> list[float]:
    """Per-bucket counts from cumulative (le, count) pairs (negative steps clipped to 0)."""
    out, before = [], 0.0
    for _, cumulative in sorted(buckets, key=lambda b: b[0]):
        out.append(max(0.0, cumulative - before))
        before = max(before, cumulative)
    return out


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index sum((a - e) * ln(a / e)) over bucket shares.

    Shares are smoothed by half a count per bucket (Jeffreys), so an empty bucket on one side
    costs a large but finite amount instead of infinity; identical histograms give exactly 0.
    """
    if len(expected) != len(actual):
        raise ValueError(f"bucket layouts differ: {len(expected)} vs {len(actual)} buckets")
    k = len(expected)
    if k == 0:
        return 0.0
    n_e, n_a = sum(expected), sum(actual)
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe = (e + 0.5) / (n_e + 0.5 * k)
        pa = (a + 0.5) / (n_a + 0.5 * k)
        total += (pa - pe) * math.log(pa / pe)
    return total


def psi_noise(expected: Sequence[float], actual: Sequence[float]) -> float:
    """What PSI measures on sampling noise alone: n * PSI of two samples of one distribution is
    about chi-square with m - 1 degrees of freedom per sample (m = buckets in use), so its
    expectation is (m - 1) (1/n_e + 1/n_a). Without this, a healthy candidate fails on a few
    hundred pairs: v1 vs v2 of the example model measure PSI 0.12 at 355 pairs and 0.02 at
    2,189 (tests/cluster/test_rollout_measured.py). Conservative for paired scores, whose
    noise is partly shared."""
    n_e, n_a = sum(expected), sum(actual)
    if n_e <= 0 or n_a <= 0:
        return 0.0
    used = sum(1 for e, a in zip(expected, actual, strict=True) if e > 0 or a > 0)
    return max(0, used - 1) * (1.0 / n_e + 1.0 / n_a)


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus's histogram_quantile on cumulative buckets: linear within the bucket holding
    the rank; the +Inf bucket answers its lower bound; the first bucket's lower bound is 0 when
    its upper bound is positive (as in Prometheus), else the answer is that upper bound."""
    ordered = sorted(buckets, key=lambda b: b[0])
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for i, (upper, cumulative) in enumerate(ordered):
        if cumulative >= rank:
            if math.isinf(upper):
                return ordered[i - 1][0] if i else None
            if i == 0:
                if upper <= 0:
                    return upper
                lower = 0.0
            in_bucket = cumulative - below
            if in_bucket <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / in_bucket
        lower, below = upper, cumulative
    return ordered[-1][0]


# -- tally -------------------------------------------------------------------------------------
Outcome = Literal["Continue", "Fail", "Pause"]


def tally(status: AnalysisStatus, verdict: Verdict, spec: AnalysisSpec,
          end: str) -> tuple[AnalysisStatus, Outcome]:
    """Count the verdict of the interval ending at `end` (an RFC 3339 time).

    Failures count over the whole rollout (a candidate failing every other interval is not
    healthy); Inconclusive counts in a row (a quiet minute now and then is not a stall).
    Reaching failureLimit fails; reaching inconclusiveLimit pauses.

    An unjudged interval (counter reset, Prometheus restart) counts in the Inconclusive run, so
    a candidate restarting every interval pauses instead of running unjudged forever; and it
    clears `last_result`, so no step or shadow ends on the strength of an interval before it.
    """
    new = replace_status(status, last_run_at=end, checks=list(verdict.checks),
                         last_result=verdict.result)
    if verdict.result is None:
        new = replace_status(new, inconclusive=new.inconclusive + 1)
        return new, "Pause" if new.inconclusive >= spec.inconclusive_limit else "Continue"
    if verdict.result == "Failed":
        new = replace_status(new, failures=new.failures + 1, inconclusive=0)
        return new, "Fail" if new.failures >= spec.failure_limit else "Continue"
    if verdict.result == "Inconclusive":
        new = replace_status(new, inconclusive=new.inconclusive + 1)
        return new, "Pause" if new.inconclusive >= spec.inconclusive_limit else "Continue"
    return replace_status(new, successes=new.successes + 1, inconclusive=0), "Continue"


def replace_status(status: AnalysisStatus, **changes: object) -> AnalysisStatus:
    return status.model_copy(update=changes)


__all__ = ["Buckets", "CanaryWindow", "Outcome", "ShadowWindow", "TrackWindow", "Verdict",
           "bucket_counts", "describe", "histogram_quantile", "judge_canary", "judge_shadow",
           "psi", "psi_noise", "tally"]
