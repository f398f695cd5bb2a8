"""The canary's share of a stream, by a stable hash of the event key (pure)."""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scorefleet.scorer.stream.canary import BUCKETS, bucket, candidate_share

KEYS = [f"sender-{i}".encode() for i in range(20_000)]
# Each example hashes all 20,000 keys: ~50 ms alone, over Hypothesis's 200 ms deadline on a
# loaded 2-core machine (a whole-suite run saw 359 ms). Time is not what these test.
SLOW_EXAMPLES = settings(deadline=None, max_examples=50)


def test_bucket_is_pinned_blake2b_not_pythons_salted_hash() -> None:
    # Another process (a restarted pod) must put every key in the same bucket.
    digest = hashlib.blake2b(b"sender-1", digest_size=8).digest()
    assert bucket(b"sender-1") == int.from_bytes(digest, "big") % BUCKETS
    assert bucket(b"sender-1") == 8004  # pinned: changing the hash moves live traffic


@SLOW_EXAMPLES
@given(st.integers(0, 100))
def test_share_is_close_to_the_weight(weight: int) -> None:
    share = candidate_share(KEYS, weight).mean() * 100
    assert abs(share - weight) < 1.5, (weight, share)


@SLOW_EXAMPLES
@given(st.integers(0, 100), st.integers(0, 100))
def test_share_is_monotone_in_the_weight(a: int, b: int) -> None:
    """Raising the weight only adds keys to the candidate; lowering only returns them."""
    low, high = sorted((a, b))
    s_low, s_high = candidate_share(KEYS[:2000], low), candidate_share(KEYS[:2000], high)
    assert not (s_low & ~s_high).any()


def test_zero_is_a_full_rollback_and_100_a_full_shift() -> None:
    assert not candidate_share(KEYS[:100], 0).any()
    assert candidate_share(KEYS[:100], 100).all()
    assert candidate_share([], 50).shape == (0,)


def test_same_key_same_track_whatever_the_batch() -> None:
    keys = KEYS[:500]
    whole = candidate_share(keys, 30)
    halves = np.concatenate([candidate_share(keys[:250], 30), candidate_share(keys[250:], 30)])
    assert (whole == halves).all()
