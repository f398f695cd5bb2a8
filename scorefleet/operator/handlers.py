"""Kopf wiring: which events trigger a reconcile. No decisions live here.

A pipeline is reconciled when it is created, changed, or found at start-up, and whenever one of
its children changes or disappears (that is how Deployment readiness reaches the status, and how
a hand-edited or deleted child is repaired).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._core.intents.filters import MetaFilterToken  # the type of kopf.PRESENT

from scorefleet.api import pipeline as p
from scorefleet.api.spec import DEFAULT_SCORER_IMAGE
from scorefleet.operator import naming as n
from scorefleet.operator.children import Defaults
from scorefleet.operator.kube import Kube
from scorefleet.operator.reconcile import reconcile

_OWNED: dict[str, str | MetaFilterToken] = {n.LABEL_MANAGED_BY: n.MANAGED_BY,
                                             n.LABEL_PIPELINE: kopf.PRESENT}


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # Kopf's own readers take KUBECONFIG at call time; the client-library piggyback would use
    # the path the library froze when it was imported.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
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
    memo["kube"] = Kube()
    memo["defaults"] = Defaults(
        scorer_image=os.environ.get("SCOREFLEET_SCORER_IMAGE") or DEFAULT_SCORER_IMAGE,
        scorer_image_pull_policy=os.environ.get("SCOREFLEET_SCORER_IMAGE_PULL_POLICY")
        or "IfNotPresent")


@kopf.on.resume(p.GROUP, p.VERSION, p.PLURAL)
@kopf.on.create(p.GROUP, p.VERSION, p.PLURAL)
@kopf.on.update(p.GROUP, p.VERSION, p.PLURAL)
def pipeline_changed(namespace: str | None, name: str, memo: kopf.Memo,
                     logger: kopf.Logger, **_: Any) -> None:
    reconcile(memo["kube"], namespace or "default", name, logger, memo["defaults"])


@kopf.on.event("apps", "v1", "deployments", labels=_OWNED)
@kopf.on.event("", "v1", "services", labels=_OWNED)
@kopf.on.event("", "v1", "configmaps", labels=_OWNED)
def child_changed(namespace: str | None, labels: Mapping[str, str], memo: kopf.Memo,
                  logger: kopf.Logger, **_: Any) -> None:
    reconcile(memo["kube"], namespace or "default", labels[n.LABEL_PIPELINE], logger,
              memo["defaults"])
