"""A canary on a stream, on the real broker with two real scorer processes: the stable track
consumes, each event's key hash picks its track, the candidate scores its share over gRPC.
Every event gets exactly one verdict, from the track its key maps to; a rollback (weight 0)
returns the whole share to stable between two batches; a dead candidate costs no event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scorefleet.dev.kafka import KafkaBroker
from scorefleet.scorer.stream.canary import candidate_share
from tests.scorer.conftest import StartScorer
from tests.scorer.scorer_process import Models, ScorerProcess
from tests.stream.conftest import Collect
from tests.stream.harness import (
    Outcome,
    create_topics,
    event_rows,
    make_events,
    produce,
    stream_config,
)

pytestmark = [pytest.mark.stream, pytest.mark.slow]


def keyed(start: int, n: int) -> tuple[list[bytes], list[bytes], list[str]]:
    events = make_events(event_rows(start + n), inline=32)[start:]
    keys = [f"account-{i}".encode() for i in range(start, start + n)]
    return [json.dumps(e).encode() for e in events], keys, [e["id"] for e in events]


def tracks_of(out: Outcome, ids: list[str]) -> dict[str, tuple[str, str]]:
    return {i: (out.verdicts[i][0]["track"], out.verdicts[i][0]["modelVersion"]) for i in ids}


def set_weight(scorer: ScorerProcess, stream: dict[str, Any], weight: int) -> None:
    scorer.update_config(stream={**stream, "canary": {**stream["canary"], "weight": weight}})
    scorer.wait_for(f"canary weight {weight}",
                    lambda: f"canary weight {weight}% " in scorer.log(), timeout=30)


def test_each_event_scored_once_by_the_track_its_key_hashes_to(
        kafka: KafkaBroker, start_scorer: StartScorer, models: Models, topic_prefix: str,
        collect: Collect) -> None:
    topics = create_topics(kafka.bootstrap, topic_prefix)
    candidate = start_scorer({"model": models.ref("v2"), "track": "candidate"}).wait_serving()
    stream = stream_config(kafka.bootstrap, topics,
                           canary={"address": candidate.address, "weight": 30,
                                   "timeoutSeconds": 2})
    stable = start_scorer({"model": models.ref("v1"), "stream": stream}).wait_serving()
    collector = collect(topics)

    # 30%: the share by key hash, exactly.
    values, keys, ids = keyed(0, 600)
    produce(kafka.bootstrap, topics.events, values, keys)
    out = collector.wait_for(600, timeout=90)
    assert out.duplicates == 0 and not out.dead
    share = candidate_share(keys, 30)
    want = {i: ("candidate", "v2") if s else ("stable", "v1") for i, s in zip(ids, share,
                                                                              strict=True)}
    assert tracks_of(out, ids) == want
    assert 120 < int(share.sum()) < 240

    # Rollback: weight 0 applies between batches; every later event is stable's.
    set_weight(stable, stream, 0)
    values, keys2, ids2 = keyed(600, 300)
    produce(kafka.bootstrap, topics.events, values, keys2)
    out = collector.wait_for(900, timeout=90)
    assert out.duplicates == 0
    assert set(tracks_of(out, ids2).values()) == {("stable", "v1")}

    # A dead candidate: its share falls back to stable, counted; nothing lost or repeated.
    set_weight(stable, stream, 50)
    candidate.kill()
    values, keys3, ids3 = keyed(900, 200)
    produce(kafka.bootstrap, topics.events, values, keys3)
    out = collector.wait_for(1100, timeout=120)
    assert out.duplicates == 0 and not out.dead
    assert set(tracks_of(out, ids3).values()) == {("stable", "v1")}
    assert stable.metric("scorefleet_stream_canary_fallback_events_total") == int(
        candidate_share(keys3, 50).sum())
