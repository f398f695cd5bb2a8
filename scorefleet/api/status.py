"""The ScoringPipeline status: what the operator measured and decided, for humans and tools.

Every verdict carries the measured value beside the threshold it was judged against, so
`kubectl get -o yaml` answers "why" without a dashboard.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scorefleet.api.common import CamelModel
from scorefleet.api.spec import EnvVar

Phase = Literal["Pending", "Ready", "Progressing", "Paused", "Degraded", "Failed"]
ConditionStatus = Literal["True", "False", "Unknown"]
CheckResult = Literal["Successful", "Failed", "Inconclusive"]
# A check's own result may also be NotCompared: a comparison with the stable track that has no
# stable side by construction (the stable track of a stream pipeline scores outside gRPC). It
# never decides an interval; the interval's result is one of CheckResult.
CheckOutcome = Literal["Successful", "Failed", "Inconclusive", "NotCompared"]
RolloutPhase = Literal["Shadow", "Canary", "Promoting", "Succeeded", "Failed", "Aborted"]
Strategy = Literal["Canary", "Shadow", "ShadowThenCanary"]


class Condition(CamelModel):
    """A standard Kubernetes condition (metav1.Condition shape)."""

    type: str = Field(min_length=1, max_length=316)
    status: ConditionStatus
    reason: str = Field(min_length=1, max_length=1024,
                        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = Field(default="", max_length=32768)
    last_transition_time: str = Field(description="RFC 3339 time the status last changed.")
    observed_generation: int | None = Field(default=None, ge=0)


class ModelIdentity(CamelModel):
    """What makes two models the same model: name, version, digest and decision threshold."""

    name: str
    version: str
    uri: str
    sha256: str | None = None
    threshold: float


class TrackReplicas(CamelModel):
    desired: int = Field(ge=0)
    ready: int = Field(ge=0)


class ReplicaStatus(CamelModel):
    stable: TrackReplicas | None = None
    candidate: TrackReplicas | None = None


class TrackMetrics(CamelModel):
    """One track's last measurement; None where Prometheus had no data."""

    qps: float | None = None
    p99_latency_ms: float | None = None
    error_rate: float | None = None


class MeasuredMetrics(CamelModel):
    measured_at: str
    stable: TrackMetrics | None = None
    candidate: TrackMetrics | None = None


class StreamLagStatus(CamelModel):
    """A stream pipeline's consumer lag as KEDA's Kafka scaler reads it, and what it asks of
    the replicas (decide/stream_lag.py): measured values beside the threshold."""

    measured_at: str
    topic: str
    consumer_group: str
    partitions: int = Field(default=0, ge=0)
    lag: int | None = Field(default=None, ge=0, description="Events not yet committed, summed "
                                                            "over partitions.")
    lag_threshold: int = Field(ge=1, description="Lag one consumer may hold (maxBatchSize).")
    consumers_per_replica: int = Field(ge=1, description="Worker processes per pod.")
    desired_replicas: int | None = Field(default=None, ge=0,
                                         description="Replicas the lag asks for.")
    max_useful_replicas: int | None = Field(
        default=None, ge=0, description="Beyond this, pods get no partition and sit idle.")
    partition_limited: bool = Field(
        default=False, description="Partitions, not pods, limit consumption: the lag asks "
                                   "for more consumers than the topic has partitions.")
    message: str = ""


class CapacityStatus(CamelModel):
    """The autoscaler's estimate of what one replica of a track can take (decide/capacity.py)."""

    throughput_qps: float = Field(ge=0,
                                  description="Saturation throughput per replica, requests/s.")
    base_ms: float = Field(ge=0, description="Idle p99 latency of one replica, ms.")
    samples: int = Field(default=0, ge=0, description="Steady measurements learned from.")
    source: Literal["prior", "hint", "learned"] = "prior"
    updated_at: str | None = None
    breach_qps: float | None = Field(
        default=None, ge=0,
        description="Lowest requests/s per replica at which the SLO was seen breached (p99 "
                    "over the SLO, or the pods CPU-throttled); sizing stays below it.")


class ScalingRecommendation(CamelModel):
    at: str
    replicas: int = Field(ge=0)


class TrackAutoscaling(CamelModel):
    """One track's last autoscaling decision, with the numbers it was judged on, and the state
    the next decision needs (so an operator restart resumes it, never resets it)."""

    current: int = Field(ge=0, description="Replicas the Deployment asked for when decided.")
    desired: int = Field(ge=0, description="Replicas decided: what the Deployment is set to.")
    reason: str = Field(min_length=1, max_length=64)
    message: str = Field(default="", max_length=4096)
    measurement: str = Field(default="", max_length=1024,
                             description="Sample, or why there is none: NoMetrics, "
                                         "StaleMetrics, PartialMetrics, with the detail.")
    demand_qps: float | None = Field(default=None,
                                     description="Requests/s the track was sized for.")
    target_qps_per_replica: float | None = Field(
        default=None,
        description="Per-replica load that keeps the predicted p99 under the SLO less headroom.")
    p99_latency_ms: float | None = Field(default=None, description="Measured p99.")
    slo_p99_latency_ms: float | None = Field(default=None, description="The SLO it is held to.")
    decided_at: str
    last_change_at: str | None = None
    last_direction: int = Field(default=0, ge=-1, le=1)
    steady_since: str | None = None
    capacity: CapacityStatus
    recommendations: list[ScalingRecommendation] = Field(
        default_factory=list, max_length=256,
        description="Recent recommendations: the stabilization windows' history.")
    last_queue_depth: float | None = None
    last_sample_at: str | None = None
    stream_bound: str | None = Field(
        default=None, max_length=1024,
        description="Stream pipelines: how the consumer lag (floor) and the partition count "
                    "(ceiling) bounded the replicas.")
    partition_limited: bool | None = Field(
        default=None, description="Stream pipelines: partitions, not pods, limit consumption; "
                                  "more pods would sit idle.")
    end_to_end_p99_ms: float | None = Field(
        default=None, description="Stream pipelines: measured p99 from event timestamp to "
                                  "verdict (unset: no event in the window, or no measurement).")
    slo_end_to_end_p99_ms: float | None = Field(
        default=None, description="Stream pipelines: the end-to-end p99 it is held to.")


