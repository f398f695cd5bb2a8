"""Every transition's Event at least once and never twice, across operator crashes: an outbox.

A pass's transitions are recorded in the status it writes (`status.pendingEvents`), each with
the Event name it will be created under, then announced (one log line and one Event each), then
cleared from status. An operator killed between the status write and the announcements finds
them in status on its next pass and creates them then; a name already taken means the Event
was created before the crash (AlreadyExists is success). The name is derived from the pass
(pipeline uid, the resourceVersion it read, its clock) and the transition's place in it, so
re-creating one entry never creates a second Event, and two passes never share a name.

    pass N:  act on children -> status + pendingEvents [a, b] -> Event a, Event b -> clear
                  killed here: nothing recorded, so pass N+1 decides a and b again ---^
                                                     killed here: pass N+1 creates a, b
                                                     (AlreadyExists for any created)

An Event the API server refuses for good (a 4xx other than AlreadyExists) is dropped with a
warning rather than retried forever; a 429 or 5xx keeps it for the next pass.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from scorefleet.api.status import PendingEvent
from scorefleet.operator.decide.conditions import Transition
from scorefleet.operator.kube import Kube, KubeError

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

# More than a pass ever makes; what a stuck outbox may hold before the oldest are dropped.
MAX_PENDING = 64
MESSAGE_LIMIT = 1024  # what an Event keeps of a message


def left_over(body: dict[str, Any]) -> list[PendingEvent]:
    """Entries a previous pass recorded and did not clear (it died, or the API server failed).
    One that does not parse (written by hand) is skipped: it must not stop every reconcile."""
    out = []
    for item in (body.get("status") or {}).get("pendingEvents") or []:
        try:
            out.append(PendingEvent.model_validate(item))
        except ValidationError:
            continue
    return out


def record(body: dict[str, Any], transitions: Sequence[Transition], at: datetime,
           ) -> list[PendingEvent]:
    """This pass's transitions as outbox entries, named for this pass."""
    meta = body["metadata"]
    seed = f"{meta.get('uid', '')}/{meta.get('resourceVersion', '')}/{at.isoformat()}"
    return [PendingEvent(name=f"{meta['name']}.{_digest(f'{seed}/{i}/{t.reason}')}",
                         type=t.type, reason=t.reason, message=t.message[:MESSAGE_LIMIT])
            for i, t in enumerate(transitions)]


def pending(old: Sequence[PendingEvent], new: Sequence[PendingEvent]) -> list[PendingEvent]:
    """What the status about to be written holds: the leftovers first (older), then this
    pass's entries, the oldest dropped past MAX_PENDING."""
    return [*old, *new][-MAX_PENDING:]


def deliver(kube: Kube, body: dict[str, Any], entries: Sequence[PendingEvent],
            logger: Logger, *, retried: int = 0) -> list[PendingEvent]:
    """Announce each entry (log line + Event); the entries to keep for the next pass. The
    first `retried` entries are leftovers: their log line says they were recorded earlier."""
    meta = body["metadata"]
    keep: list[PendingEvent] = []
    for index, entry in enumerate(entries):
        level = logging.WARNING if entry.type == "Warning" else logging.INFO
        logger.log(level, "%s/%s %s: %s%s", meta["namespace"], meta["name"], entry.reason,
                   entry.message, " (recorded by an earlier pass)" if index < retried else "")
        try:
            kube.create_event(body, entry.name, entry.type, entry.reason, entry.message)
        except KubeError as exc:
            if exc.status == 409:
                continue  # created before the crash: that is the one Event
            if exc.status == 429 or exc.status >= 500:
                keep.append(entry)
            logger.warning("could not create event %s (%s) for %s/%s: %s%s", entry.name,
                           entry.reason, meta["namespace"], meta["name"], exc,
                           "; kept for the next pass" if entry in keep else "; dropped")
    return keep


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
