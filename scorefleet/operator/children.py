"""What a pipeline's children should be: a pure function from the pipeline to manifests.

Per track (stable, later candidate): a ConfigMap with the scorer config and a Deployment of
scorers mounting it. Per pipeline: a ClusterIP Service for gRPC clients and a headless Service
for clients that balance per request across pods (gRPC round_robin over DNS), which is also what
makes a replica-ratio canary a request-ratio canary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

from scorefleet.api.common import duration_seconds
from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import (
    KafkaStreamConfig,
    ModelRef,
    ScorerConfig,
    ShadowScoringConfig,
    Track,
)
from scorefleet.api.spec import DEFAULT_SCORER_IMAGE
from scorefleet.operator import naming as n

Manifest = dict[str, Any]

_SUFFIXES: dict[str, Decimal] = {
    **{s: Decimal(2) ** (10 * i) for i, s in enumerate(["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"], 1)},
    **{s: Decimal(10) ** e for s, e in [("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6),
                                         ("G", 9), ("T", 12), ("P", 15), ("E", 18)]},
}


@dataclass(frozen=True)
class Defaults:
    """What the operator's own deployment decides for pipelines that do not say."""

    scorer_image: str = DEFAULT_SCORER_IMAGE
    scorer_image_pull_policy: str = "IfNotPresent"


DEFAULTS = Defaults()


@dataclass(frozen=True)
class TrackPlan:
    """One track to run: which model it serves, what it shadows, how many replicas."""

    track: Track
    model: ModelRef
    replicas: int
    shadow: ModelRef | None = None


def parse_quantity(value: str | int) -> Decimal:
    """A Kubernetes quantity ("500m", "2", "1Gi") as a number."""
    text = str(value)
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * _SUFFIXES[suffix]
    return Decimal(text)


def scorer_workers(pipeline: ScoringPipeline) -> int:
    """Worker processes per pod: as set, or one per requested CPU (at least one).

    A container sees every host core, not its CPU request, so "one per core" inside the pod
    would oversubscribe; the request is what the scheduler promised.
    """
    scorer = pipeline.spec.scorer
    if scorer.workers:
        return scorer.workers
    cpu = (scorer.resources.requests or {}).get("cpu")
    return max(1, math.ceil(parse_quantity(cpu))) if cpu is not None else 1


def scorer_config(pipeline: ScoringPipeline, plan: TrackPlan) -> ScorerConfig:
    scorer = pipeline.spec.scorer
    shadow = None
    if plan.shadow is not None:
        settings = pipeline.spec.rollout.shadow
        shadow = ShadowScoringConfig(model=plan.shadow, sample_rate=settings.sample_rate,
                                     max_cpu_fraction=settings.max_cpu_fraction)
    return ScorerConfig(
        pipeline=pipeline.metadata.name,
        track=plan.track,
        model=plan.model,
        shadow=shadow,
        batching=scorer.batching,
        port=scorer.port,
        metrics_port=scorer.metrics_port,
        workers=scorer_workers(pipeline),
        intra_op_threads=scorer.intra_op_threads,
        drain_delay_seconds=duration_seconds(scorer.drain_delay),
        grace_period_seconds=duration_seconds(scorer.grace_period),
        max_connection_age_seconds=max(1.0, duration_seconds(scorer.max_connection_age)),
        stream=_stream_config(pipeline),
        online_features=(pipeline.spec.features.redis.scorer_config()
                         if pipeline.spec.features else None),
    )


def _stream_config(pipeline: ScoringPipeline) -> KafkaStreamConfig | None:
    source = pipeline.spec.source
    if source is None:
        return None
    meta = pipeline.metadata
    return source.kafka.scorer_config(f"scorefleet.{meta.namespace}.{meta.name}",
                                      n.KAFKA_CREDENTIALS_DIR)


def owner_reference(pipeline: ScoringPipeline) -> dict[str, Any]:
    return {
        "apiVersion": pipeline.api_version,
        "kind": pipeline.kind,
        "name": pipeline.metadata.name,
        "uid": pipeline.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(pipeline: ScoringPipeline, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": pipeline.metadata.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(pipeline)],
    }


def config_map(pipeline: ScoringPipeline, plan: TrackPlan) -> Manifest:
    config = scorer_config(pipeline, plan)
    name = n.track_name(pipeline.metadata.name, plan.track)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(pipeline, name, n.track_labels(pipeline.metadata.name, plan.track)),
        "data": {n.CONFIG_FILE: yaml.safe_dump(config.wire(), sort_keys=False)},
    }


