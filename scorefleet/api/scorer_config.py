"""The scorer's configuration file: the contract between the operator and the scorer.

The operator renders one of these per track into a ConfigMap (key ``config.yaml``); the scorer
reads it at start and reloads it when the mounted file changes. Field names are camelCase on the
wire, like the ScoringPipeline CRD, so a user reading both sees one vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import Field, model_validator

from scorefleet.api import bounds as b
from scorefleet.api.common import CamelModel

Track = Literal["stable", "candidate"]

__all__ = ["BatchingConfig", "CamelModel", "KafkaStreamConfig", "ModelRef", "OnlineFeaturesConfig",
           "ScorerConfig", "ShadowScoringConfig", "Track", "model_health_service",
           "model_revision"]

# Prefix of the gRPC health service a scorer reports SERVING only while it serves one model.
MODEL_HEALTH_PREFIX = "scorefleet.model."


class ModelRef(CamelModel):
    """Which model to load and how to turn its score into a decision."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                      description="Model name, a DNS label.")
    version: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$",
                         description="Model version, e.g. 2024-06-01 or v7.")
    uri: str = Field(min_length=1, max_length=2048, pattern=r"^(file|https?)://.+",
                     description="Artifact location: file://, http:// or https://.")
    sha256: str | None = Field(default=None, pattern=r"^[a-f0-9]{64}$",
                               description="Expected sha256 of the artifact, lowercase hex.")
    format: Literal["onnx"] = Field(default="onnx", description="Artifact format.")
    threshold: float = Field(default=0.5, ge=0.0, le=1.0,
                             description="Scores at or above this are a positive decision.")


class BatchingConfig(CamelModel):
    """Dynamic batching: coalesce requests into one model call."""

    enabled: bool = Field(default=True, description="Off scores each RPC on its own.")
    max_batch_size: int = Field(default=256, ge=1, le=8192,
                                description="Most events in one model call.")
    max_queue_delay_us: int = Field(default=1000, ge=0, le=1_000_000,
                                    description="Longest a request waits for a batch to fill.")
    dispatch_when_idle: bool = Field(
        default=True, description="Run a batch as soon as the worker has nothing else to do "
        "(waiting only while requests keep arriving); false always waits up to "
        "maxQueueDelayUs for maxBatchSize events.")
    max_queue_size: int = Field(default=8192, ge=1, le=1_000_000,
                                description="Events queued before new requests are shed.")


class ShadowScoringConfig(CamelModel):
    """A second model scoring a sample of requests off the response path."""

    model: ModelRef
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0,
                               description="Fraction of requests also scored by the shadow.")
    max_cpu_fraction: float = Field(default=0.25, gt=0.0, le=1.0,
                                    description="Share of scorer CPU time the shadow may use.")


KEY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class StreamCanaryConfig(CamelModel):
    """A canary on a stream: the candidate's share of events, chosen by a stable hash of each
    event's key and scored by the candidate track over gRPC (rendered by the operator into the
    stable track's config while a canary step runs)."""

    address: str = Field(min_length=3, description="host:port of the candidate track's gRPC "
                                                   "Service.")
    weight: int = Field(ge=0, le=100, description="Percent of events the candidate scores.")
    timeout_seconds: float = Field(default=2.0, gt=0.0, le=60.0,
                                   description="Per candidate call; past it, or on any error, "
                                               "the stable model scores those events.")


class KafkaStreamConfig(CamelModel):
    """Stream mode: consume JSON events, produce verdicts (spec.source.kafka, resolved)."""

    bootstrap_servers: list[str] = Field(min_length=1, description="host:port of brokers.")
    topic: str = Field(min_length=1, description="Input topic.")
    consumer_group: str = Field(min_length=1, description="Group shared by every scorer.")
    verdict_topic: str = Field(min_length=1)
    dead_letter_topic: str = Field(min_length=1)
    event_id_field: str = "id"
    features_field: str = "features"
    max_batch_size: int = Field(default=500, ge=1, le=10000)
    max_batch_wait_seconds: float = Field(default=0.02, ge=0.0, le=10.0)
    max_batches_in_flight: int = Field(
        default=4, ge=1, le=64,
        description="Batches whose verdicts may await acknowledgement while the next is "
                    "fetched and scored; 1 = wait for every batch (no pipelining). Not in the "
                    "CRD: a scorer tuning knob (and the benchmark's before/after switch).")
    canary: StreamCanaryConfig | None = None
    max_poll_interval_seconds: float = Field(default=300.0, gt=0.0,
                                             le=b.MAX_POLL_INTERVAL_SECONDS)
    session_timeout_seconds: float = Field(default=10.0, ge=1.0, le=3600.0)
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    credentials_dir: str | None = Field(
        default=None, description="Directory with files `username` and `password` (a mounted "
                                  "Secret); required for SASL.")


