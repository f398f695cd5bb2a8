"""The stream's lag inside the autoscaler (decide/autoscaling.py + decide/stream_lag.py): the lag
is a floor above what the latency SLO and QPS ask, the partitions a ceiling, a missing reading
changes nothing. Pure: the lag status is built from offsets by hand, as the measuring pass
builds it from the broker's."""

from __future__ import annotations

from datetime import timedelta

from scorefleet.api.status import StreamLagStatus, TrackAutoscaling
from scorefleet.operator.decide.autoscaling import AutoscalingOutcome, decide_autoscaling
from scorefleet.operator.decide.scaling_inputs import ScalingReadings
from scorefleet.operator.decide.stream_lag import (
    PartitionOffsets,
    StreamInput,
    lag_status,
    stream_input,
)
from tests.operator.test_autoscaling_wiring import T0, dep, load, persisted, pipeline


def lagging(partitions: int, lag_each: int, threshold: int = 100,
            workers: int = 1) -> StreamLagStatus:
    offsets = [PartitionOffsets(p, 0, 10_000, 10_000 - lag_each) for p in range(partitions)]
    return lag_status(offsets, topic="events", group="g", threshold=threshold,
                      consumers_per_replica=workers, measured_at="2026-01-01T00:00:00Z")


def stream(status: StreamLagStatus) -> StreamInput:
    s = stream_input(status)
    assert s is not None
    return s


def stable(out: AutoscalingOutcome) -> TrackAutoscaling:
    assert out.status is not None and out.status.stable is not None
    return out.status.stable


def test_lag_raises_replicas_above_what_qps_and_p99_ask() -> None:
    slo_only = decide_autoscaling(pipeline(), dep(2), load(150, T0), None, T0)
    assert slo_only.stable_replicas == 2  # 150 qps, 5 ms p99: the SLO is content
    # 12 partitions x 50 behind, 100 per consumer (KEDA's rule): 6 consumers, 1 worker per
    # pod -> 6 pods, well under the 12 pods the partitions could feed.
    status = lagging(12, 50)
    out = decide_autoscaling(pipeline(), dep(2), load(150, T0), None, T0,
                             stream=stream(status))
    assert out.stable_replicas == 6
    s = stable(out)
    assert (s.desired, s.reason, s.partition_limited) == (6, "StreamLag", False)
    assert s.stream_bound is not None and "lag asks for 6 replicas (SLO: 2)" in s.stream_bound
    assert [t.reason for t in out.transitions] == ["StreamLag"]
    assert "lag 600 / 100 per consumer" in out.transitions[0].message
    # The next measuring pass starts from the bounded count, not from the SLO's.
    again = decide_autoscaling(persisted(pipeline(), out), dep(6), load(150, T0), None,
                               T0 + timedelta(seconds=15), stream=stream(status))
    assert again.stable_replicas == 6 and again.transitions == ()


def test_replicas_are_capped_at_the_partitions_and_status_says_partition_limited() -> None:
    slo_only = decide_autoscaling(pipeline(), dep(2), load(900, T0), None, T0)
    assert slo_only.stable_replicas == 6
    # 4 partitions, 1 worker per pod: a 5th pod would get no partition.
    out = decide_autoscaling(pipeline(), dep(2), load(900, T0), None, T0,
                             stream=stream(lagging(4, 10)))
    assert out.stable_replicas == 4
    s = stable(out)
    assert (s.desired, s.reason, s.partition_limited) == (4, "PartitionLimited", True)
    assert s.stream_bound is not None and "partitions, not pods, are the limit" in s.stream_bound
    assert [t.reason for t in out.transitions] == ["PartitionLimited"]
    # Two workers per pod: 4 partitions fill 2 pods; but minReplicas (2) is a promise kept.
    two = decide_autoscaling(pipeline(), dep(2), load(900, T0), None, T0,
                             stream=stream(lagging(4, 10, workers=2)))
    assert two.stable_replicas == 2 and stable(two).partition_limited is True
    assert two.transitions == ()  # 2 -> 2: nothing moved, nothing announced
    assert stable(two).last_change_at is None and stable(two).last_direction == 0
    assert stable(out).last_change_at is not None and stable(out).last_direction == 1


