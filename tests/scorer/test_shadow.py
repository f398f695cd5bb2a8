"""Shadow decisions (pure) and the bulk histogram helper."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from scorefleet.scorer.metrics import SCORE_BUCKETS, observe_many
from scorefleet.scorer.shadow import CpuBudget, compare


def test_compare_counts_each_direction() -> None:
    primary = np.array([0.1, 0.6, 0.4, 0.9, 0.55], dtype=np.float32)
    shadow = np.array([0.2, 0.7, 0.6, 0.3, 0.45], dtype=np.float32)
    out = compare(primary, 0.5, shadow, 0.5)
    assert (out.both_negative, out.both_positive) == (1, 1)
    assert out.flip_to_positive == 1  # 0.4 -> 0.6
    assert out.flip_to_negative == 2  # 0.9 -> 0.3, 0.55 -> 0.45


def test_compare_uses_each_models_threshold() -> None:
    scores = np.array([0.5, 0.7], dtype=np.float32)
    out = compare(scores, 0.5, scores, 0.6)
    assert out.flip_to_negative == 1 and out.both_positive == 1


def test_cpu_budget() -> None:
    budget = CpuBudget(fraction=0.25, window=100.0, slack=0.0)
    assert budget.allow(shadow_cpu=0.0, process_cpu=0.0)
    assert budget.allow(shadow_cpu=2.5, process_cpu=10.0)
    assert not budget.allow(shadow_cpu=3.0, process_cpu=10.0)
    # A new window forgets the overspend once the process has used `window` more CPU.
    assert budget.allow(shadow_cpu=3.0, process_cpu=200.0)


@given(st.lists(st.floats(-2.0, 2.0, allow_nan=False, width=32), max_size=50))
def test_observe_many_matches_observe(values: list[float]) -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", buckets=SCORE_BUCKETS, registry=one)
    h2 = Histogram("h", "h", buckets=SCORE_BUCKETS, registry=many)
    for v in values:
        h1.observe(v)
    observe_many(h2, np.array(values, dtype=np.float32))

    def samples(r: CollectorRegistry) -> dict[str, float]:
        return {f"{s.name}{sorted(s.labels.items())}": s.value
                for m in r.collect() for s in m.samples if not s.name.endswith("_created")}

    a, b = samples(one), samples(many)
    assert a.keys() == b.keys()
    for key in a:
        assert abs(a[key] - b[key]) < 1e-3, key
