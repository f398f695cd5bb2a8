"""What `get` and `watch` show, built from a pipeline's status alone (pure: body -> renderables).

Everything shown is what the operator wrote into status: per track the model, its share of
traffic, pods, QPS, p99 and error rate; the shadow comparison; each analysis check with the
measured value beside its threshold; conditions; and recent Events.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

Obj = dict[str, Any]

_RESULT_STYLE = {"Successful": "green", "Failed": "bold red", "Inconclusive": "yellow",
                 "NotCompared": "dim"}
_PHASE_STYLE = {"Ready": "green", "Succeeded": "green", "Progressing": "cyan", "Canary": "cyan",
                "Shadow": "cyan", "Promoting": "cyan", "Paused": "yellow", "Pending": "yellow",
                "Degraded": "bold red", "Failed": "bold red", "Aborted": "red"}


def _styled(text: str) -> Text:
    return Text(text, style=_PHASE_STYLE.get(text, ""))


def _model(identity: Obj | None) -> str:
    if not identity:
        return "-"
    return f"{identity.get('name', '?')} {identity.get('version', '?')}"


def _num(value: Any, fmt: str = "{:.4g}") -> str:
    return "-" if value is None else fmt.format(value)


def candidate_weight(status: Obj) -> int:
    """The candidate's share of live requests the rollout asks for now (0 outside Canary and
    Promoting: a shadow scores copies of the stable track's requests, it takes none)."""
    rollout = status.get("rollout") or {}
    if rollout.get("phase") in ("Canary", "Promoting"):
        return int((status.get("canary") or {}).get("weight", 0))
    return 0


def rollout_line(body: Obj) -> Text:
    status = body.get("status") or {}
    rollout = status.get("rollout")
    if not rollout:
        return Text(f"No rollout: the stable track serves {_model(status.get('stable'))}.")
    phase = rollout.get("phase", "?")
    text = Text("Rollout ")
    text.append(phase, style=_PHASE_STYLE.get(phase, ""))
    steps = ((body.get("spec") or {}).get("rollout") or {}).get("canary", {}).get("steps", [])
    canary = status.get("canary") or {}
    if phase == "Canary" and canary:
        text.append(f"  step {canary.get('step', 0) + 1}/{len(steps) or '?'} at "
                    f"{canary.get('weight', 0)}%")
        if canary.get("awaitingPromotion"):
            text.append("  waiting for promote", style="bold yellow")
    text.append(f"  {rollout.get('strategy', '')}, attempt {rollout.get('attempt', 1)}, "
                f"revision {rollout.get('revision', '?')}")
    if rollout.get("paused"):
        text.append(f"  PAUSED ({rollout.get('pauseReason') or 'Manual'})", style="bold yellow")
    if rollout.get("message"):
        text.append(f"\n{rollout['message']}")
    return text


def tracks_table(body: Obj) -> Table:
    status = body.get("status") or {}
    metrics = status.get("metrics") or {}
    replicas = status.get("replicas") or {}
    weight = candidate_weight(status)
    table = Table(title="Tracks", title_justify="left", expand=False)
    for column in ("Track", "Model", "Weight", "Pods ready/desired", "QPS", "p99 ms",
                   "Error rate"):
        table.add_column(column, justify="left" if column in ("Track", "Model") else "right")
    rows = [("stable", status.get("stable"), 100 - weight)]
    if status.get("candidate") or status.get("rollout"):
        rows.append(("candidate", status.get("candidate"), weight))
    router = (((body.get("spec") or {}).get("rollout") or {}).get("router") or {}).get(
        "type", "Replicas")
    pod_share = _pod_share(replicas) if router == "Replicas" and weight else None
    for track, identity, share in rows:
        pods = replicas.get(track) or {}
        m = metrics.get(track) or {}
        shown = f"{share}%"
        if pod_share is not None:
            # The Replicas router splits by pods: show what the pod counts really give.
            actual = pod_share if track == "candidate" else 100.0 - pod_share
            shown += f" ({actual:.0f}% by pods)"
        if track == "candidate" and (status.get("rollout") or {}).get("phase") == "Shadow":
            shown = "shadow"
        table.add_row(track, _model(identity), shown,
                      f"{pods.get('ready', 0)}/{pods.get('desired', 0)}" if pods else "-",
                      _num(m.get("qps"), "{:.1f}"), _num(m.get("p99LatencyMs"), "{:.2f}"),
                      _num(m.get("errorRate"), "{:.4%}"))
    if metrics.get("measuredAt"):
        table.caption = f"measured {metrics['measuredAt']}"
    return table


