"""Every transition is announced the same way: one log line and one Kubernetes Event."""

from __future__ import annotations

import logging
from typing import Any

from scorefleet.operator.decide.conditions import Transition
from scorefleet.operator.kube import Kube


def announce(kube: Kube, pipeline: dict[str, Any], transition: Transition,
             logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
    meta = pipeline["metadata"]
    level = logging.WARNING if transition.type == "Warning" else logging.INFO
    logger.log(level, "%s/%s %s: %s", meta["namespace"], meta["name"], transition.reason,
               transition.message)
    kube.post_event(pipeline, transition.type, transition.reason, transition.message)
