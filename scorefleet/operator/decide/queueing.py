"""Predicted p99 latency of one scorer replica under load, and the replicas a load needs.

The model is Kingman's heavy-traffic form for a single queue, with an exponential tail:

    p99(load) = base + (V / mu) * rho / (1 - rho),      rho = load / mu

    mu    the replica's saturation throughput (requests/s it completes flat out),
    base  the p99 of an idle replica (service time plus the batcher's own wait),
    V     how bursty service is, in units of the mean service time 1/mu.

Why this and not Erlang-C or M/D/c with the scorer's CPU time per request: measured open-loop
(benchmarks/scorer/results-2026-11-28-quiet.json, `scorefleet_unary`, one 2-worker scorer,
8,575 RPC/s at saturation), p99 is 5.8, 8.3, 16.8, 23.3 and 43.7 ms at 23, 34, 45, 64 and 77 %
of saturation.
M/M/2 with the measured ~233 us per RPC per worker predicts 3.0-4.9 ms over that range, and
M/D/c less still: requests do not queue one by one in front of a CPU, they wait for a batch, for
the event loop, for the other worker's connections (SO_REUSEPORT spreads connections, not
requests), so the tail grows like rho/(1-rho) but on a time scale ~50x the CPU time. The Kingman
form with V = 100 (base 2.7 ms) fits four of those points within 7 % and the 45 % point 26 %
low (docs/autoscaling.md has the table), and it has the right shape: latency does not fall in
proportion as replicas are added, it falls steeply near saturation and hardly at all below
~40 %. Only mu is learned online (`capacity.py`); V scales the tail with the service time, which
is what Kingman's formula says a slower model does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Fitted to the scorer's measured open-loop curve (see the module docstring); the autoscaler's
# learning of `throughput_qps` absorbs a different model's shape near its operating point.
DEFAULT_TAIL_FACTOR = 100.0


@dataclass(frozen=True)
class ReplicaModel:
    """One replica's latency curve: p99 as a function of the requests/s it receives."""

    throughput_qps: float
    base_ms: float
    tail_factor: float = DEFAULT_TAIL_FACTOR

    def __post_init__(self) -> None:
        if not (self.throughput_qps > 0 and self.base_ms >= 0 and self.tail_factor > 0):
            raise ValueError(f"invalid replica model {self}")

    @property
    def tail_ms(self) -> float:
        """The tail's time scale V/mu, in milliseconds."""
        return 1000.0 * self.tail_factor / self.throughput_qps

    def p99_ms(self, load_qps: float) -> float:
        """Predicted p99 at `load_qps` per replica; infinite at or past saturation."""
        rho = max(0.0, load_qps) / self.throughput_qps
        if rho >= 1.0:
            return math.inf
        return self.base_ms + self.tail_ms * rho / (1.0 - rho)

    def load_for_p99(self, target_ms: float) -> float:
        """The most requests/s one replica can take with its p99 at or under `target_ms`."""
        if target_ms <= self.base_ms:
            return 0.0
        y = (target_ms - self.base_ms) / self.tail_ms  # = rho / (1 - rho)
        return self.throughput_qps * y / (1.0 + y)


def infer_throughput(load_qps: float, p99_ms: float, base_ms: float,
                     tail_factor: float = DEFAULT_TAIL_FACTOR) -> float | None:
    """The saturation throughput mu that makes the model predict `p99_ms` at `load_qps`.

    Solves x * mu^2 - x * load * mu - V * load = 0 (x = p99 - base, in seconds), the model
    equation rearranged. None when the sample carries no information about mu: no load, or a
    p99 at or under the idle latency (the replica is not queueing at all).
    """
    x = (p99_ms - base_ms) / 1000.0
    if load_qps <= 0 or x <= 0:
        return None
    disc = (x * load_qps) ** 2 + 4.0 * x * tail_factor * load_qps
    return (x * load_qps + math.sqrt(disc)) / (2.0 * x)


def replicas_for(demand_qps: float, per_replica_qps: float) -> int:
    """Fewest replicas that keep each one at or under `per_replica_qps` (0 for no demand)."""
    if demand_qps <= 0:
        return 0
    if per_replica_qps <= 0:
        raise ValueError("per-replica capacity must be positive when there is demand")
    # A relative epsilon so 3 x 100.0 qps does not become 4 replicas through float noise.
    return max(1, math.ceil(demand_qps / per_replica_qps - 1e-9))
