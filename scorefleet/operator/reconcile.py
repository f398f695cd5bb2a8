"""One reconcile of one pipeline: gather -> decide -> act.

Gathering reads the pipeline, its labelled children and (on measuring reconciles) Prometheus
into one frozen `Observed` (gather.py). Deciding is pure (the `decide` package): which tracks
run and with which model (decide/tracks.py), the manifests (decide/children.py), the status
(decide/status.py). Acting applies only what differs: each existing child is first applied as a
server-side dry run, and only when the API server's answer differs from the live object is it
applied for real. The Deployments the API server returns from those applies refresh the
observation (no new read), and the status is decided from that and written by this module only,
with the pass's transitions in its outbox: their Events are created after the write and
cleared from status once created (outbox.py), so none is lost or doubled by a crash.
A second reconcile of an unchanged pipeline therefore writes nothing, while a hand-edited or
deleted child is put back. A pipeline that cannot be planned is reported Degraded, naming the
field, and its children are left as they are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scorefleet.api.status import PipelineStatus
from scorefleet.operator import outbox
from scorefleet.operator.confirmed import Confirmed
from scorefleet.operator.crash_points import crash_at
from scorefleet.operator.decide.autoscaling import (
    AutoscalingOutcome,
    decide_autoscaling,
    held_replicas,
)
from scorefleet.operator.decide.children import (
    DEFAULTS,
    Defaults,
    Manifest,
    child_key,
    decide_children,
    scorer_workers,
)
from scorefleet.operator.decide.conditions import Transition
from scorefleet.operator.decide.revision import desired_revision
from scorefleet.operator.decide.rollout import RolloutState
from scorefleet.operator.decide.rollout_plan import decide_pipeline_rollout, first_route, replan
from scorefleet.operator.decide.status import (
    StatusInputs,
    decide_invalid_status,
    decide_status,
)
from scorefleet.operator.decide.stream_lag import stream_input
from scorefleet.operator.decide.tracks import TrackDecision, plan_tracks
from scorefleet.operator.decide.validity import InvalidSpec, last_status, parse_pipeline
from scorefleet.operator.gather import (
    deployments_by_track,
    lists_routes,
    measure_interval,
    observe,
)
from scorefleet.operator.kafka_lag import stream_lag_status
from scorefleet.operator.kube import CORE_KINDS, ROUTE_KINDS, Kube, KubeError, Obj
from scorefleet.operator.settings import Analyst, Measure, NoMetrics

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

# The fields of a child the operator manages; everything else (status, managedFields,
# resourceVersion, fields other controllers own) is not ours to compare.
_COMPARED_META = ("labels", "annotations", "ownerReferences")
_COMPARED_TOP = ("spec", "data")

# Children confirmed equal to a manifest at a resourceVersion: those skip the dry run.
CONFIRMED = Confirmed()
_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass
class ReconcileResult:
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    dry_runs: int = 0  # children compared through the API server (the rest were confirmed)
    status_written: bool = False
    transitions: list[Transition] = field(default_factory=list)
    invalid: InvalidSpec | None = None
    scaling: AutoscalingOutcome | None = None


def same_object(preview: Obj, live: Obj) -> bool:
    """Does applying change nothing we manage? `preview` is the API server's dry-run answer."""
    if any(preview.get(k) != live.get(k) for k in _COMPARED_TOP):
        return False
    pm, lm = preview.get("metadata", {}), live.get("metadata", {})
    return all(pm.get(k) == lm.get(k) for k in _COMPARED_META)


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def reconcile(kube: Kube, namespace: str, name: str, logger: Logger,
              defaults: Defaults = DEFAULTS, measure: Measure | None = None,
              now: Callable[[], datetime] = lambda: datetime.now(UTC),
              analyst: Analyst | NoMetrics | None = None) -> ReconcileResult | None:
    """Bring one pipeline's children and status in line with its spec. None if it is gone.

    With `measure`, the stable track is also measured (periodic resyncs do this; event-driven
    reconciles do not, so an unchanged pipeline's status is not rewritten on every event).
    """
    with _lock(namespace, name):
        body = kube.get_pipeline(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # being deleted: garbage collection removes the children
        return _reconcile(kube, body, logger, defaults, measure, now, analyst)


def _reconcile(kube: Kube, body: Obj, logger: Logger, defaults: Defaults,
               measure: Measure | None, now: Callable[[], datetime],
               analyst: Analyst | NoMetrics | None = None) -> ReconcileResult:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    at = now()
    # Gather.
    existing = kube.list_children(ns, name, CORE_KINDS)
    if lists_routes(body, existing):
        existing.update(kube.list_children(ns, name, ROUTE_KINDS))
    # Decide.
    pipeline = parse_pipeline(body)
    if isinstance(pipeline, InvalidSpec):
        return _report_invalid(kube, body, pipeline, logger, at)
    observed = observe(ns, name, existing, measure, stream=pipeline.spec.source is not None)
    stable_dep = observed.track("stable").deployment
    held = held_replicas(pipeline.spec, pipeline.status.autoscaling)
    rollout = None
    if plan_tracks(pipeline, held).stable_established:
        rollout = decide_pipeline_rollout(pipeline, observed, defaults.scorer_image,
                                          measure_interval(analyst, pipeline, at), at, held)
    # Periodic passes read the stream's lag (what KEDA reads) before deciding; other
    # reconciles keep the last reading and the last decision.
    lag = None
    if analyst is not None and pipeline.spec.source is not None:
        lag = stream_lag_status(pipeline, scorer_workers(pipeline), at)
    # The autoscaler sizes the stable track knowing the rollout's state after this pass.
    scaling = decide_autoscaling(
        pipeline, stable_dep, observed.track("stable").scaling,
        rollout.decision.state if rollout is not None else RolloutState.from_status(
            pipeline.status), at, stream=stream_input(lag))
    tracks = plan_tracks(pipeline, scaling.stable_replicas)
    if rollout is not None:
        rollout = replan(pipeline, rollout, scaling.stable_replicas)
        tracks = TrackDecision(tracks=rollout.tracks, stable_established=True)
    desired = decide_children(pipeline, tracks.tracks, defaults)
    if isinstance(desired, InvalidSpec):
        return _report_invalid(kube, body, desired, logger, at)
    desired += list((rollout.route if rollout is not None else first_route(pipeline)).manifests)
    # Act.
    result = ReconcileResult()
    current, apply_error = _apply_children(kube, desired, existing, result, logger)
    observed = observed.with_deployments(deployments_by_track(current), apply_error)
    status, transitions = decide_status(StatusInputs(
        pipeline, tracks, observed, at, rollout,
        desired_revision(pipeline.spec, defaults.scorer_image), scaling))
    if lag is not None:
        status = status.model_copy(update={"stream_lag": lag})
    result.transitions = [*_child_transitions(result, scaled=bool(scaling.transitions)),
                          *(rollout.transitions if rollout else []),
                          *scaling.transitions, *transitions]
    result.scaling = scaling
    _write_and_announce(kube, body, status, result, logger, at)
    return result


def _apply_children(kube: Kube, desired: list[Manifest], existing: dict[tuple[str, str], Obj],
                    result: ReconcileResult, logger: Logger,
                    ) -> tuple[dict[tuple[str, str], Obj], str | None]:
    """Apply what differs, delete what is no longer planned; the children as they are now."""
    meta = desired[0]["metadata"]
    current: dict[tuple[str, str], Obj] = dict(existing)
    for manifest in desired:
        try:
            current[child_key(manifest)] = _apply_if_changed(
                kube, manifest, existing.get(child_key(manifest)), result)
        except KubeError as exc:
            error = f"{manifest['kind']} {manifest['metadata']['name']}: {exc}"
            logger.error("apply failed for %s/%s: %s", meta["namespace"], meta["name"], error)
            return current, error
    wanted = {child_key(m) for m in desired}
    for key in sorted(set(existing) - wanted):
        kube.delete(key[0], meta["namespace"], key[1])
        CONFIRMED.forget(key[0], meta["namespace"], key[1])
        current.pop(key, None)
        result.deleted.append(f"{key[0]}/{key[1]}")
    return current, None


def _report_invalid(kube: Kube, body: Obj, invalid: InvalidSpec, logger: Logger,
                    now: datetime) -> ReconcileResult:
    """Nothing is applied or deleted: the scorers keep running as they were."""
    generation = body["metadata"].get("generation", 0)
    status, transitions = decide_invalid_status(last_status(body), generation, invalid, now)
    result = ReconcileResult(transitions=transitions, invalid=invalid)
    _write_and_announce(kube, body, status, result, logger, now)
    return result


def _write_and_announce(kube: Kube, body: Obj, status: PipelineStatus,
                        result: ReconcileResult, logger: Logger, at: datetime) -> None:
    """Write the status with this pass's transitions in its outbox, announce them (and any a
    previous pass left), then clear what was announced (outbox.py says why)."""
    leftover = outbox.left_over(body)
    queued = outbox.pending(leftover, outbox.record(body, result.transitions, at))
    crash_at("before-status", result.transitions)
    _write_status(kube, body, status.model_copy(
        update={"pending_events": queued or None}).wire(), result)
    crash_at("after-status", result.transitions)
    if not queued:
        return
    keep = outbox.deliver(kube, body, queued, logger, retried=len(leftover))
    if keep == queued:
        return  # none created (the API server failing): they stay in status as written
    meta = body["metadata"]
    kube.patch_pipeline_status(meta["namespace"], meta["name"], {
        "pendingEvents": [e.wire() for e in keep] if keep else None})


def _write_status(kube: Kube, body: Obj, new_status: dict[str, Any],
                  result: ReconcileResult) -> None:
    """The one status writer: a merge patch, only when something changed."""
    old_status = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    if new_status != old_status:
        meta = body["metadata"]
        kube.patch_pipeline_status(meta["namespace"], meta["name"],
                                   _with_removals(old_status, new_status))
        result.status_written = True


def _apply_if_changed(kube: Kube, manifest: Manifest, live: Obj | None,
                      result: ReconcileResult) -> Obj:
    verb = "created"
    if live is not None:
        if CONFIRMED.unchanged(manifest, live):
            result.unchanged += 1
            return live
        preview = kube.apply(manifest, dry_run=True)
        result.dry_runs += 1
        if same_object(preview, live):
            CONFIRMED.record(manifest, live)
            result.unchanged += 1
            return live
        verb = "scaled" if _only_replicas(preview, live) else "updated"
    applied = kube.apply(manifest)
    CONFIRMED.record(manifest, applied)
    if verb == "scaled" and live is not None:
        applied = _observed_scale(applied, live)
    result.applied.append(f"{manifest['kind']}/{manifest['metadata']['name']} {verb}")
    return applied


def _observed_scale(applied: Obj, live: Obj) -> Obj:
    """A Deployment whose replicas alone changed: if the controller had observed the live
    generation, its status still describes the current pod template (only the count moved),
    so the new generation counts as observed. Otherwise the reconcile that scales would judge
    the track by a status the controller has not caught up with yet, and Ready would drop
    for a moment at every scale-up."""
    status = live.get("status") or {}
    if status.get("observedGeneration", 0) < live["metadata"].get("generation", 0):
        return applied
    generation = applied["metadata"].get("generation", 0)
    return {**applied, "status": {**(applied.get("status") or {}),
                                  "observedGeneration": generation}}


def _only_replicas(preview: Obj, live: Obj) -> bool:
    """Did only spec.replicas change (an autoscaling decision, announced as such)?"""
    def rest(obj: Obj) -> Obj:
        return {k: v for k, v in (obj.get("spec") or {}).items() if k != "replicas"}
    return (same_object({**preview, "spec": rest(preview)}, {**live, "spec": rest(live)})
            and (preview.get("spec") or {}).get("replicas") != (live.get("spec") or {}).get(
                "replicas"))


def _child_transitions(result: ReconcileResult, scaled: bool = False) -> list[Transition]:
    """One per child created, changed or deleted. A Deployment whose replicas alone changed
    by this reconcile's autoscaling decision (`scaled`) is announced by that decision's own
    Event, not a second time here."""
    out = []
    for item in result.applied:
        what, verb = item.rsplit(" ", 1)
        if verb == "scaled":
            if scaled:
                continue
            verb = "updated"
        out.append(Transition("Normal", "ChildCreated" if verb == "created" else "ChildUpdated",
                              f"{what} {verb}"))
    out += [Transition("Normal", "ChildDeleted", f"{what} deleted") for what in result.deleted]
    return out


def _with_removals(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new`: vanished keys become null, at any depth
    (lists are replaced whole, as merge patch does)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = _with_removals(before, value)
        else:
            patch[key] = value
    for key in old.keys() - new.keys():
        patch[key] = None
    return patch
