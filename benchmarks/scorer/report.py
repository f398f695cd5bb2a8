"""Turn sweep results into results.json (headline keys, ratios vs targets) and a markdown table."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ghz_runner import StepResult
from model_ceiling import ComputeResult
from sweeps import best_under_slo, peak

HIGH_CONCURRENCY = 64  # the closed-loop point where batching vs. no batching is compared


@dataclass
class TargetResult:
    key: str
    server: str
    call: str
    events_per_rpc: int
    slo_ms: float
    mode: str  # "shared" (ghz and server on both cores) or "pinned"
    closed: list[StepResult] = field(default_factory=list)
    open: list[StepResult] = field(default_factory=list)

    def best(self) -> StepResult | None:
        return best_under_slo(self.open, self.slo_ms)

    def at_concurrency(self, c: int) -> StepResult | None:
        return next((r for r in self.closed if r.concurrency == c), None)

    def summary(self) -> dict[str, Any]:
        best = self.best()
        top = peak(self.closed) if self.closed else None
        return {
            "server": self.server, "call": self.call, "events_per_rpc": self.events_per_rpc,
            "slo_p99_ms": self.slo_ms, "mode": self.mode,
            "rps_at_slo": best.ok_rps if best else 0.0,
            "events_per_s_at_slo": best.events_per_s if best else 0.0,
            "p99_ms_at_slo": best.p99_ms if best else None,
            "server_cpu_us_per_event_at_slo": best.server_cpu_us_per_event if best else None,
            "ghz_cpu_us_per_rpc_at_slo": best.client_cpu_us_per_rpc if best else None,
            "other_cpu_share_at_slo": best.other_cpu_share if best else None,
            "closed_peak_rps": top.ok_rps if top else None,
            "closed_peak_p99_ms": top.p99_ms if top else None,
            "closed_peak_concurrency": top.concurrency if top else None,
        }


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu_model": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(),
            "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
            "shared_machine": True}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _rate(results: dict[str, TargetResult], key: str, events: bool = False) -> float:
    t = results.get(key)
    best = t.best() if t else None
    if best is None:
        return 0.0
    return best.events_per_s if events else best.ok_rps


def headline(results: dict[str, TargetResult], compute: list[ComputeResult]) -> dict[str, Any]:
    kserve = _rate(results, "kserve_unary")
    unary = _rate(results, "scorefleet_unary")
    oip = _rate(results, "scorefleet_oip_unary")
    unbatched = _rate(results, "scorefleet_unbatched_unary")
    batched = _rate(results, "scorefleet_batched_64", events=True)
    hc_b = results["scorefleet_unary"].at_concurrency(HIGH_CONCURRENCY) \
        if "scorefleet_unary" in results else None
    hc_u = results["scorefleet_unbatched_unary"].at_concurrency(HIGH_CONCURRENCY) \
        if "scorefleet_unbatched_unary" in results else None
    hc_ratio = _ratio(hc_b.ok_rps if hc_b else None, hc_u.ok_rps if hc_u else None)
    best_compute = max(compute, key=lambda c: c.rows_per_s) if compute else None
    return {
        "kserve_unary_rps_p99_10ms": kserve,
        "scorefleet_unary_rps_p99_10ms": unary,
        "scorefleet_oip_unary_rps_p99_10ms": oip,
        "scorefleet_unbatched_rps_p99_10ms": unbatched,
        "scorefleet_batched_events_per_s_p99_20ms": batched,
        "transport_ceiling_rps": _rate(results, "grpcgo_ceiling_unary"),
        "model_rows_per_s": best_compute.rows_per_s if best_compute else 0.0,
        "model_rows_per_s_batch": best_compute.batch if best_compute else None,
        "targets": {
            "unary_vs_kserve": {"target": 2.0, "ratio": _ratio(unary, kserve),
                                "ratio_same_protocol_oip": _ratio(oip, kserve),
                                "met": bool(kserve and unary >= 2.0 * kserve)},
            "batched_events_per_s": {"target": 100_000, "value": batched,
                                     "ratio": round(batched / 100_000, 3),
                                     "met": batched >= 100_000},
            "batching_vs_unbatched": {
                "target": 1.5, "ratio_at_slo": _ratio(unary, unbatched),
                "closed_loop_concurrency": HIGH_CONCURRENCY,
                "ratio_closed_loop": hc_ratio,
                "batched_p99_ms_closed_loop": hc_b.p99_ms if hc_b else None,
                "unbatched_p99_ms_closed_loop": hc_u.p99_ms if hc_u else None,
                "met": bool(hc_ratio and hc_ratio >= 1.5 and hc_b and hc_b.p99_ms <= 10.0),
            },
        },
    }


def results_json(results: dict[str, TargetResult], pinned: dict[str, TargetResult],
                 compute: list[ComputeResult], meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), **meta, **headline(results, compute),
        "model_compute": [asdict(c) for c in compute],
        "summary": {k: t.summary() for k, t in results.items()},
        "curves": {k: {"closed": [asdict(r) for r in t.closed],
                       "open": [asdict(r) for r in t.open]} for k, t in results.items()},
    }
    if pinned:
        out["pinned"] = {
            "note": "server on CPU 0, ghz on CPU 1 (taskset): each side gets one core",
            "headline": headline(pinned, compute),
            "summary": {k: t.summary() for k, t in pinned.items()},
            "curves": {k: {"closed": [asdict(r) for r in t.closed],
                           "open": [asdict(r) for r in t.open]} for k, t in pinned.items()},
        }
    return out


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def markdown(results: dict[str, TargetResult], pinned: dict[str, TargetResult]) -> str:
    lines = ["| target | call | SLO p99 | RPC/s at SLO | events/s at SLO | p99 there (ms) "
             "| server CPU us/event | ghz CPU us/RPC | others' CPU share | closed-loop peak RPC/s "
             "(p99 ms) | pinned: RPC/s at SLO |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, t in results.items():
        s = t.summary()
        p = pinned[key].summary() if key in pinned else None
        lines.append(
            f"| {key} | `{t.call}` x{t.events_per_rpc} | {t.slo_ms:g} ms "
            f"| {_fmt(s['rps_at_slo'])} | {_fmt(s['events_per_s_at_slo'])} "
            f"| {_fmt(s['p99_ms_at_slo'], 2)} | {_fmt(s['server_cpu_us_per_event_at_slo'], 1)} "
            f"| {_fmt(s['ghz_cpu_us_per_rpc_at_slo'], 1)} "
            f"| {_pct(s['other_cpu_share_at_slo'])} "
            f"| {_fmt(s['closed_peak_rps'])} ({_fmt(s['closed_peak_p99_ms'], 1)}) "
            f"| {_fmt(p['rps_at_slo']) if p else '-'} |")
    return "\n".join(lines) + "\n"


def targets_markdown(data: dict[str, Any]) -> str:
    t = data["targets"]
    u, b, d = t["unary_vs_kserve"], t["batched_events_per_s"], t["batching_vs_unbatched"]
    rows = [
        "| target | goal | measured | met |", "|---|---|---|---|",
        f"| unary vs KServe (RPC/s at p99 <= 10 ms) | >= 2.0x | {u['ratio']}x "
        f"(OIP vs OIP: {u['ratio_same_protocol_oip']}x) | {u['met']} |",
        f"| batched events/s at p99 <= 20 ms | >= 100,000 | {_fmt(b['value'])} | {b['met']} |",
        f"| dynamic batching vs off, closed loop c={d['closed_loop_concurrency']} | >= 1.5x, "
        f"p99 <= 10 ms | {d['ratio_closed_loop']}x, p99 {d['batched_p99_ms_closed_loop']} ms "
        f"(at SLO: {d['ratio_at_slo']}x) | {d['met']} |",
    ]
    return "\n".join(rows) + "\n"