def _pod_share(replicas: Obj) -> float | None:
    """The candidate's share of ready pods, i.e. of requests under the Replicas router."""
    stable = (replicas.get("stable") or {}).get("ready", 0)
    candidate = (replicas.get("candidate") or {}).get("ready", 0)
    return 100.0 * candidate / (stable + candidate) if stable + candidate else None


def shadow_line(status: Obj) -> Text | None:
    shadow = status.get("shadow")
    if not shadow:
        return None
    return Text(f"Shadow: {shadow.get('samples', 0):,} pairs compared, agreement "
                f"{_num(shadow.get('agreement'), '{:.4f}')}, score drift (PSI) "
                f"{_num(shadow.get('scoreDrift'), '{:.4f}')}"
                + (f", since {shadow['startedAt']}" if shadow.get("startedAt") else ""))


def checks_table(body: Obj) -> Table | None:
    status = body.get("status") or {}
    analysis = status.get("analysis") or {}
    checks = analysis.get("checks") or []
    if not checks and not analysis:
        return None
    limits = ((body.get("spec") or {}).get("rollout") or {}).get("analysis") or {}
    title = (f"Analysis: {analysis.get('successes', 0)} successful, "
             f"{analysis.get('failures', 0)}/{limits.get('failureLimit', 2)} failed, "
             f"{analysis.get('inconclusive', 0)}/{limits.get('inconclusiveLimit', 3)} "
             "inconclusive in a row"
             + (f"; last interval ended {analysis['lastRunAt']}" if analysis.get("lastRunAt")
                else ""))
    table = Table(title=title, title_justify="left")
    for column in ("Check", "Measured", "", "Threshold", "Result", "Note"):
        table.add_column(column)
    for c in checks:
        result = c.get("result", "?")
        table.add_row(c.get("metric", "?"), _num(c.get("measured")), c.get("comparator", "<="),
                      _num(c.get("threshold")), Text(result, style=_RESULT_STYLE.get(result, "")),
                      c.get("message", ""))
    return table


def conditions_table(status: Obj) -> Table | None:
    conditions = status.get("conditions") or []
    if not conditions:
        return None
    table = Table(title="Conditions", title_justify="left")
    for column in ("Type", "Status", "Reason", "Since", "Message"):
        table.add_column(column)
    for c in conditions:
        table.add_row(c.get("type", "?"), c.get("status", "?"), c.get("reason", ""),
                      c.get("lastTransitionTime", ""), c.get("message", ""))
    return table


def events_table(events: list[Obj], last: int = 8) -> Table | None:
    if not events:
        return None
    table = Table(title="Events", title_justify="left")
    for column in ("Last seen", "Type", "Reason", "Message"):
        table.add_column(column)
    for e in events[-last:]:
        kind = e.get("type", "")
        table.add_row(e.get("lastTimestamp") or e.get("eventTime") or "",
                      Text(kind, style="yellow" if kind == "Warning" else ""),
                      e.get("reason", ""), e.get("message", ""))
    return table


def pipeline_view(body: Obj, events: list[Obj] | None = None) -> RenderableType:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    head = Text(f"{meta.get('namespace', '?')}/{meta.get('name', '?')}  ", style="bold")
    head.append_text(_styled(status.get("phase", "Pending")))
    if status.get("message"):
        head.append(f"  {status['message']}")
    parts: list[RenderableType | None] = [
        head, rollout_line(body), tracks_table(body), shadow_line(status), checks_table(body),
        conditions_table(status), events_table(events or [])]
    return Group(*[p for p in parts if p is not None])


def pipelines_table(bodies: list[Obj]) -> Table:
    table = Table()
    for column in ("Name", "Phase", "Stable", "Candidate", "Rollout", "Weight", "Ready", "QPS",
                   "p99 ms"):
        table.add_column(column)
    for body in sorted(bodies, key=lambda b: b["metadata"]["name"]):
        status = body.get("status") or {}
        rollout = status.get("rollout") or {}
        stable = (status.get("metrics") or {}).get("stable") or {}
        table.add_row(body["metadata"]["name"], _styled(status.get("phase", "Pending")),
                      _model(status.get("stable")), _model(status.get("candidate")),
                      rollout.get("phase", "-") + (" (paused)" if rollout.get("paused") else ""),
                      f"{candidate_weight(status)}%" if rollout else "-",
                      str(status.get("readyReplicas", 0)), _num(stable.get("qps"), "{:.1f}"),
                      _num(stable.get("p99LatencyMs"), "{:.2f}"))
    return table
