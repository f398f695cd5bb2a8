"""The targets' verdicts and the markdown tables, from a results document."""

from __future__ import annotations

from typing import Any

AUTOSCALING_BASELINES = ("hpa_cpu", "qps_0.5", "qps_0.7")


def best_baseline(per_policy: dict[str, dict[str, Any]]) -> str:
    """The autoscaling baseline with the fewest violation minutes (then fewest replica-hours).

    Static peak and the oracle are references, not autoscalers: static peak is told the trace's
    peak in advance, the oracle the future.
    """
    return min(AUTOSCALING_BASELINES, key=lambda p: (per_policy[p]["violation_minutes"],
                                                     per_policy[p]["replica_hours"]))


def targets(traces: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, per in traces.items():
        ours, best_name = per["scorefleet"], best_baseline(per)
        best = per[best_name]
        fewer = (ours["violation_minutes"] < best["violation_minutes"]
                 or ours["violation_minutes"] == best["violation_minutes"] == 0)
        cheaper = ours["replica_hours"] <= best["replica_hours"]
        verdict: dict[str, Any] = {
            "best_baseline": best_name,
            "violation_minutes": [ours["violation_minutes"], best["violation_minutes"]],
            "replica_hours": [ours["replica_hours"], best["replica_hours"]],
            "replica_hours_ratio": round(ours["replica_hours"] / best["replica_hours"], 3),
            "met": bool(fewer and cheaper),
        }
        if name == "diurnal":
            verdict["diurnal"] = {
                "compliant_fraction": ours["compliant_fraction"], "target": 0.995,
                "replica_hours_vs_oracle": ours["replica_hours_vs_oracle"], "limit": 1.15,
                "met": ours["compliant_fraction"] >= 0.995
                and ours["replica_hours_vs_oracle"] <= 1.15}
        if name == "step_3x":
            took = ours.get("recovery_s")
            verdict["recovery"] = {"recovery_s": took, "limit_s": 90,
                                   "met": took is not None and took < 90}
        out[name] = verdict
    return out


def _table(traces: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = ["| trace | policy | SLO-violation min | compliant | replica-h | vs oracle "
             "| recovery s | reversals/h | peak replicas | worst min p99 ms | shed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, per in traces.items():
        for policy, r in per.items():
            rec = r.get("recovery_s")
            rec_text = "" if "recovery_s" not in r else "none" if rec is None else f"{rec:.0f}"
            worst = r["worst_minute_p99_ms"]
            worst_text = "> 30 s" if worst >= 30_000 else f"{worst:.1f}"
            lines.append(
                f"| {name} | {'**' + policy + '**' if policy == 'scorefleet' else policy} "
                f"| {r['violation_minutes']} | {100 * r['compliant_fraction']:.2f} % "
                f"| {r['replica_hours']:.1f} | {r['replica_hours_vs_oracle']:.2f}x "
                f"| {rec_text} | {r['reversals_per_hour']:.1f} "
                f"| {r['peak_replicas']} | {worst_text} | {100 * r['shed_fraction']:.2f} % |")
    return lines


def _targets_table(verdicts: dict[str, Any]) -> list[str]:
    lines = ["| trace | best autoscaling baseline | violation min (ours / its) "
             "| replica-h (ours / its) | met |", "|---|---|---|---|---|"]
    for name, v in verdicts.items():
        vm, rh = v["violation_minutes"], v["replica_hours"]
        lines.append(f"| {name} | {v['best_baseline']} | {vm[0]} / {vm[1]} "
                     f"| {rh[0]:.1f} / {rh[1]:.1f} ({v['replica_hours_ratio']:.2f}x) "
                     f"| {'yes' if v['met'] else 'no'} |")
    for v in verdicts.values():
        if "diurnal" in v:
            d = v["diurnal"]
            lines.append(f"\nDiurnal: {100 * d['compliant_fraction']:.2f} % of minutes compliant "
                         f"(target >= 99.5 %) at {d['replica_hours_vs_oracle']:.2f}x the "
                         f"oracle's replica-hours (limit 1.15x): "
                         f"{'met' if d['met'] else 'not met'}.")
        if "recovery" in v:
            r = v["recovery"]
            took = "never" if r["recovery_s"] is None else f"after {r['recovery_s']:.0f} s"
            lines.append(f"\n3x step: back within the SLO {took} "
                         f"(target < 90 s): {'met' if r['met'] else 'not met'}.")
    return lines


def markdown(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    out = [f"# Autoscaling simulation results ({doc['date']})", "",
           f"`{doc['command']}` ({doc['elapsed_s']} s). SLO p99 {cfg['slo_p99_ms']:g} ms, "
           f"pod start-up {cfg['pod_startup_s']:g} s, scrape {cfg['scrape_interval_s']} s, "
           f"rate window {cfg['rate_window_s']} s, loops {cfg['loop_period_s']} s, "
           f"seed {cfg['seed']}.", "", *_table(doc["traces"]), "", "## Targets", "",
           *_targets_table(doc["targets"])]
    for key, traces in doc.get("sensitivity", {}).items():
        out += ["", f"## Sensitivity: {key.replace('_', ' ')}", "", *_table(traces), "",
                *_targets_table(doc["sensitivity_targets"][key])]
    return "\n".join(out) + "\n"