class AutoscalingStatus(CamelModel):
    stable: TrackAutoscaling | None = None
    candidate: TrackAutoscaling | None = None


class CanaryStatus(CamelModel):
    step: int = Field(ge=0, description="Index into spec.rollout.canary.steps.")
    weight: int = Field(ge=0, le=100, description="Candidate traffic share now, in percent.")
    step_started_at: str | None = Field(
        default=None, description="When this step's traffic was in effect; unset until then.")
    step_successes: int = Field(default=0, ge=0,
                                description="Successful analysis intervals in this step.")
    awaiting_promotion: bool = Field(default=False, description="Waiting at a manual gate.")


class AnalysisCheck(CamelModel):
    """One metric judged at one analysis interval: measured value beside its threshold."""

    metric: str
    result: CheckOutcome
    measured: float | None = None
    threshold: float | None = None
    comparator: Literal["<=", ">="] = "<="
    message: str = ""


class AnalysisStatus(CamelModel):
    successes: int = Field(default=0, ge=0, description="Successful intervals, this rollout.")
    failures: int = Field(default=0, ge=0, description="Failed intervals, this rollout.")
    inconclusive: int = Field(default=0, ge=0, description="Inconclusive intervals in a row.")
    last_run_at: str | None = Field(
        default=None, description="End of the last judged interval: the next one starts here.")
    last_result: CheckResult | None = None
    checks: list[AnalysisCheck] = Field(default_factory=list, max_length=32)


class ShadowStatus(CamelModel):
    """Paired comparison of candidate and stable scores on the same requests."""

    started_at: str | None = None
    samples: int = Field(default=0, ge=0)
    agreement: float | None = None
    score_drift: float | None = None
    checks: list[AnalysisCheck] = Field(default_factory=list, max_length=32)


class RevisionRecord(CamelModel):
    """What a revision's scorer pods run besides the model (the model is in `stable`)."""

    hash: str = Field(min_length=1, max_length=64)
    image: str
    intra_op_threads: int = Field(ge=1)
    env: list[EnvVar] = Field(default_factory=list, max_length=64)


class RolloutStatus(CamelModel):
    """The rollout state machine's own state (docs/rollouts.md); with `canary`, `shadow` and
    `analysis` it is all an operator needs to resume a rollout where it was."""

    revision: str = Field(min_length=1, max_length=64, description="Candidate revision hash.")
    strategy: Strategy
    phase: RolloutPhase
    attempt: int = Field(default=1, ge=1, description="Raised by each `retry`.")
    started_at: str
    finished_at: str | None = None
    paused: bool = False
    pause_reason: Literal["Manual", "Inconclusive"] | None = None
    handled_action: str | None = Field(
        default=None, description="The last scorefleet.io/rollout-action value acted upon.")
    message: str = ""


class PendingEvent(CamelModel):
    """A transition recorded with the status that made it, until its Event exists (the
    operator's outbox, scorefleet/operator/outbox.py)."""

    name: str = Field(min_length=1, max_length=253, description="The Event's metadata.name.")
    type: Literal["Normal", "Warning"]
    reason: str = Field(min_length=1, max_length=128)
    message: str = Field(default="", max_length=1024)


class PipelineStatus(CamelModel):
    observed_generation: int | None = Field(default=None, ge=0)
    phase: Phase = "Pending"
    message: str = ""
    stable: ModelIdentity | None = None
    stable_revision: RevisionRecord | None = None
    candidate: ModelIdentity | None = None
    rollout: RolloutStatus | None = None
    canary: CanaryStatus | None = None
    shadow: ShadowStatus | None = None
    analysis: AnalysisStatus | None = None
    replicas: ReplicaStatus = ReplicaStatus()
    ready_replicas: int = Field(default=0, ge=0, description="Ready scorer pods, all tracks.")
    metrics: MeasuredMetrics | None = None
    stream_lag: StreamLagStatus | None = Field(
        default=None, description="Stream pipelines: consumer lag and the replicas it asks "
                                  "for, capped by partitions.")
    autoscaling: AutoscalingStatus | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    pending_events: list[PendingEvent] | None = Field(
        default=None, max_length=64,
        description="Transitions whose Events are being created; a restarted operator creates "
                    "any still missing (names make that idempotent), then clears this.")
