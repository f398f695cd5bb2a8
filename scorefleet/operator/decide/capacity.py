"""What one replica of a track can take: a conservative prior, refined by measurement.

The autoscaler learns each track's saturation throughput per replica (mu in `queueing.py`) from
steady measurements of (QPS per ready replica, p99) and its idle latency from the lowest p99 it
has seen. It starts from a prior that errs towards more replicas, and it never believes a
replica can do more than `optimism` times the load it has actually been seen to serve: a quiet
night must not teach it that each replica could take the morning peak.

Learning happens in log space with a fixed rate, so a single noisy sample moves the estimate by
at most a fraction of its error, and a wrong prior is forgotten after a handful of samples
(0.7^8 ~ 6 % of the prior's error is left after eight).

A breach is not a sample to average (`breached`): p99 over the SLO, or the pod saturated, at a
per-replica load q says the replica cannot take q, and the estimate drops at once, not by the
learning rate. After a latency breach the load planned per replica at the p99 target is at most
q (later samples refine it as usual: the latency keeps saying it). A saturated pod (CPU-
throttled) says nothing through its latency: a throttled pod looked idle to its own histogram
while clients waited 35 ms (docs/autoscaling.md). Then sizing plans at most
(1 - breach_margin) x q per replica and q is kept as a ceiling that quiet samples cannot lift;
only a steady replica serving more than q within the target can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from scorefleet.operator.decide.queueing import (
    DEFAULT_TAIL_FACTOR,
    ReplicaModel,
    infer_throughput,
)

CapacitySource = Literal["prior", "hint", "learned"]


@dataclass(frozen=True)
class LearningTuning:
    """Knobs of the capacity learner; the defaults are what the simulation benchmark ran."""

    # Saturation throughput assumed before any measurement, per replica. The scorer measured
    # 8,575 unary RPC/s per 2-core replica; a heavier model or a smaller pod does less, so the
    # prior is a quarter of that: the first minutes cost replicas, not the SLO.
    prior_throughput_qps: float = 2000.0
    # Idle p99 assumed before measurement, as a fraction of the SLO.
    prior_base_fraction: float = 0.1
    learning_rate: float = 0.3
    # Never believe a replica saturates above this multiple of the load it was seen serving:
    # at low load the p99 is mostly jitter, and the queueing curve extrapolates it far.
    optimism: float = 10.0
    # Samples with p99 under this share of the target only raise the estimate (see `learn`).
    band: float = 0.4
    tail_factor: float = DEFAULT_TAIL_FACTOR
    # After a breach at q per replica, plan at most this much less than q per replica.
    breach_margin: float = 0.1


@dataclass(frozen=True)
class LearnedCapacity:
    """A track's per-replica capacity estimate, serialisable into status."""

    throughput_qps: float
    base_ms: float
    samples: int = 0
    source: CapacitySource = "prior"
    updated_at: float | None = None
    # The lowest per-replica load at which the pods were seen saturated (None: never), raised
    # only by a steady replica that served more within the target.
    breach_qps: float | None = None

    def model(self, tuning: LearningTuning) -> ReplicaModel:
        return ReplicaModel(self.throughput_qps, self.base_ms, tuning.tail_factor)

    def to_dict(self) -> dict[str, Any]:
        return {"throughputQPS": self.throughput_qps, "baseMs": self.base_ms,
                "samples": self.samples, "source": self.source, "updatedAt": self.updated_at,
                "breachQPS": self.breach_qps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedCapacity:
        source = data.get("source", "prior")
        if source not in ("prior", "hint", "learned"):
            raise ValueError(f"capacity.source: unknown value {source!r}")
        updated, breach = data.get("updatedAt"), data.get("breachQPS")
        return cls(throughput_qps=float(data["throughputQPS"]), base_ms=float(data["baseMs"]),
                   samples=int(data.get("samples", 0)), source=source,
                   updated_at=None if updated is None else float(updated),
                   breach_qps=None if breach is None else float(breach))


def prior_capacity(slo_p99_ms: float, target_p99_ms: float, tuning: LearningTuning,
                   target_qps_per_replica: float | None = None) -> LearnedCapacity:
    """The estimate before any measurement.

    With `targetQPSPerReplica` the user has said what one replica sustains: the prior is the
    saturation throughput at which the model puts exactly that load at the autoscaler's p99
    target (the SLO less its headroom), so the first decisions size by the hint as given.
    """
    base = min(tuning.prior_base_fraction * slo_p99_ms, 0.5 * target_p99_ms)
    if target_qps_per_replica is None:
        return LearnedCapacity(tuning.prior_throughput_qps, base)
    mu = infer_throughput(target_qps_per_replica, target_p99_ms, base, tuning.tail_factor)
    assert mu is not None  # load > 0 and SLO > base by construction
    return LearnedCapacity(mu, base, source="hint")


def learn(cap: LearnedCapacity, per_replica_qps: float, p99_ms: float, now: float,
          tuning: LearningTuning, target_p99_ms: float | None = None) -> LearnedCapacity:
    """Fold one steady measurement into the estimate (the caller decides what is steady).

    A sample whose p99 is far under the target (below `band` x target) may raise the estimate
    but not lower it: one parameter cannot fit a real latency curve everywhere, and the fit
    that decides replica counts is the one near the target, so only samples there may pull
    the estimate down (a heavier model shows itself as soon as p99 approaches the target).
    """
    if not (math.isfinite(per_replica_qps) and math.isfinite(p99_ms)) or per_replica_qps <= 0:
        return cap
    base = min(cap.base_ms, p99_ms)
    inferred = infer_throughput(per_replica_qps, p99_ms, base, tuning.tail_factor)
    ceiling = tuning.optimism * per_replica_qps
    a = tuning.learning_rate
    far_below = target_p99_ms is not None and p99_ms < tuning.band * target_p99_ms
    if inferred is None or inferred >= ceiling:
        # Little or no queueing visible: the sample only says "at least the ceiling". It may
        # raise a lower estimate towards the ceiling; it must not lower a higher one.
        target = max(cap.throughput_qps, ceiling)
    elif far_below:
        target = max(cap.throughput_qps, inferred)
    else:
        target = max(inferred, per_replica_qps)  # it did serve this load
    mu = math.exp((1 - a) * math.log(cap.throughput_qps) + a * math.log(target))
    breach = cap.breach_qps
    if breach is not None and target_p99_ms is not None:
        # Serving more than the last breach load within the target (the caller passes no
        # sample it judged a breach) says the ceiling was too low; nothing else lifts it.
        if p99_ms <= target_p99_ms:
            breach = max(breach, per_replica_qps)
        mu = min(mu, _throughput_planning(breach, target_p99_ms, base, tuning) or mu)
    return replace(cap, throughput_qps=mu, base_ms=base, samples=cap.samples + 1,
                   source="learned", updated_at=now, breach_qps=breach)


def breached(cap: LearnedCapacity, per_replica_qps: float, now: float, tuning: LearningTuning,
             target_p99_ms: float, saturated: bool = False) -> LearnedCapacity:
    """The SLO was breached at `per_replica_qps` q per replica: p99 over the SLO, or
    (`saturated`) the pods were CPU-throttled and their latency cannot say by how much.

    At once, not by the learning rate: the estimate drops, if it is higher, so that the load
    the model plans per replica at the p99 target is at most q (latency), or at most
    (1 - breach_margin) x q with q (or an earlier, lower one) kept as the ceiling `learn`
    respects (saturation).
    """
    if not math.isfinite(per_replica_qps) or per_replica_qps <= 0:
        return cap
    if not saturated:
        mu = infer_throughput(per_replica_qps, target_p99_ms, cap.base_ms, tuning.tail_factor)
        return replace(cap, throughput_qps=min(cap.throughput_qps, mu or cap.throughput_qps),
                       samples=cap.samples + 1, source="learned", updated_at=now)
    ceiling = per_replica_qps if cap.breach_qps is None else min(cap.breach_qps,
                                                                 per_replica_qps)
    mu = _throughput_planning(ceiling, target_p99_ms, cap.base_ms, tuning)
    return replace(cap, throughput_qps=min(cap.throughput_qps, mu or cap.throughput_qps),
                   breach_qps=ceiling, samples=cap.samples + 1, source="learned",
                   updated_at=now)


def _throughput_planning(breach_qps: float, target_p99_ms: float, base_ms: float,
                         tuning: LearningTuning) -> float | None:
    """The saturation throughput whose model allows (1 - breach_margin) x `breach_qps` per
    replica at `target_p99_ms` (None: the target is under the idle latency)."""
    return infer_throughput((1 - tuning.breach_margin) * breach_qps, target_p99_ms, base_ms,
                            tuning.tail_factor)
