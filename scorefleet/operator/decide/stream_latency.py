"""The end-to-end latency of a stream pipeline as a scaling input. Pure.

For a stream pipeline the SLO is the end-to-end latency (an event's timestamp to its verdict
acknowledged, `scorefleet_stream_end_to_end_seconds`) together with the consumer lag. Each asks
for a replica count and the largest wins, as HPA combines several metrics; the partitions cap
them all (stream_lag.bound_replicas). The end-to-end p99 is judged like the RPC p99 is
(decide/scaling.py):

    e2e p99 over the panic window > SLO, all pods ready, no scale-up within the panic cooldown
        -> ask for ready x (1 + panic step)           (the SLO is breached now: act at once)
    e2e p99 over the stable window > SLO
        -> ask for the current count at least         (never scale down while breached)
    otherwise                                         -> no say
    no usable measurement: no say. NoData and Stale make the SLO's own answer hold; a sample
        where events flow but their latency is missing is Partial, which never scales down.

An end-to-end p99 sees what the lag cannot yet: a slow Redis or model makes events late before
a backlog builds; a backlog makes them late too, and the lag sizes that one better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scorefleet.operator.decide.scaling_inputs import MetricsSample, Observation, Partial


@dataclass(frozen=True)
class LatencyAsk:
    """What the end-to-end latency asks of the stable track's replicas (0: no say)."""

    floor: int
    p99_ms: float | None   # measured over the stable window (None: no event, or unmeasured)
    slo_ms: float
    reason: str


def usable_sample(obs: Observation, now: float, stale_after: float) -> MetricsSample | None:
    """The sample an observation carries, if it is fresh enough to act on."""
    sample = obs.sample if isinstance(obs, Partial) else obs
    if not isinstance(sample, MetricsSample) or now - sample.measured_at > stale_after:
        return None
    return sample


def end_to_end_ask(sample: MetricsSample | None, slo_ms: float, current: int, ready: int,
                   cooling: bool, panic_step: float) -> LatencyAsk:
    """The end-to-end p99's say: see the module docstring. `cooling`: the track scaled up
    within the panic cooldown (its new pods are not in the windows yet)."""
    if sample is None:
        return LatencyAsk(0, None, slo_ms, "no end-to-end measurement")
    p99, short = sample.e2e_p99_ms, sample.e2e_p99_short_ms
    now_ms = short if short is not None else p99
    if now_ms is not None and now_ms > slo_ms and ready >= current and not cooling:
        want = math.ceil(max(ready, 1) * (1 + panic_step))
        return LatencyAsk(want, p99, slo_ms,
                          f"end-to-end p99 {now_ms:.0f} ms over the SLO {slo_ms:.0f} ms now: "
                          f"{ready} ready pods + {panic_step:.0%}")
    if p99 is not None and p99 > slo_ms:
        return LatencyAsk(current, p99, slo_ms,
                          f"end-to-end p99 {p99:.0f} ms over the SLO {slo_ms:.0f} ms: "
                          f"no scale-down below {current}")
    if p99 is None:
        return LatencyAsk(0, None, slo_ms, "no event scored in the window")
    return LatencyAsk(0, p99, slo_ms, f"end-to-end p99 {p99:.0f} ms within the SLO "
                                      f"{slo_ms:.0f} ms")
