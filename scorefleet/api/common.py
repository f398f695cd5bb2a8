"""Building blocks shared by every wire model: camelCase aliases, durations, quantities."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Base for every wire model: camelCase aliases, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as it is written to Kubernetes or a config file (camelCase, no Nones)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# Go's time.ParseDuration format restricted to what people write: "30s", "5m", "1h30m", "250ms".
# The same text is what Kubernetes CEL's duration() accepts, so rules can compare durations.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, max_length=32,
          description="A duration such as 30s, 5m or 1h30m."),
]


def duration_seconds(text: str) -> float:
    """Seconds in a Duration string; raises ValueError for anything the pattern rejects."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 5m, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


# A Kubernetes resource quantity ("500m", "2", "1Gi"). The schema is the one Kubernetes uses
# for int-or-string quantities, so `kubectl explain` and server-side validation treat it alike.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
Quantity = Annotated[
    str | int,
    WithJsonSchema({
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    }),
]