class OnlineFeaturesConfig(CamelModel):
    """Features read from Redis per event (spec.features.redis, resolved)."""

    address: str = Field(min_length=3, description="host:port")
    database: int = Field(default=0, ge=0, le=15)
    key_template: str = Field(min_length=3)
    features: list[str] = Field(min_length=1, max_length=512)
    timestamp_field: str = "_ts"
    timeout_seconds: float = Field(default=0.05, gt=0.0, le=10.0)
    max_staleness_seconds: float | None = Field(default=None, gt=0.0)
    on_miss: Literal["Defaults", "DeadLetter"] = "Defaults"
    defaults: list[float] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OnlineFeaturesConfig:
        if len(KEY_PLACEHOLDER.findall(self.key_template)) != 1 or self.key_template.count(
                "{") != 1 or self.key_template.count("}") != 1:
            raise ValueError("keyTemplate must contain exactly one {eventField} placeholder")
        if self.defaults is not None and len(self.defaults) != len(self.features):
            raise ValueError(f"defaults has {len(self.defaults)} values for "
                             f"{len(self.features)} features")
        if len(set(self.features)) != len(self.features):
            raise ValueError("features must not repeat a name")
        return self

    def key_field(self) -> str:
        """The event field the key template names."""
        return str(KEY_PLACEHOLDER.findall(self.key_template)[0])


class ScorerConfig(CamelModel):
    """Everything one scorer process needs, rendered by the operator per track."""

    pipeline: str = Field(min_length=1, description="Owning ScoringPipeline name.")
    track: Track = "stable"
    model: ModelRef
    shadow: ShadowScoringConfig | None = None
    batching: BatchingConfig = BatchingConfig()
    port: int = Field(default=9000, ge=1, le=65535, description="gRPC port.")
    metrics_port: int = Field(default=9090, ge=1, le=65535, description="Prometheus port.")
    workers: int = Field(default=0, ge=0, le=b.MAX_WORKERS,
                         description="Server processes sharing the port; 0 = one per core.")
    intra_op_threads: int = Field(default=1, ge=1, le=b.MAX_INTRA_OP_THREADS,
                                  description="onnxruntime intra-op threads per worker.")
    drain_delay_seconds: float = Field(default=5.0, ge=0.0, le=b.MAX_DRAIN_DELAY_SECONDS,
                                       description="NOT_SERVING before new RPCs are refused.")
    grace_period_seconds: float = Field(default=20.0, ge=0.0, le=b.MAX_GRACE_PERIOD_SECONDS,
                                        description="Longest in-flight RPCs may take at stop.")
    max_connection_age_seconds: float | None = Field(
        default=300.0, ge=b.MIN_CONNECTION_AGE_SECONDS,
        description="Close HTTP/2 connections after this age."
    )
    stream: KafkaStreamConfig | None = Field(
        default=None, description="Also consume events from Kafka and produce verdicts.")
    online_features: OnlineFeaturesConfig | None = Field(
        default=None, description="Add Redis features to streamed events and to RPCs that "
                                  "carry entity keys.")


def model_revision(ref: ModelRef) -> str:
    """A short hash of everything that makes a model the same model (name, version, artifact,
    digest, format, threshold): equal for equal refs, on the operator's side and the scorer's."""
    canonical = json.dumps(ref.wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def model_health_service(ref: ModelRef) -> str:
    """The gRPC health service name a scorer reports SERVING only while `ref` is its loaded
    primary model. A pod's readiness probe asks for it, so a Ready pod has loaded that model,
    and a Deployment's available replicas prove it for the whole track."""
    return MODEL_HEALTH_PREFIX + model_revision(ref)
