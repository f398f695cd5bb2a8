"""The scorer's configuration file: the contract between the operator and the scorer.

The operator renders one of these per track into a ConfigMap (key ``config.yaml``); the scorer
reads it at start and reloads it when the mounted file changes. Field names are camelCase on the
wire, like the ScoringPipeline CRD, so a user reading both sees one vocabulary.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scorefleet.api.common import CamelModel

Track = Literal["stable", "candidate"]

__all__ = ["BatchingConfig", "CamelModel", "ModelRef", "ScorerConfig", "ShadowScoringConfig",
           "Track"]


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
    max_queue_size: int = Field(default=8192, ge=1, le=1_000_000,
                                description="Events queued before new requests are shed.")


class ShadowScoringConfig(CamelModel):
    """A second model scoring a sample of requests off the response path."""

    model: ModelRef
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0,
                               description="Fraction of requests also scored by the shadow.")
    max_cpu_fraction: float = Field(default=0.25, gt=0.0, le=1.0,
                                    description="Share of scorer CPU time the shadow may use.")


class ScorerConfig(CamelModel):
    """Everything one scorer process needs, rendered by the operator per track."""

    pipeline: str = Field(min_length=1, description="Owning ScoringPipeline name.")
    track: Track = "stable"
    model: ModelRef
    shadow: ShadowScoringConfig | None = None
    batching: BatchingConfig = BatchingConfig()
    port: int = Field(default=9000, ge=1, le=65535, description="gRPC port.")
    metrics_port: int = Field(default=9090, ge=1, le=65535, description="Prometheus port.")
    workers: int = Field(default=0, ge=0, le=64,
                         description="Server processes sharing the port; 0 = one per core.")
    intra_op_threads: int = Field(default=1, ge=1, le=64,
                                  description="onnxruntime intra-op threads per worker.")
    drain_delay_seconds: float = Field(default=5.0, ge=0.0, le=300.0,
                                       description="NOT_SERVING before new RPCs are refused.")
    grace_period_seconds: float = Field(default=20.0, ge=0.0, le=600.0,
                                        description="Longest in-flight RPCs may take at stop.")
    max_connection_age_seconds: float | None = Field(
        default=300.0, ge=1.0, description="Close HTTP/2 connections after this age."
    )
