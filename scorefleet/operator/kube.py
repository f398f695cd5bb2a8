"""The one module that talks to the Kubernetes API (enforced by an import-linter contract).

Reads return plain dicts (the JSON the API server sent); writes are server-side apply under one
field manager, a merge patch of the pipeline's status subresource, and core/v1 Events.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, ApiException

from scorefleet.api import pipeline as p
from scorefleet.operator import naming as n

Obj = dict[str, Any]

# kind -> (path prefix, plural) for the kinds the operator owns.
_KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "GRPCRoute": ("/apis/gateway.networking.k8s.io/v1", "grpcroutes"),
}
# Listed on every reconcile; GRPCRoutes only for pipelines that route with one or did (the
# Gateway API may not even be installed, and a list per reconcile per kind is what resyncs cost).
CORE_KINDS = ("ConfigMap", "Service", "Deployment")
ROUTE_KINDS = ("GRPCRoute",)
_PIPELINES = f"/apis/{p.GROUP}/{p.VERSION}"


class KubeError(RuntimeError):
    """An API call failed; the message carries the API server's own reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def load_client() -> ApiClient:
    """In-cluster credentials inside a pod, else KUBECONFIG / ~/.kube/config."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        # Read KUBECONFIG now: the client library reads it once, at import time.
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"))
    return ApiClient()


def current_namespace() -> str:
    """The namespace of the kubeconfig's current context ("default" when it names none), as
    kubectl picks it; in a pod, the pod's own namespace."""
    token_ns = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(token_ns):
        with open(token_ns) as f:
            return f.read().strip() or "default"
    _, context = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=os.environ.get("KUBECONFIG"))
    return str((context or {}).get("context", {}).get("namespace") or "default")


class Kube:
    """Thin, typed-by-dict access to exactly the API calls the operator makes."""

    def __init__(self, api: ApiClient | None = None) -> None:
        self.api = api or load_client()

    def _call(self, method: str, path: str, body: Any = None,
              query: list[tuple[str, Any]] | None = None,
              content_type: str = "application/json") -> Obj | None:
        """One API request; None on 404, KubeError on any other failure."""
        # The REST layer serialises dict bodies to JSON for JSON and +yaml content types alike
        # (JSON is YAML), so apply patches go through the same path.
        method, url, headers, payload, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body, auth_settings=["BearerToken"])
        try:
            resp = self.api.call_api(method, url, header_params=headers, body=payload,
                                     _request_timeout=30)
            raw = resp.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(exc.status, _reason(exc.body, exc.reason)) from exc
        if resp.status == 404:
            return None
        if resp.status >= 400:
            raise KubeError(resp.status, _reason(raw, resp.reason))
        data: Obj = json.loads(raw or b"{}")
        return data

    # -- pipelines -------------------------------------------------------------------------
    def get_pipeline(self, namespace: str, name: str) -> Obj | None:
        return self._call("GET", f"{_PIPELINES}/namespaces/{namespace}/{p.PLURAL}/{name}")

    def list_pipelines(self) -> list[Obj]:
        data = self._call("GET", f"{_PIPELINES}/{p.PLURAL}") or {}
        return list(data.get("items", []))

    def list_pipelines_in(self, namespace: str) -> list[Obj]:
        data = self._call("GET", f"{_PIPELINES}/namespaces/{namespace}/{p.PLURAL}") or {}
        return list(data.get("items", []))

    def annotate_pipeline(self, namespace: str, name: str, annotations: dict[str, str]) -> Obj:
        """Merge-patch metadata.annotations (how SRE actions reach the operator); KubeError
        404 when the pipeline does not exist."""
        result = self._call("PATCH", f"{_PIPELINES}/namespaces/{namespace}/{p.PLURAL}/{name}",
                            body={"metadata": {"annotations": annotations}},
                            content_type="application/merge-patch+json")
        if result is None:
            raise KubeError(404, f"scoringpipeline {namespace}/{name} not found")
        return result

    def list_events(self, namespace: str, name: str) -> list[Obj]:
        """Events about one pipeline, oldest first."""
        selector = f"involvedObject.name={name},involvedObject.kind={p.KIND}"
        data = self._call("GET", f"/api/v1/namespaces/{namespace}/events",
                          query=[("fieldSelector", selector)]) or {}
        items = list(data.get("items", []))
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def patch_pipeline_status(self, namespace: str, name: str, status: Obj) -> None:
        """Merge-patch the status subresource (the operator never writes spec)."""
        self._call("PATCH", f"{_PIPELINES}/namespaces/{namespace}/{p.PLURAL}/{name}/status",
                   body={"status": status}, content_type="application/merge-patch+json")

    # -- children --------------------------------------------------------------------------
    def list_children(self, namespace: str, pipeline: str,
                      kinds: tuple[str, ...] = CORE_KINDS) -> dict[tuple[str, str], Obj]:
        """Every object of the owned `kinds` labelled as this pipeline's, keyed (kind, name)."""
        selector = f"{n.LABEL_PIPELINE}={pipeline},{n.LABEL_MANAGED_BY}={n.MANAGED_BY}"
        out: dict[tuple[str, str], Obj] = {}
        for kind in kinds:
            prefix, plural = _KINDS[kind]
            data = self._call("GET", f"{prefix}/namespaces/{namespace}/{plural}",
                              query=[("labelSelector", selector)]) or {}
            for item in data.get("items", []):
                out[(kind, item["metadata"]["name"])] = item
        return out

    def apply(self, manifest: Obj, dry_run: bool = False) -> Obj:
        """Server-side apply under the operator's field manager, taking over conflicts."""
        kind = manifest["kind"]
        prefix, plural = _KINDS[kind]
        meta = manifest["metadata"]
        query: list[tuple[str, Any]] = [("fieldManager", n.FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        result = self._call(
            "PATCH", f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}",
            body=manifest, query=query, content_type="application/apply-patch+yaml")
        if result is None:  # the namespace itself is gone
            raise KubeError(404, f"namespace {meta['namespace']} not found")
        return result

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete one owned child (gone already is fine)."""
        prefix, plural = _KINDS[kind]
        self._call("DELETE", f"{prefix}/namespaces/{namespace}/{plural}/{name}",
                   body={"propagationPolicy": "Background"})

    # -- events ----------------------------------------------------------------------------
    def create_event(self, involved: Obj, name: str, type_: str, reason: str,
                     message: str) -> None:
        """Create the core/v1 Event `name` about `involved` (a pipeline body). KubeError 409
        when an Event of that name exists: callers name Events so that this means "done"."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", p.API_VERSION),
                "kind": involved.get("kind", p.KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": n.COMPONENT},
            "reportingComponent": n.COMPONENT,
            "reportingInstance": os.environ.get("HOSTNAME", "local"),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)


def _reason(raw: Any, fallback: Any) -> str:
    """The API server's message (it names the offending field) rather than the raw body."""
    try:
        return str(json.loads(raw or "{}").get("message") or fallback)
    except (ValueError, TypeError, AttributeError):
        return str(fallback)
