"""The ScoringPipeline resource: its identity in the API and a typed view of one object."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scorefleet.api.spec import PipelineSpec
from scorefleet.api.status import PipelineStatus

GROUP = "scorefleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScoringPipeline"
PLURAL = "scoringpipelines"
SINGULAR = "scoringpipeline"
SHORT_NAMES = ["sp"]
CATEGORIES = ["scorefleet"]
CRD_NAME = f"{PLURAL}.{GROUP}"

# Children are named <pipeline>-<track>[-suffix]; Service names must be DNS-1035 labels of at
# most 63 characters, and "-candidate" is the longest suffix, so names stop at 50.
MAX_NAME_LENGTH = 50
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; the rest is kept but ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ScoringPipeline(BaseModel):
    """One ScoringPipeline object as read from the API server."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta
    spec: PipelineSpec
    status: PipelineStatus = PipelineStatus()

    @classmethod
    def from_body(cls, body: dict[str, Any] | Any) -> ScoringPipeline:
        """Parse an object body (a dict, or Kopf's Body mapping), dropping Kopf's own status."""
        raw = dict(body)
        status = dict(raw.get("status") or {})
        status.pop("kopf", None)
        return cls.model_validate({
            "apiVersion": raw.get("apiVersion", API_VERSION),
            "kind": raw.get("kind", KIND),
            "metadata": dict(raw.get("metadata") or {}),
            "spec": dict(raw.get("spec") or {}),
            "status": status,
        })
