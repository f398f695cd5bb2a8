"""Names and labels of everything the operator creates for a pipeline."""

from __future__ import annotations

from scorefleet.api.scorer_config import Track

FIELD_MANAGER = "scorefleet-operator"
COMPONENT = "scorefleet-operator"

LABEL_PIPELINE = "scorefleet.io/pipeline"
LABEL_TRACK = "scorefleet.io/track"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "scorefleet"
# On a track's pod template: the revision of the model its pods must have loaded to be Ready.
ANNOTATION_MODEL_REVISION = "scorefleet.io/model-revision"

CONFIG_FILE = "config.yaml"
CONFIG_DIR = "/etc/scorefleet"
KAFKA_CREDENTIALS_DIR = "/etc/scorefleet-kafka"
CONTAINER = "scorer"


def track_name(pipeline: str, track: Track) -> str:
    """Deployment and ConfigMap of one track."""
    return f"{pipeline}-{track}"


def headless_service_name(pipeline: str) -> str:
    return f"{pipeline}-headless"


def pipeline_labels(pipeline: str) -> dict[str, str]:
    """Labels on every child of a pipeline; the pipeline label finds them all."""
    return {
        "app.kubernetes.io/name": "scorefleet-scorer",
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/component": "scorer",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PIPELINE: pipeline,
    }


def track_labels(pipeline: str, track: Track) -> dict[str, str]:
    return {**pipeline_labels(pipeline), LABEL_TRACK: track}


def track_selector(pipeline: str, track: Track) -> dict[str, str]:
    """Pod selector of one track's Deployment (immutable once created: keep it minimal)."""
    return {LABEL_PIPELINE: pipeline, LABEL_TRACK: track}


def pipeline_selector(pipeline: str) -> dict[str, str]:
    """Pods of every track: what the pipeline's Services route to."""
    return {LABEL_PIPELINE: pipeline}
