"""The end-to-end latency of a stream pipeline as a scaling input (decide/stream_latency.py
inside decide/autoscaling.py): over the SLO now it scales up, over the SLO in the stable window
it forbids scaling down, within it it has no say; NoData and Stale make the autoscaler hold as
for the RPC p99, a missing end-to-end p99 while events flow is Partial; the partitions cap the
answer and status shows the measured p99 beside its threshold. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.operator.decide.autoscaling import decide_autoscaling
from scorefleet.operator.decide.scaling_inputs import (
    MetricsSample,
    Partial,
    ScalingReadings,
    observation,
)
from scorefleet.operator.decide.stream_latency import end_to_end_ask
from scorefleet.operator.prometheus import TrackSelector, stream_queries
from tests.operator.conftest import make_pipeline
from tests.operator.test_autoscaling_wiring import SCALING, T0, dep, persisted
from tests.operator.test_stream_scaling import lagging, stable, stream

KAFKA = {"bootstrapServers": ["kafka:9092"], "topic": "events", "verdictTopic": "verdicts",
         "deadLetterTopic": "dead", "maxBatchSize": 100}


def streaming(slo: dict[str, Any] | None = None, status: dict[str, Any] | None = None,
              **scaling: Any) -> ScoringPipeline:
    return make_pipeline({"source": {"kafka": KAFKA}, "slo": slo or {},
                          "scaling": {**SCALING, **scaling}}, status=status)


def events(at: datetime, e2e_ms: float | None, e2e_short_ms: float | None = None,
           per_s: float = 500.0, pods: int = 20) -> ScalingReadings:
    """A stream track's readings: no RPCs (a measured 0 qps), events consumed, their p99."""
    return ScalingReadings(qps=0.0, qps_short=0.0, in_flight=0.0, queue_depth=0.0,
                           error_rate=None, pods=pods, scraped_at=at.timestamp() - 2,
                           stream_events_per_s=per_s, e2e_p99_ms=e2e_ms,
                           e2e_p99_short_ms=e2e_ms if e2e_short_ms is None else e2e_short_ms)


def sample(e2e: float | None, short: float | None = None) -> MetricsSample:
    return MetricsSample(measured_at=0.0, qps=0.0, p99_ms=None, stream_events_per_s=100.0,
                         e2e_p99_ms=e2e, e2e_p99_short_ms=short)


def test_the_ask_of_the_end_to_end_p99() -> None:
    assert end_to_end_ask(None, 1000, 4, 4, False, 0.5).floor == 0
    # Over the SLO now, every pod ready, nothing starting: half as many pods again.
    now = end_to_end_ask(sample(1500, 1800), 1000, 4, 4, False, 0.5)
    assert (now.floor, now.p99_ms) == (6, 1500)
    assert "1800 ms over the SLO 1000 ms now" in now.reason
    # Pods still starting, or a scale-up within the cooldown: hold, never down.
    for ready, cooling in ((3, False), (4, True)):
        held = end_to_end_ask(sample(1500, 1800), 1000, 4, ready, cooling, 0.5)
        assert held.floor == 4 and "no scale-down below 4" in held.reason
    # Recovered now, still over in the stable window: no scale-down yet.
    assert end_to_end_ask(sample(1500, 200), 1000, 4, 4, False, 0.5).floor == 4
    within = end_to_end_ask(sample(300, 250), 1000, 4, 4, False, 0.5)
    assert within.floor == 0 and within.p99_ms == 300
    idle = end_to_end_ask(sample(None), 1000, 4, 4, False, 0.5)
    assert idle.floor == 0 and idle.reason == "no event scored in the window"


