"""One reconcile of one pipeline: gather -> decide -> act.

Gathering reads the pipeline and its labelled children. Deciding is pure (children.py plans the
manifests, status_decision.py the status). Acting applies only what differs: each existing child
is first applied as a server-side dry run, and only when the API server's answer differs from
the live object is it applied for real. A second reconcile of an unchanged pipeline therefore
writes nothing, while a hand-edited or deleted child is put back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scorefleet.api.pipeline import ScoringPipeline
from scorefleet.operator.announce import announce
from scorefleet.operator.children import (
    DEFAULTS,
    Defaults,
    Manifest,
    TrackPlan,
    child_key,
    plan_children,
)
from scorefleet.operator.kube import Kube, KubeError, Obj
from scorefleet.operator.settings import Measure
from scorefleet.operator.status_decision import (
    DeploymentState,
    Observed,
    Transition,
    decide_status,
)

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

# The fields of a child the operator manages; everything else (status, managedFields,
# resourceVersion, fields other controllers own) is not ours to compare.
_COMPARED_META = ("labels", "annotations", "ownerReferences")
_COMPARED_TOP = ("spec", "data")

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass
class ReconcileResult:
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    status_written: bool = False
    transitions: list[Transition] = field(default_factory=list)


def plan_tracks(pipeline: ScoringPipeline) -> list[TrackPlan]:
    """Which tracks run. Until rollouts exist, the spec's model is the stable track's."""
    scaling = pipeline.spec.scaling
    return [TrackPlan(track="stable", model=pipeline.spec.model, replicas=scaling.min_replicas)]


def same_object(preview: Obj, live: Obj) -> bool:
    """Does applying change nothing we manage? `preview` is the API server's dry-run answer."""
    if any(preview.get(k) != live.get(k) for k in _COMPARED_TOP):
        return False
    pm, lm = preview.get("metadata", {}), live.get("metadata", {})
    return all(pm.get(k) == lm.get(k) for k in _COMPARED_META)


def deployment_state(obj: Obj | None) -> DeploymentState | None:
    if obj is None:
        return None
    spec, status = obj.get("spec", {}), obj.get("status", {})
    stuck = any(c.get("type") == "Progressing" and c.get("status") == "False"
                and c.get("reason") == "ProgressDeadlineExceeded"
                for c in status.get("conditions", []))
    return DeploymentState(
        generation=obj["metadata"].get("generation", 0),
        observed_generation=status.get("observedGeneration", 0),
        desired=spec.get("replicas", 1),
        updated=status.get("updatedReplicas", 0),
        ready=status.get("readyReplicas", 0),
        available=status.get("availableReplicas", 0),
        deadline_exceeded=stuck,
    )


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def reconcile(kube: Kube, namespace: str, name: str, logger: Logger,
              defaults: Defaults = DEFAULTS, measure: Measure | None = None,
              now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> ReconcileResult | None:
    """Bring one pipeline's children and status in line with its spec. None if it is gone.

    With `measure`, the stable track is also measured (periodic resyncs do this; event-driven
    reconciles do not, so an unchanged pipeline's status is not rewritten on every event).
    """
    with _lock(namespace, name):
        body = kube.get_pipeline(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # being deleted: garbage collection removes the children
        return _reconcile(kube, body, logger, defaults, measure, now)


def _reconcile(kube: Kube, body: Obj, logger: Logger, defaults: Defaults,
               measure: Measure | None, now: Callable[[], datetime]) -> ReconcileResult:
    pipeline = ScoringPipeline.from_body(body)
    ns, name = pipeline.metadata.namespace, pipeline.metadata.name
    tracks = plan_tracks(pipeline)
    desired = plan_children(pipeline, tracks, defaults)
    existing = kube.list_children(ns, name)
    result = ReconcileResult()

    apply_error = None
    current: dict[tuple[str, str], Obj] = dict(existing)
    for manifest in desired:
        try:
            current[child_key(manifest)] = _apply_if_changed(
                kube, manifest, existing.get(child_key(manifest)), result)
        except KubeError as exc:
            apply_error = f"{manifest['kind']} {manifest['metadata']['name']}: {exc}"
            logger.error("apply failed for %s/%s: %s", ns, name, apply_error)
            break
    if apply_error is None:
        wanted = {child_key(m) for m in desired}
        for key in sorted(set(existing) - wanted):
            kube.delete(key[0], ns, key[1])
            current.pop(key, None)
            result.deleted.append(f"{key[0]}/{key[1]}")

    stable = current.get(("Deployment", f"{name}-stable"))
    observed = Observed(stable=deployment_state(stable), apply_error=apply_error,
                        stable_metrics=measure(ns, name, "stable") if measure else None)
    status, transitions = decide_status(pipeline, observed, tracks[0].replicas, now())
    result.transitions = [*_child_transitions(result), *transitions]

    new_status = status.wire()
    old_status = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    if new_status != old_status:
        kube.patch_pipeline_status(ns, name, _with_removals(old_status, new_status))
        result.status_written = True
    for transition in result.transitions:
        announce(kube, body, transition, logger)
    return result


def _apply_if_changed(kube: Kube, manifest: Manifest, live: Obj | None,
                      result: ReconcileResult) -> Obj:
    if live is not None:
        preview = kube.apply(manifest, dry_run=True)
        if same_object(preview, live):
            result.unchanged += 1
            return live
    applied = kube.apply(manifest)
    verb = "created" if live is None else "updated"
    result.applied.append(f"{manifest['kind']}/{manifest['metadata']['name']} {verb}")
    return applied


def _child_transitions(result: ReconcileResult) -> list[Transition]:
    out = []
    for item in result.applied:
        what, verb = item.rsplit(" ", 1)
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
