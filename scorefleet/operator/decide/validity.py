"""A pipeline the operator cannot plan becomes a Degraded condition naming the field, never an
exception in the handler.

The API server's schema and CEL rules are meant to reject such pipelines before the operator
sees them (their bounds come from scorefleet.api.bounds, like the scorer's own). This is the
net under that: a pipeline stored before a rule existed, or a bound the schema cannot express,
still ends in a status that says which field is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.status import PipelineStatus

# The scorer config field (camelCase, as pydantic reports it) -> the spec field it comes from.
SCORER_CONFIG_SOURCES: dict[str, str] = {
    "pipeline": "metadata.name",
    "model": "spec.model",
    "shadow": "spec.rollout.shadow",
    "batching": "spec.scorer.batching",
    "port": "spec.scorer.port",
    "metricsPort": "spec.scorer.metricsPort",
    "workers": "spec.scorer.workers",
    "intraOpThreads": "spec.scorer.intraOpThreads",
    "drainDelaySeconds": "spec.scorer.drainDelay",
    "gracePeriodSeconds": "spec.scorer.gracePeriod",
    "maxConnectionAgeSeconds": "spec.scorer.maxConnectionAge",
    "stream": "spec.source.kafka",
    "onlineFeatures": "spec.features",
}


@dataclass(frozen=True)
class InvalidSpec:
    field: str  # e.g. spec.scorer.drainDelay
    message: str

    @property
    def text(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """Raised inside planning for a value no schema rule could catch; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as the dotted path users write: spec.canary.steps[0].weight."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def from_validation_error(exc: ValidationError, sources: Mapping[str, str] | None = None,
                          prefix: str | None = None) -> InvalidSpec:
    """The first error of `exc` as the spec field it concerns.

    Its location's first element is mapped through `sources` (a scorer-config field -> the
    spec field it comes from), or appended to `prefix` (the spec section a sub-config was built
    from). A model-level error has no location: validators that check several fields start
    their message with the field they blame ("onlineFeatures needs stream"), so that first word
    is looked up in `sources` too.
    """
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    # Models built in Python report field names (drain_delay_seconds), parsed ones aliases.
    head = to_camel(str(loc[0])) if loc else (message.split(" ", 1)[0] if message else "")
    rest = field_path(loc[1:]) if loc else ""
    if sources is not None and head in sources:
        path = sources[head]
    elif prefix is not None:
        # A sub-config's `<x>_seconds` is the spec section's Duration `<x>`.
        path, rest = prefix, field_path(tuple(
            p if isinstance(p, int) else to_camel(str(p)).removesuffix("Seconds") for p in loc))
    else:
        return InvalidSpec(field_path(loc) or "spec", message)
    return InvalidSpec(path + ("" if not rest else rest if rest.startswith("[") else f".{rest}"),
                       message)


def parse_pipeline(body: Mapping[str, Any]) -> ScoringPipeline | InvalidSpec:
    try:
        return ScoringPipeline.from_body(body)
    except ValidationError as exc:
        return from_validation_error(exc)


def last_status(body: Mapping[str, Any]) -> PipelineStatus:
    """The status as stored, for reporting an invalid spec; empty if it cannot be read."""
    raw = dict(body.get("status") or {})
    raw.pop("kopf", None)
    try:
        return PipelineStatus.model_validate(raw)
    except ValidationError:
        return PipelineStatus()
