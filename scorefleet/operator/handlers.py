"""Kopf wiring: which events trigger a reconcile. No decisions live here.

A pipeline is reconciled when it is created, changed, or found at start-up, and whenever one of
its children changes or disappears (that is how Deployment readiness reaches the status, and how
a hand-edited or deleted child is repaired). A periodic pass reconciles every pipeline again
and, when Prometheus is configured, measures each track into `status.metrics` and lets the
autoscaler decide: every `SCOREFLEET_AUTOSCALE_SECONDS` (15 s, HPA's loop) then, else every
`SCOREFLEET_RESYNC_SECONDS`. Only these passes decide replicas; the others keep the last
decision (decide/autoscaling.py).

The resync walks a Kopf index of the pipelines Kopf's own watch streams have seen, so it covers
exactly the namespaces the operator watches (`--namespace`, globs, or all) and needs no list
of its own: a namespaced install has no right to list pipelines cluster-wide.

The resync is a plain background task rather than a Kopf timer: Kopf puts a finalizer on every
object with a timer, and a finalizer makes pipelines hang in Terminating whenever the operator
is down, for no cleanup of ours (garbage collection removes the children).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._core.intents.filters import MetaFilterToken  # the type of kopf.PRESENT

from scorefleet.api import pipeline as p
from scorefleet.operator import naming as n
from scorefleet.operator.kube import Kube, KubeError
from scorefleet.operator.metrics import OperatorMetrics, serve
from scorefleet.operator.reconcile import reconcile
from scorefleet.operator.settings import OperatorSettings

_OWNED: dict[str, str | MetaFilterToken] = {n.LABEL_MANAGED_BY: n.MANAGED_BY,
                                             n.LABEL_PIPELINE: kopf.PRESENT}
log = logging.getLogger("scorefleet.operator")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # Kopf's own readers take KUBECONFIG at call time; the client-library piggyback would use
    # the path the library froze when it was imported.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    # Kopf keeps its bookkeeping in annotations, not status: the status schema is ours and
    # structural, so a status.kopf field would be pruned anyway.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=p.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=p.GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{p.GROUP}/finalizer"
    # Events are posted by announce() for transitions only, not for every log line.
    settings.posting.enabled = False
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    ours = OperatorSettings.from_env()
    memo["kube"] = Kube()
    memo["settings"] = ours
    memo["measure"] = ours.measure(log)
    memo["analyst"] = ours.analyst(log)
    memo["metrics"] = OperatorMetrics()
    if ours.metrics_port is not None:
        memo["metrics_server"], _ = serve(memo["metrics"], ours.metrics_port,
                                          ours.metrics_address)
    # Kopf passes each index by its function's name; filled by the watch streams.
    memo["watched"] = kwargs["watched_pipelines"]
    memo["resync"] = asyncio.get_running_loop().create_task(_resync_forever(memo))


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    server = memo.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()


@kopf.index(p.GROUP, p.VERSION, p.PLURAL)
def watched_pipelines(namespace: str | None, name: str, **_: Any) -> dict[tuple[str, str], bool]:
    """Every pipeline in the watched namespaces, kept current by Kopf's watch streams."""
    return {(namespace or "default", name): True}


async def _resync_forever(memo: kopf.Memo) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(memo["settings"].pass_seconds)
        # Copied on the event loop, which is where Kopf changes the index.
        keys = sorted(memo["watched"])
        try:
            await loop.run_in_executor(None, _resync_once, memo, keys)
        except Exception:  # one bad pass must not end the loop
            log.exception("resync failed")


def _resync_once(memo: kopf.Memo, keys: list[tuple[str, str]]) -> None:
    kube: Kube = memo["kube"]
    for namespace, name in keys:
        try:
            result = reconcile(kube, namespace, name, log, memo["settings"].defaults,
                               memo["measure"], analyst=memo["analyst"])
            if result is None:
                memo["metrics"].forget(namespace, name)
            elif result.scaling is not None:
                memo["metrics"].record(namespace, name, result.scaling)
        except KubeError as exc:
            log.warning("resync of %s/%s failed: %s", namespace, name, exc)


@kopf.on.resume(p.GROUP, p.VERSION, p.PLURAL)
@kopf.on.create(p.GROUP, p.VERSION, p.PLURAL)
@kopf.on.update(p.GROUP, p.VERSION, p.PLURAL)
def pipeline_changed(namespace: str | None, name: str, memo: kopf.Memo,
                     logger: kopf.Logger, **_: Any) -> None:
    reconcile(memo["kube"], namespace or "default", name, logger, memo["settings"].defaults)


@kopf.on.event("apps", "v1", "deployments", labels=_OWNED)
@kopf.on.event("", "v1", "services", labels=_OWNED)
@kopf.on.event("", "v1", "configmaps", labels=_OWNED)
def child_changed(type: str | None, namespace: str | None, labels: Mapping[str, str],
                  memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    # Only a change or a deletion needs a reconcile. A child listed when a watch (re)starts
    # (type None) is covered by the start-up resume and the resync, and a child being ADDED is
    # one the operator has just created, status and all. Those were 4 reconciles per pipeline
    # at creation and 4 more at every operator start, none of which changed anything
    # (benchmarks/scale, docs/scale.md).
    if type in (None, "ADDED"):
        return
    reconcile(memo["kube"], namespace or "default", labels[n.LABEL_PIPELINE], logger,
              memo["settings"].defaults)
