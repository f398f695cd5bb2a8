"""What a pipeline's children should be: a pure function from the pipeline and its tracks to
manifests.

Per track (stable, later candidate): a ConfigMap with the scorer config and a Deployment of
scorers mounting it. Per pipeline: a ClusterIP Service for gRPC clients and a headless Service
for clients that balance per request across pods (gRPC round_robin over DNS), which is also what
makes a replica-ratio canary a request-ratio canary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from scorefleet.api.bounds import MAX_WORKERS
from scorefleet.api.common import duration_seconds
from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.api.scorer_config import (
    KafkaStreamConfig,
    ScorerConfig,
    ShadowScoringConfig,
    StreamCanaryConfig,
    model_health_service,
    model_revision,
)
from scorefleet.api.spec import DEFAULT_SCORER_IMAGE
from scorefleet.operator import naming as n
from scorefleet.operator.decide.tracks import TrackPlan
from scorefleet.operator.decide.validity import (
    SCORER_CONFIG_SOURCES,
    InvalidSpec,
    SpecError,
    from_validation_error,
)
from scorefleet.operator.routers.streams import candidate_address

Manifest = dict[str, Any]
T = TypeVar("T")

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


def parse_quantity(value: str | int) -> Decimal:
    """A Kubernetes quantity ("500m", "2", "1Gi") as a number; ValueError if it is none."""
    text = str(value)
    try:
        for suffix in sorted(_SUFFIXES, key=len, reverse=True):
            if text.endswith(suffix):
                return Decimal(text[: -len(suffix)]) * _SUFFIXES[suffix]
        return Decimal(text)
    except InvalidOperation:  # e.g. "1e1.5": the CRD's quantity pattern lets it through
        raise ValueError(f"not a quantity: {text!r}") from None


def scorer_workers(pipeline: ScoringPipeline) -> int:
    """Worker processes per pod: as set, or one per requested CPU (at least one, at most
    MAX_WORKERS, the scorer's own limit).

    A container sees every host core, not its CPU request, so "one per core" inside the pod
    would oversubscribe; the request is what the scheduler promised.
    """
    scorer = pipeline.spec.scorer
    if scorer.workers:
        return scorer.workers
    cpu = (scorer.resources.requests or {}).get("cpu")
    if cpu is None:
        return 1
    try:
        cores = parse_quantity(cpu)
    except ValueError as exc:
        raise SpecError("spec.scorer.resources.requests.cpu", str(exc)) from None
    # Clamp before rounding: "1E" CPUs would otherwise become an integer of 19 digits.
    return max(1, math.ceil(min(cores, Decimal(MAX_WORKERS))))


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
        intra_op_threads=plan.intra_op_threads or scorer.intra_op_threads,
        drain_delay_seconds=duration_seconds(scorer.drain_delay),
        grace_period_seconds=duration_seconds(scorer.grace_period),
        max_connection_age_seconds=duration_seconds(scorer.max_connection_age),
        stream=_section("spec.source.kafka", lambda: _stream_config(pipeline, plan)),
        online_features=_section("spec.features.redis", lambda: (
            pipeline.spec.features.redis.scorer_config() if pipeline.spec.features else None)),
    )


def _section(field: str, build: Callable[[], T]) -> T:
    """A sub-config built from one spec section; its refusal names that section."""
    try:
        return build()
    except ValidationError as exc:
        invalid = from_validation_error(exc, prefix=field)
        raise SpecError(invalid.field, invalid.message) from None


def _stream_config(pipeline: ScoringPipeline, plan: TrackPlan) -> KafkaStreamConfig | None:
    """Only the stable track consumes; a candidate gets its share of events from it, by key
    hash, over gRPC (routers/streams.py), so it never joins the consumer group."""
    source = pipeline.spec.source
    if source is None or plan.track != "stable":
        return None
    meta = pipeline.metadata
    cfg = source.kafka.scorer_config(f"scorefleet.{meta.namespace}.{meta.name}",
                                     n.KAFKA_CREDENTIALS_DIR)
    if plan.stream_canary_weight is None:
        return cfg
    return cfg.model_copy(update={"canary": StreamCanaryConfig(
        address=candidate_address(pipeline), weight=plan.stream_canary_weight)})


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
        "image": plan.image or scorer.image or defaults.scorer_image,
        "imagePullPolicy": scorer.image_pull_policy or defaults.scorer_image_pull_policy,
        "command": ["python", "-m", "scorefleet.scorer"],
        "args": ["--config", f"{n.CONFIG_DIR}/{n.CONFIG_FILE}"],
        "ports": [
            {"name": "grpc", "containerPort": scorer.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": scorer.metrics_port, "protocol": "TCP"},
        ],
        "env": [e.wire() for e in (scorer.env if plan.env is None else plan.env)],
        "resources": scorer.resources.wire(),
        # Readiness asks the scorer's gRPC health for this model's own service: SERVING only
        # while this model is loaded and not draining, so a Ready pod has loaded it, and
        # draining takes the pod out of every Service before RPCs are refused.
        "readinessProbe": {"grpc": {"port": scorer.port,
                                    "service": model_health_service(plan.model)},
                           "periodSeconds": 2, "failureThreshold": 1},
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
                        # The model the pods must load (also in the probe): a new model is a
                        # new template, so Deployment status proves which model pods run.
                        n.ANNOTATION_MODEL_REVISION: model_revision(plan.model),
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


def plan_children(pipeline: ScoringPipeline, tracks: tuple[TrackPlan, ...] | list[TrackPlan],
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


def decide_children(pipeline: ScoringPipeline, tracks: tuple[TrackPlan, ...],
                    defaults: Defaults = DEFAULTS) -> list[Manifest] | InvalidSpec:
    """plan_children, or the spec field that keeps it from rendering (never an exception)."""
    try:
        return plan_children(pipeline, tracks, defaults)
    except SpecError as exc:
        return InvalidSpec(exc.field, exc.message)
    except ValidationError as exc:  # the scorer config refused a value the CRD admitted
        return from_validation_error(exc, SCORER_CONFIG_SOURCES)