def deployment(pipeline: ScoringPipeline, plan: TrackPlan, defaults: Defaults) -> Manifest:
    name = n.track_name(pipeline.metadata.name, plan.track)
    scorer = pipeline.spec.scorer
    labels = n.track_labels(pipeline.metadata.name, plan.track)
    stop_seconds = duration_seconds(scorer.drain_delay) + duration_seconds(scorer.grace_period)
    container: dict[str, Any] = {
        "name": n.CONTAINER,
        "image": scorer.image or defaults.scorer_image,
        "imagePullPolicy": scorer.image_pull_policy or defaults.scorer_image_pull_policy,
        "command": ["python", "-m", "scorefleet.scorer"],
        "args": ["--config", f"{n.CONFIG_DIR}/{n.CONFIG_FILE}"],
        "ports": [
            {"name": "grpc", "containerPort": scorer.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": scorer.metrics_port, "protocol": "TCP"},
        ],
        "env": [e.wire() for e in scorer.env],
        "resources": scorer.resources.wire(),
        # Readiness follows the scorer's gRPC health: NOT_SERVING during drain or while no
        # model is loaded takes the pod out of every Service before RPCs are refused.
        "readinessProbe": {"grpc": {"port": scorer.port}, "periodSeconds": 2,
                           "failureThreshold": 1},
        "livenessProbe": {"grpc": {"port": scorer.port}, "initialDelaySeconds": 30,
                          "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [{"name": "config", "mountPath": n.CONFIG_DIR, "readOnly": True}],
    }
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": name}}]
    source = pipeline.spec.source
    if source is not None and source.kafka.credentials_secret is not None:
        # SASL username/password as files the scorer reads (never in the ConfigMap).
        container["volumeMounts"].append({"name": "kafka-credentials", "readOnly": True,
                                          "mountPath": n.KAFKA_CREDENTIALS_DIR})
        volumes.append({"name": "kafka-credentials", "secret": {
            "secretName": source.kafka.credentials_secret.name}})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(pipeline, name, labels),
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": n.track_selector(pipeline.metadata.name, plan.track)},
            # Never below the serving capacity during a rolling update: surge, don't drain.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(scorer.metrics_port),
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": math.ceil(stop_seconds) + 5,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _service(pipeline: ScoringPipeline, name: str, headless: bool) -> Manifest:
    scorer = pipeline.spec.scorer
    spec: dict[str, Any] = {
        "selector": n.pipeline_selector(pipeline.metadata.name),
        "ports": [
            {"name": "grpc", "port": scorer.port, "targetPort": "grpc", "protocol": "TCP",
             "appProtocol": "kubernetes.io/h2c"},
            {"name": "metrics", "port": scorer.metrics_port, "targetPort": "metrics",
             "protocol": "TCP"},
        ],
    }
    if headless:
        spec["clusterIP"] = "None"
    else:
        spec["type"] = "ClusterIP"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(pipeline, name, n.pipeline_labels(pipeline.metadata.name)),
        "spec": spec,
    }


def plan_children(pipeline: ScoringPipeline, tracks: list[TrackPlan],
                  defaults: Defaults = DEFAULTS) -> list[Manifest]:
    """Every child the pipeline should have, in the order they should be applied.

    ConfigMaps come before the Deployments that mount them, so a new pod never starts without
    its config.
    """
    out: list[Manifest] = [config_map(pipeline, t) for t in tracks]
    out += [deployment(pipeline, t, defaults) for t in tracks]
    out.append(_service(pipeline, pipeline.metadata.name, headless=False))
    out.append(_service(pipeline, n.headless_service_name(pipeline.metadata.name), headless=True))
    return out


def child_key(manifest: Manifest) -> tuple[str, str]:
    """(kind, name): how a child is matched to what exists."""
    return manifest["kind"], manifest["metadata"]["name"]
