"""The outbox's names: one per transition occurrence, the same every time it is re-created."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from scorefleet.api.status import PendingEvent
from scorefleet.operator import outbox
from scorefleet.operator.decide.conditions import Transition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BODY: dict[str, Any] = {"metadata": {"name": "phish", "namespace": "fraud", "uid": "u-1",
                                     "resourceVersion": "41"}}
STEP = Transition("Normal", "CanaryStep", "canary step 1/2 at 10%: traffic in effect")


def test_each_transition_of_a_pass_has_its_own_name_derived_from_the_pass() -> None:
    entries = outbox.record(BODY, [STEP, STEP, Transition("Warning", "RolledBack", "x")], T0)
    names = [e.name for e in entries]
    assert len(set(names)) == 3 and all(n.startswith("phish.") for n in names)
    # The same pass recorded again names them the same (re-creating one is idempotent)...
    assert [e.name for e in outbox.record(BODY, [STEP, STEP, STEP], T0)][:2] == names[:2]
    # ...and another pass never reuses one, even with the same transition and input.
    later = outbox.record(BODY, [STEP], T0 + timedelta(microseconds=1))
    other_read = outbox.record({"metadata": {**BODY["metadata"], "resourceVersion": "42"}},
                               [STEP], T0)
    assert not {later[0].name, other_read[0].name} & set(names)


def test_leftovers_round_trip_through_status_and_come_first() -> None:
    old = outbox.record(BODY, [STEP], T0)
    body = {**BODY, "status": {"pendingEvents": [e.wire() for e in old]}}
    assert outbox.left_over(body) == old
    new = outbox.record(BODY, [Transition("Normal", "Promoting", "p")], T0 + timedelta(1))
    assert outbox.pending(outbox.left_over(body), new) == [*old, *new]
    many = [PendingEvent(name=f"phish.{i}", type="Normal", reason="R", message="")
            for i in range(outbox.MAX_PENDING + 5)]
    assert outbox.pending(many, [])[0].name == "phish.5"  # the oldest go past the cap


def test_messages_are_cut_to_what_an_event_keeps() -> None:
    long = Transition("Normal", "AnalysisSkipped", "x" * 5000)
    assert len(outbox.record(BODY, [long], T0)[0].message) == outbox.MESSAGE_LIMIT


def test_an_entry_that_does_not_parse_is_skipped_not_fatal() -> None:
    good = outbox.record(BODY, [STEP], T0)[0].wire()
    body = {**BODY, "status": {"pendingEvents": [{"name": "phish.x"}, good]}}
    assert [e.name for e in outbox.left_over(body)] == [good["name"]]