def test_late_verdicts_scale_up_capped_by_the_partitions_and_shown_beside_the_slo() -> None:
    p = streaming({"endToEndP99Latency": "500ms"})
    # 12 partitions, nothing behind: the lag has no say; the events are late (Redis is slow,
    # say), so the end-to-end p99 asks for 4 ready pods + 50 %.
    out = decide_autoscaling(p, dep(4), events(T0, 900), None, T0, stream=stream(lagging(12, 0)))
    assert out.stable_replicas == 6
    s = stable(out)
    assert (s.reason, s.end_to_end_p99_ms, s.slo_end_to_end_p99_ms) == (
        "EndToEndLatency", 900, 500)
    assert s.stream_bound is not None and "end-to-end latency asks for 6 replicas" in \
        s.stream_bound
    assert s.measurement == ("Sample: 0.0 qps, p99 none; stream 500.0 events/s, end-to-end "
                             "p99 900.0 ms")
    assert [t.reason for t in out.transitions] == ["EndToEndLatency"]
    # 4 partitions, 1 worker per pod: 4 pods at most, and the status says why.
    capped = decide_autoscaling(p, dep(3), events(T0, 900), None, T0,
                                stream=stream(lagging(4, 0)))
    assert capped.stable_replicas == 4 and stable(capped).partition_limited is True
    assert stable(capped).reason == "PartitionLimited"
    # Within the cooldown of that scale-up the late events hold the count, no second jump.
    at = T0 + timedelta(seconds=15)
    again = decide_autoscaling(persisted(p, out), dep(6), events(at, 900), None, at,
                               stream=stream(lagging(12, 0)))
    assert again.stable_replicas == 6 and again.transitions == ()


def test_no_scale_down_while_the_end_to_end_p99_is_over_the_slo() -> None:
    # Idle for RPCs, no backlog: without the end-to-end p99 this fleet goes down at once
    # (no window: 0s). Over the SLO in the stable window it stays; within it, it goes.
    p = streaming(minReplicas=1, scaleDown={"stabilizationWindow": "0s"})
    late = decide_autoscaling(p, dep(4), events(T0, 1500, 400), None, T0,
                              stream=stream(lagging(12, 0)))
    assert late.stable_replicas == 4
    assert stable(late).slo_end_to_end_p99_ms == 1000  # the default for stream pipelines
    fine = decide_autoscaling(p, dep(4), events(T0, 400), None, T0,
                              stream=stream(lagging(12, 0)))
    assert fine.stable_replicas == 2 and stable(fine).reason == "ScaleDown"  # 2 pods a step


def test_no_data_and_stale_hold_missing_p99_while_events_flow_is_partial() -> None:
    p = streaming()
    for readings in (ScalingReadings(), ScalingReadings(error="http://prom (ConnectionError)")):
        out = decide_autoscaling(p, dep(4), readings, None, T0, stream=stream(lagging(12, 0)))
        assert out.stable_replicas == 4 and stable(out).reason == "NoMetrics"
        assert stable(out).end_to_end_p99_ms is None
    old = events(T0 - timedelta(seconds=300), 5000)
    stale = decide_autoscaling(p, dep(4), old, None, T0, stream=stream(lagging(12, 0)))
    assert stale.stable_replicas == 4 and stable(stale).reason == "StaleMetrics"
    assert stable(stale).end_to_end_p99_ms is None  # too old to be shown as now
    # Events flow but their latency is not measured: Partial, never a scale-down.
    obs = observation(events(T0, None), 4, None, 90, T0.timestamp())
    assert isinstance(obs, Partial) and obs.missing == ("end-to-end p99",)
    held = decide_autoscaling(streaming(minReplicas=1, scaleDown={"stabilizationWindow": "0s"}),
                              dep(4), events(T0, None), None, T0, stream=stream(lagging(12, 0)))
    assert held.stable_replicas == 4 and stable(held).reason == "PartialMetrics"
    # An idle stream (no event in the window) has no latency: not missing, not zero.
    idle = observation(events(T0, None, per_s=0.0), 4, None, 90, T0.timestamp())
    assert isinstance(idle, MetricsSample) and idle.e2e_p99_ms is None


def test_rpc_only_pipelines_have_no_end_to_end_input() -> None:
    from tests.operator.test_autoscaling_wiring import load, pipeline

    out = decide_autoscaling(pipeline(), dep(2), load(150, T0), None, T0)
    assert stable(out).slo_end_to_end_p99_ms is None and stable(out).end_to_end_p99_ms is None


def test_stream_queries_select_the_track() -> None:
    q = stream_queries(TrackSelector("mail", "stable", {"namespace": "ns"}), "1m", "30s")
    selector = '{pipeline="mail",track="stable",namespace="ns"}'
    assert q["events_per_s"] == ("sum(rate(scorefleet_stream_consumed_events_total"
                                 f"{selector}[1m]))")
    assert q["e2e_p99_ms"] == ("1000 * histogram_quantile(0.99, sum by (le) (rate("
                               f"scorefleet_stream_end_to_end_seconds_bucket{selector}[1m])))")
    assert "[30s]" in q["e2e_p99_short_ms"]
