"""Pure parts of stream mode: decoding, online feature rows and misses, offset bookkeeping."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scorefleet.scorer.stream.events import Decoder, Event, Rejected, verdict_json
from scorefleet.scorer.stream.features import (
    ABSENT,
    INCOMPLETE,
    INVALID,
    STALE,
    parse_rows,
    unavailable,
)
from scorefleet.scorer.stream.offsets import OffsetBook

DEC = Decoder("id", "features", "sender", 2)


def decode(value: bytes | None) -> Event | Rejected:
    return DEC.decode(3, 17, b"k", value, 1_700_000_000_000)


def test_good_event_decodes() -> None:
    e = decode(b'{"id": 42, "sender": "a@b", "features": [1, 2.5]}')
    assert isinstance(e, Event)
    assert (e.event_id, e.entity, e.features, e.partition, e.offset) == ("42", "a@b",
                                                                         [1, 2.5], 3, 17)


@pytest.mark.parametrize(("value", "reason"), [
    (None, "empty message"),
    (b"{", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1]", "must be a JSON object"),
    (b'{"sender": "a", "features": [1, 2]}', "'id' (the event id)"),
    (b'{"id": true, "sender": "a", "features": [1, 2]}', "'id' (the event id)"),
    (b'{"id": "x", "features": [1, 2]}', "'sender' (the online feature key)"),
    (b'{"id": "x", "sender": "a", "features": [1]}', "expected 2 features"),
    (b'{"id": "x", "sender": "a", "features": "12"}', "must be a list of numbers"),
    (b'{"id": "x", "sender": "a", "features": [1, NaN]}', "not JSON"),
    (b'{"id": "x", "sender": "a", "features": [1, 1e999]}', "not JSON"),
    (b'{"id": "x", "sender": "a", "features": [1, true]}', "finite numbers"),
    (b'{"id": "x", "sender": "a", "features": [false, 2]}', "finite numbers"),
    (b'{"id": "x", "sender": "a", "features": [1, "2"]}', "finite numbers"),
    (b'{"id": "x", "sender": "a", "features": [1, null]}', "finite numbers"),
    (b'{"id": "x", "sender": "a", "features": [1, [2]]}', "finite numbers"),
    (b'{"id": "x", "sender": "a", "features": [{}, 2]}', "finite numbers"),
    (b'{"id": "x", "sender": "", "features": [1, 2]}', "'sender' (the online feature key)"),
    (b'{"id": "", "sender": "a", "features": [1, 2]}', "'id' (the event id)"),
])
def test_bad_events_are_rejected_with_a_reason(value: bytes | None, reason: str) -> None:
    r = decode(value)
    assert isinstance(r, Rejected)
    assert reason in r.reason
    assert (r.partition, r.offset, r.key, r.value) == (3, 17, b"k", value)


def test_booleans_elsewhere_and_integer_ids_and_keys_decode() -> None:
    e = decode(b'{"id": 7, "sender": 5, "spam": true, "features": [1, 2.5]}')
    assert isinstance(e, Event) and (e.event_id, e.entity, e.features) == ("7", "5", [1, 2.5])
    assert isinstance(decode(b'{"id": "x", "sender": "a", "ok": false, "features": [0, 1]}'),
                      Event)


@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                          st.integers(-2**63, 2**63 - 1),
                          st.booleans(), st.none(), st.text(max_size=3),
                          st.lists(st.integers(), max_size=1), st.just({})),
                min_size=2, max_size=2),
       st.booleans())
def test_feature_type_checks_agree_with_the_exact_rule(features: list[object],
                                                       flag: bool) -> None:
    """The quick check (no JSON boolean in the message: sum() refuses the rest) and the exact
    one (every type int or float, never bool) decide alike, whatever else the event holds."""
    event = {"id": "x", "sender": "a", "features": features, **({"f": True} if flag else {})}
    decoded = decode(json.dumps(event).encode())
    exact = all(type(v) in (int, float) for v in features)
    assert isinstance(decoded, Event) == exact, decoded


@given(st.binary(max_size=200))
def test_decoder_never_raises(value: bytes) -> None:
    assert isinstance(decode(value), Event | Rejected)


def test_verdict_is_json_with_every_field() -> None:
    e = decode(b'{"id": "m\\"1", "sender": "a", "features": [1, 2]}')
    assert isinstance(e, Event)
    v = json.loads(verdict_json(e.event_id, 0.25, False, "v7", "stable", True, e))
    assert v == {"id": 'm"1', "score": 0.25, "decision": False, "modelVersion": "v7",
                 "track": "stable", "featuresMissing": True,
                 "eventTimestampMs": 1_700_000_000_000, "partition": 3, "offset": 17}


def test_feature_rows_and_miss_reasons() -> None:
    defaults = np.array([9.0, 8.0], dtype=np.float32)
    now = 1000.0
    replies: list[list[bytes | None]] = [
        [b"1.5", b"2", b"999"],        # fresh
        [None, None, None],            # absent
        [b"1", None, b"999"],          # incomplete
        [b"1", b"x", b"999"],          # invalid
        [b"1", b"inf", b"999"],        # invalid
        [b"1", b"2", b"100"],          # stale
        [b"1", b"2", None],            # no timestamp: stale when a limit is set
    ]
    rows = parse_rows(replies, 2, defaults, max_staleness=60.0, now=now)
    assert rows.missing == [None, ABSENT, INCOMPLETE, INVALID, INVALID, STALE, STALE]
    assert rows.values[0].tolist() == [1.5, 2.0]
    assert all(rows.values[i].tolist() == [9.0, 8.0] for i in range(1, 7))
    no_limit = parse_rows(replies, 2, defaults, max_staleness=None, now=now)
    assert no_limit.missing[5:] == [None, None]
    down = unavailable(3, defaults, "ConnectionError")
    assert down.missing == ["unavailable"] * 3 and down.values.shape == (3, 2)


def test_offsets_commit_next_and_survive_a_failed_commit() -> None:
    book = OffsetBook()
    book.acknowledge([(0, 5), (0, 6), (1, 2)])
    assert book.pending == {0: 7, 1: 3}
    book.acknowledge([(0, 7)])  # next batch before the commit succeeded
    assert book.pending == {0: 8, 1: 3}
    book.committed({0: 7, 1: 3})  # an older commit landing does not drop the newer offset
    assert book.pending == {0: 8}
    assert book.is_replay(0, 7) and book.is_replay(1, 2) and not book.is_replay(0, 8)
    assert book.forget([0, 4]) == {0: 8} and book.pending == {}


@given(st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=3),
                min_size=1, max_size=20),
       st.sampled_from([None, 30.0]))
def test_fast_and_rowwise_parsing_agree(rows: list[list[float]], staleness: float | None) -> None:
    from scorefleet.scorer.stream.features import _parse_rowwise

    replies: list[list[bytes | None]] = [[*(repr(v).encode() for v in r[:2]), b"990"]
                                         for r in rows]
    defaults = np.zeros(2, dtype=np.float32)
    fast = parse_rows(replies, 2, defaults, staleness, now=1000.0)
    slow = _parse_rowwise(replies, 2, defaults, staleness, now=1000.0)
    assert fast.missing == slow.missing == [None] * len(rows)
    assert np.array_equal(fast.values, slow.values)


@pytest.mark.parametrize("odd", [b'"1"', b"true", b"[1]", b"1,2", b" 2", b"1.", b"", b"nan",
                                 b"1e999", b"{}"])
def test_values_the_fast_path_refuses_are_judged_row_by_row(odd: bytes) -> None:
    """One JSON array parses the common case; anything that is not plainly a JSON number
    (orjson would read '"1"' as a string numpy converts, "1,2" as two numbers) must get
    exactly the row-by-row answer, which float() gives."""
    from scorefleet.scorer.stream.features import _parse_rowwise

    replies: list[list[bytes | None]] = [[b"1.5", b"2", b"990"], [b"3", odd, b"990"],
                                         [b"4", b"5", b"990"]]
    defaults = np.array([7.0, 8.0], dtype=np.float32)
    for staleness in (None, 30.0):
        fast = parse_rows(replies, 2, defaults, staleness, now=1000.0)
        slow = _parse_rowwise(replies, 2, defaults, staleness, now=1000.0)
        assert fast.missing == slow.missing
        assert np.array_equal(fast.values, slow.values)
        assert fast.values[0].tolist() == [1.5, 2.0] and fast.values[2].tolist() == [4.0, 5.0]
