"""Request counts from the API server's own /metrics (read with `kubectl get --raw`).

- `apiserver_flowcontrol_dispatched_requests_total{flow_schema}`: requests API Priority and
  Fairness dispatched per FlowSchema. The benchmark's FlowSchemas match only the operator's
  ServiceAccount, so these are the operator's requests and nobody else's.
- `apiserver_request_total{verb, resource, subresource, dry_run, code}`: every client's; during
  steady state nothing but the operator touches pipelines, ConfigMaps, Services, Deployments
  or Events, so its breakdown by verb says what the operator's requests were.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# Resources the operator reads and writes (Kopf's watches are long-lived, not counted per pass).
OPERATOR_RESOURCES = ("scoringpipelines", "configmaps", "services", "deployments", "events")


@dataclass(frozen=True)
class Snapshot:
    flows: Counter[str] = field(default_factory=Counter)  # flow_schema -> dispatched
    # (verb, resource, subresource, dry_run) -> requests, for OPERATOR_RESOURCES
    requests: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)


def parse(text: str) -> Snapshot:
    flows: Counter[str] = Counter()
    requests: Counter[tuple[str, str, str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "apiserver_flowcontrol_dispatched_requests_total":
                flows[s.labels.get("flow_schema", "")] += int(s.value)
            elif (s.name == "apiserver_request_total"
                  and s.labels.get("resource") in OPERATOR_RESOURCES):
                key = (s.labels.get("verb", ""), s.labels["resource"],
                       s.labels.get("subresource", ""), s.labels.get("dry_run", ""))
                requests[key] += int(s.value)
    return Snapshot(flows, requests)


def scrape(kubectl: str = "kubectl") -> Snapshot:
    out = subprocess.run([kubectl, "get", "--raw", "/metrics"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return parse(out)


def delta(before: Snapshot, after: Snapshot) -> Snapshot:
    flows = Counter({k: after.flows[k] - before.flows.get(k, 0) for k in after.flows})
    requests = Counter({k: after.requests[k] - before.requests.get(k, 0)
                        for k in after.requests})
    return Snapshot(+flows, +requests)


def breakdown(snapshot: Snapshot) -> dict[str, int]:
    """`VERB resource[/sub][ (dry run)]` -> count, largest first."""
    named = {f"{verb} {res}{'/' + sub if sub else ''}{' (dry run)' if dry else ''}": n
             for (verb, res, sub, dry), n in snapshot.requests.items()}
    return dict(sorted(named.items(), key=lambda kv: -kv[1]))
