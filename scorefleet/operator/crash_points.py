"""Crash points: the operator kills itself at a chosen point of a reconcile, for restart tests.

A pass acts in this order: apply the children, write the status, announce the transitions.
An operator can die between any two of these, and the tests of "killed at every phase resumes
correctly" must hit each window on purpose, not by racing a SIGKILL against a pass that takes a
few milliseconds. `SCOREFLEET_CRASH_AT=<point>:<reason>` makes the operator SIGKILL itself
(no clean-up, as the kernel's OOM killer or a node loss would) at `<point>` of the first pass
that announces a transition named `<reason>`:

    before-status   the children are applied (or deleted), the status is not written
    after-status    the status is written, its transitions not announced yet

Unset (always, outside those tests), `crash_at` does nothing.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from typing import Literal

from scorefleet.operator.decide.conditions import Transition

ENV = "SCOREFLEET_CRASH_AT"
Point = Literal["before-status", "after-status"]
POINTS: tuple[Point, ...] = ("before-status", "after-status")

log = logging.getLogger(__name__)


def crash_at(point: Point, transitions: Sequence[Transition]) -> None:
    """SIGKILL this process if the crash point asked for is `point` on a pass announcing it."""
    asked = os.environ.get(ENV)
    if not asked:
        return
    where, _, reason = asked.partition(":")
    if where not in POINTS:
        raise ValueError(f"{ENV}={asked!r}: the point must be one of {', '.join(POINTS)}")
    if where == point and any(t.reason == reason for t in transitions):
        log.warning("crash point %s reached: SIGKILL", asked)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
