"""A real scorer (2 workers) under bursts of thousands of concurrent RPCs.

Every RPC must end with a result, RESOURCE_EXHAUSTED naming the limit (and counted as shed with
its reason), DEADLINE_EXCEEDED, or, for the RPCs this client cancelled itself, the client's own
cancellation: never a CANCELLED or UNAVAILABLE status from the server side. Afterwards good
traffic is served within the SLO, the workers' memory has not grown, and the log holds no
traceback, only summary lines.

Bounded and robust on a loaded machine: bursts of 2,000-3,000 RPCs (1-3 s each here, each in a
child process with a timeout), every wait has a timeout, and the assertions are on codes and
counts; the latency check reads the scorer's own histogram (see below).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from scorefleet.scorer.example_model import synthetic_features
from scorefleet.scorer.protos import v1_pb2
from tests.scorer.burst_load import BurstResult, run_burst
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models, ScorerProcess

RPCS = 3000  # one channel, all normal: the case of the issue (it lost 6.6% as CANCELLED)
MIXED_RPCS = 2000
SLO_P99_MS = 10.0
GOOD_RPCS = 300
# Which codes each kind of RPC may end with. A server-side CANCELLED is in none of them.
ALLOWED = {
    "normal": {"OK", "RESOURCE_EXHAUSTED"},
    "tight": {"OK", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"},
    "short": {"OK", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"},
    "cancel": {"OK", "CLIENT_CANCELLED", "RESOURCE_EXHAUSTED"},
}
MIXED = {"tight": 0.2, "short": 0.2, "cancel": 0.2}


class Bursts:
    """The scorer of this module and how many bursts it has taken (the tests share it)."""

    def __init__(self, proc: ScorerProcess) -> None:
        self.proc = proc
        self.count = 0

    def run(self, channels: int, mixed: bool = True) -> BurstResult:
        rpcs = MIXED_RPCS if mixed else RPCS
        result = run_burst(self.proc.address, rpcs, channels=channels,
                           **(MIXED if mixed else {}))
        print(f"burst of {rpcs} on {channels} channel(s): {result.table()}")  # with pytest -s
        assert_codes(result)
        self.count += 1
        return result


@pytest.fixture(scope="module")
def bursts(scorer: ScorerProcess) -> Bursts:
    return Bursts(scorer)


@pytest.fixture(scope="module")
def scorer(start_module_scorer: StartScorer, models: Models) -> ScorerProcess:
    # The default config with two workers (one per core here, as `workers: 0` would give).
    config = {"model": models.ref("v1"), "workers": 2}
    return start_module_scorer(config).wait_serving()


def assert_codes(result: BurstResult) -> None:
    for (kind, code), n in result.codes.items():
        assert code in ALLOWED[kind], f"{n} {kind} RPCs ended {code}: {result.table()}; " \
                                      f"details {result.details.get((kind, code))}"
    for (_, code), details in result.details.items():
        if code == "RESOURCE_EXHAUSTED":  # names the limit that was hit
            assert all("batching.maxQueueSize" in d for d in details), details
    assert result.count("normal", "OK") > 0, result.table()


def worker_rss_bytes(proc: ScorerProcess) -> int:
    """Resident memory of the scorer's worker processes (children of the supervisor)."""
    total = 0
    for child in Path(f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children").read_text().split():
        status = Path(f"/proc/{child}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]
    return total


def test_bursts_end_only_in_explained_codes(bursts: Bursts) -> None:
    scorer = bursts.proc
    results = [bursts.run(channels=1, mixed=False), bursts.run(channels=1),
               bursts.run(channels=16)]
    # Each refusal the clients saw was counted by the server, with the limit as its reason.
    # (With the defaults a burst like this is served, not shed: the backlog waits in gRPC core
    # and the event loop, and the batch queue stays short. Shedding under a flood is
    # tests/scorer/test_server_load.py.)
    seen_shed = sum(r.count(code="RESOURCE_EXHAUSTED") for r in results)
    scorer.wait_for("shed counted", lambda: scorer.metric(
        "scorefleet_shed_requests_total", reason="queue_full") >= seen_shed, timeout=10)
    assert scorer.metric("scorefleet_shed_requests_total") == scorer.metric(
        "scorefleet_shed_requests_total", reason="queue_full")
    # The server saw deadlines pass (the 1 ms and 5-200 ms ones) and counted them by reason.
    assert scorer.metric("scorefleet_expired_requests_total") > 0
    for code in ("UNKNOWN", "INTERNAL", "UNAVAILABLE"):
        assert scorer.metric("scorefleet_requests_total", code=code) == 0, code
    # Server-side CANCELLED only ever for RPCs this client cancelled.
    cancelled = scorer.metric("scorefleet_requests_total", code="CANCELLED")
    assert cancelled == scorer.metric("scorefleet_cancelled_requests_total")
    assert cancelled <= sum(r.count(kind="cancel") for r in results)


def test_memory_steady_and_latency_within_slo_after_bursts(bursts: Bursts) -> None:
    scorer = bursts.proc
    if bursts.count == 0:  # run alone: grow the allocator's arenas first
        bursts.run(channels=16)
    settled = worker_rss_bytes(scorer)
    for _ in range(2):
        bursts.run(channels=8)
    after = worker_rss_bytes(scorer)
    assert after <= settled * 1.25 + 16 * 2**20, f"worker RSS {settled >> 20} -> {after >> 20} MiB"

    # Good traffic afterwards: served within the SLO. Server-side (the scorer's own latency
    # histogram: 99% within the 10 ms bucket) because a client-side p99 on this shared 2-core
    # machine measures the neighbours' CPU as much as the scorer; the client-side median must
    # be within the SLO too.
    row = synthetic_features(1, seed=3)[0].tolist()
    request = v1_pb2.ScoreRequest(event=v1_pb2.Event(features=row))
    bucket = "scorefleet_request_duration_seconds_bucket"
    within_before = scorer.metric(bucket, le=str(SLO_P99_MS / 1000))
    count_before = scorer.metric("scorefleet_request_duration_seconds_count")
    latencies = []
    for _ in range(GOOD_RPCS):
        started = time.perf_counter()
        scorer.scorer.Score(request, timeout=5)  # raises on any non-OK code
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    assert p50 <= SLO_P99_MS, f"client-side p50 {p50} ms"
    scorer.wait_for("good traffic counted", lambda: scorer.metric(
        "scorefleet_request_duration_seconds_count") >= count_before + GOOD_RPCS, timeout=10)
    within = scorer.metric(bucket, le=str(SLO_P99_MS / 1000)) - within_before
    assert within >= 0.99 * GOOD_RPCS, f"{GOOD_RPCS - within:.0f} of {GOOD_RPCS} over the SLO"


def test_log_is_quiet(bursts: Bursts) -> None:
    scorer = bursts.proc
    if bursts.count == 0:
        bursts.run(channels=4)
    scorer.terminate()  # the final summary is written at stop
    assert scorer.wait_exit(30) == 0
    log = scorer.log_path.read_text()
    assert "Traceback" not in log
    assert not re.search(r" (ERROR|CRITICAL) ", log), log[-3000:]
    assert not re.search(r"^E\d{4} ", log, re.MULTILINE), "gRPC core error lines"
    summaries = [line for line in log.splitlines() if "scorefleet.scorer.requests" in line]
    assert summaries and all("last " in line for line in summaries), summaries
    assert any("expired" in line for line in summaries), summaries
    # Thousands of refusals, a handful of lines: one per worker per 30 s, plus one at stop.
    assert len(summaries) <= 2 * 4, summaries