def test_lag_beyond_the_partitions_is_partition_limited_not_more_pods() -> None:
    # 3 partitions, 5,000 behind each: the lag alone would ask for 150 consumers.
    out = decide_autoscaling(pipeline(), dep(2), load(150, T0), None, T0,
                             stream=stream(lagging(3, 5_000)))
    assert out.stable_replicas == 3 and stable(out).partition_limited is True


def test_no_lag_data_holds_the_slo_answer_never_zero() -> None:
    down = lag_status("broker down", topic="events", group="g", threshold=100,
                      consumers_per_replica=1, measured_at="2026-01-01T00:00:00Z")
    assert stream_input(down) is None and stream_input(None) is None
    for readings, expected in ((load(900, T0), 6), (ScalingReadings(), 2)):
        without = decide_autoscaling(pipeline(), dep(2), readings, None, T0)
        out = decide_autoscaling(pipeline(), dep(2), readings, None, T0,
                                 stream=stream_input(down))
        assert out.stable_replicas == without.stable_replicas == expected
        assert stable(out).stream_bound is None and stable(out).partition_limited is None
    # A caught-up group (lag 0) is a reading: the SLO's answer stands, never scaled to zero.
    idle = decide_autoscaling(pipeline(), dep(2), load(900, T0), None, T0,
                              stream=stream(lagging(12, 0)))
    assert idle.stable_replicas == 6 and stable(idle).reason == "ScaleUp"
    assert stable(idle).partition_limited is False


def test_a_drained_lag_scales_down_only_after_the_scale_down_window() -> None:
    # The lag raises an idle fleet (0 qps) to 6; then the backlog is gone. The lag's floor is
    # in the stabilization history like the SLO's own recommendation, so the fleet waits the
    # scale-down window (60 s here) before stepping down, as HPA does with KEDA's lag metric.
    p = pipeline(minReplicas=1, scaleDown={"stabilizationWindow": "60s"})
    up = decide_autoscaling(p, dep(1), load(0, T0), None, T0, stream=stream(lagging(12, 50)))
    assert up.stable_replicas == 6 and stable(up).reason == "StreamLag"
    state, replicas = persisted(p, up), 6
    for seconds in (15, 30, 45, 59):
        at = T0 + timedelta(seconds=seconds)
        out = decide_autoscaling(state, dep(replicas), load(0, at), None, at,
                                 stream=stream(lagging(12, 0)))
        assert out.stable_replicas == 6, (seconds, stable(out).message)
        assert stable(out).reason == "StabilizingScaleDown"
        state = persisted(state, out)
    at = T0 + timedelta(seconds=61)
    down = decide_autoscaling(state, dep(6), load(0, at), None, at, stream=stream(lagging(12, 0)))
    assert down.stable_replicas == 4 and stable(down).reason == "ScaleDown"  # 2 pods a step
    assert [t.reason for t in down.transitions] == ["ScaleDown"]


def test_a_lag_seen_while_prometheus_has_no_data_also_holds_the_window() -> None:
    # No scorer series yet (NoData): the SLO holds, the lag alone raises the fleet, and that
    # recommendation is remembered too, so the first pass with data cannot drop it at once.
    p = pipeline(minReplicas=1, scaleDown={"stabilizationWindow": "60s"})
    up = decide_autoscaling(p, dep(1), ScalingReadings(), None, T0,
                            stream=stream(lagging(12, 50)))
    assert up.stable_replicas == 6 and stable(up).reason == "StreamLag"
    at = T0 + timedelta(seconds=20)
    held = decide_autoscaling(persisted(p, up), dep(6), load(0, at), None, at,
                              stream=stream(lagging(12, 0)))
    assert held.stable_replicas == 6 and stable(held).reason == "StabilizingScaleDown"
