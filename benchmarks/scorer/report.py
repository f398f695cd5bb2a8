"""Turn sweep results into results.json (headline keys, ratios vs targets) and a markdown table."""

from __future__ import annotations

import json
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


def noise_robust(results: dict[str, TargetResult]) -> dict[str, Any]:
    """Figures that shared-machine noise moves less than it moves a p99: closed-loop peaks and
    server CPU per event (at each target's closed-loop peak), and the ratios they give."""
    peaks = {k: peak(t.closed) for k, t in results.items() if t.closed}
    cpu = {k: r.server_cpu_us_per_event for k, r in peaks.items()}
    rps = {k: r.ok_rps for k, r in peaks.items()}
    events = {k: r.events_per_s for k, r in peaks.items()}
    others = sorted(r.other_cpu_share for t in results.values() for r in [*t.closed, *t.open]
                    if r.other_cpu_share == r.other_cpu_share)  # drop NaN (unknown)
    return {
        "closed_peak_rps": rps,
        "closed_peak_events_per_s": events,
        "closed_peak_p99_ms": {k: r.p99_ms for k, r in peaks.items()},
        "server_cpu_us_per_event_at_peak": cpu,
        "ratios": {
            "unary_vs_kserve_closed_peak": _ratio(rps.get("scorefleet_unary"),
                                                  rps.get("kserve_unary")),
            "oip_unary_vs_kserve_closed_peak": _ratio(rps.get("scorefleet_oip_unary"),
                                                      rps.get("kserve_unary")),
            "unary_vs_kserve_cpu_efficiency": _ratio(cpu.get("kserve_unary"),
                                                     cpu.get("scorefleet_unary")),
            "batching_vs_unbatched_closed_peak": _ratio(rps.get("scorefleet_unary"),
                                                        rps.get("scorefleet_unbatched_unary")),
            "batching_vs_unbatched_cpu_efficiency": _ratio(
                cpu.get("scorefleet_unbatched_unary"), cpu.get("scorefleet_unary")),
            "unary_vs_transport_ceiling_closed_peak": _ratio(
                rps.get("scorefleet_unary"), rps.get("grpcgo_ceiling_unary")),
        },
        "others_cpu_share_median": others[len(others) // 2] if others else None,
    }


def low_load(results: dict[str, TargetResult]) -> dict[str, Any]:
    """Per series: latency and server CPU per event at concurrency 1 (one client calling back
    to back: the low-load case), and CPU per event at the closed-loop peak (saturation)."""
    out: dict[str, Any] = {}
    for key, t in results.items():
        c1 = t.at_concurrency(1)
        top = peak(t.closed) if t.closed else None
        out[key] = {
            "c1_rps": c1.ok_rps if c1 else None,
            "c1_p50_ms": c1.p50_ms if c1 else None,
            "c1_p99_ms": c1.p99_ms if c1 else None,
            "c1_server_cpu_us_per_event": c1.server_cpu_us_per_event if c1 else None,
            "c1_others_cpu_share": c1.other_cpu_share if c1 else None,
            "peak_server_cpu_us_per_event": top.server_cpu_us_per_event if top else None,
        }
    return out


def low_load_markdown(data: dict[str, Any]) -> str:
    rows = ["| series | c=1 RPC/s | c=1 p50 (ms) | c=1 p99 (ms) | server CPU us/event at c=1 "
            "| server CPU us/event at closed-loop peak | others' CPU share at c=1 |",
            "|---|---|---|---|---|---|---|"]
    for key, v in data.get("low_load", {}).items():
        rows.append(f"| {key} | {_fmt(v['c1_rps'])} | {_fmt(v['c1_p50_ms'], 2)} "
                    f"| {_fmt(v['c1_p99_ms'], 2)} | {_fmt(v['c1_server_cpu_us_per_event'], 1)} "
                    f"| {_fmt(v['peak_server_cpu_us_per_event'], 1)} "
                    f"| {_pct(v['c1_others_cpu_share'])} |")
    return "\n".join(rows) + "\n"


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
        # The batcher before issue 10 (fixed wait, dispatchWhenIdle: false), same run.
        "scorefleet_fixedwait_rps_p99_10ms": _rate(results, "scorefleet_fixedwait_unary"),
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
        "noise_robust": noise_robust(results),
        "low_load": low_load(results),
        "model_compute": [asdict(c) for c in compute],
        "summary": {k: t.summary() for k, t in results.items()},
        "curves": {k: {"closed": [asdict(r) for r in t.closed],
                       "open": [asdict(r) for r in t.open]} for k, t in results.items()},
    }
    if pinned:
        out["pinned"] = {
            "note": "server on CPU 0, ghz on CPU 1 (taskset): each side gets one core",
            "headline": headline(pinned, compute),
            "noise_robust": noise_robust(pinned),
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


def noise_markdown(data: dict[str, Any]) -> str:
    """Closed-loop peaks and CPU per event, shared and pinned, per series."""
    nr = data["noise_robust"]
    pn = data.get("pinned", {}).get("noise_robust", {})
    rows = ["| series | closed-loop peak RPC/s | events/s | p99 there (ms) "
            "| server CPU us/event at peak | pinned peak RPC/s | pinned CPU us/event |",
            "|---|---|---|---|---|---|---|"]
    for key, rps in nr["closed_peak_rps"].items():
        rows.append(
            f"| {key} | {_fmt(rps)} | {_fmt(nr['closed_peak_events_per_s'][key])} "
            f"| {_fmt(nr['closed_peak_p99_ms'][key], 1)} "
            f"| {_fmt(nr['server_cpu_us_per_event_at_peak'][key], 1)} "
            f"| {_fmt(pn.get('closed_peak_rps', {}).get(key))} "
            f"| {_fmt(pn.get('server_cpu_us_per_event_at_peak', {}).get(key), 1)} |")
    return "\n".join(rows) + "\n"


def _x(ratio: float | None) -> str:
    return "undefined" if ratio is None else f"{ratio:.2f}x"


def _met(flag: bool, defined: bool) -> str:
    return "yes" if flag else ("no" if defined else "not shown (no SLO figure)")


def targets_markdown(data: dict[str, Any]) -> str:
    t = data["targets"]
    u, b, d = t["unary_vs_kserve"], t["batched_events_per_s"], t["batching_vs_unbatched"]
    rows = [
        "| target | goal | measured | met |", "|---|---|---|---|",
        f"| unary vs KServe (RPC/s at p99 <= 10 ms) | >= 2.0x | {_x(u['ratio'])} "
        f"(OIP vs OIP: {_x(u['ratio_same_protocol_oip'])}) "
        f"| {_met(u['met'], u['ratio'] is not None)} |",
        f"| batched events/s at p99 <= 20 ms | >= 100,000 | {_fmt(b['value'])} "
        f"| {_met(b['met'], True)} |",
        f"| dynamic batching vs off, closed loop c={d['closed_loop_concurrency']} | >= 1.5x, "
        f"p99 <= 10 ms | {_x(d['ratio_closed_loop'])}, p99 "
        f"{_fmt(d['batched_p99_ms_closed_loop'], 1)} ms (at SLO: {_x(d['ratio_at_slo'])}) "
        f"| {_met(d['met'], d['ratio_closed_loop'] is not None)} |",
    ]
    return "\n".join(rows) + "\n"


def _step(raw: dict[str, Any]) -> StepResult:
    # Files from before a field existed: mark it unknown rather than refuse them.
    return StepResult(**{"client_cpu_us_per_rpc": float("nan"),
                         "other_cpu_share": float("nan"), **raw})


def load(path: Path) -> tuple[dict[str, TargetResult], dict[str, TargetResult], dict[str, Any]]:
    """Rebuild the target results from a results.json (to re-render tables without re-running)."""
    data: dict[str, Any] = json.loads(path.read_text())

    def targets(section: dict[str, Any]) -> dict[str, TargetResult]:
        out: dict[str, TargetResult] = {}
        for key, summ in section.get("summary", {}).items():
            curves = section["curves"][key]
            out[key] = TargetResult(
                key, summ["server"], summ["call"], summ["events_per_rpc"], summ["slo_p99_ms"],
                summ["mode"], [_step(r) for r in curves["closed"]],
                [_step(r) for r in curves["open"]])
        return out

    return targets(data), targets(data.get("pinned", {})), data


def rerender(path: Path) -> str:
    """Recompute headline, ratios and tables of an existing results.json in place."""
    results, pinned, data = load(path)
    compute = [ComputeResult(**c) for c in data["model_compute"]]
    fresh = results_json(results, pinned, compute, {})
    keep = {k: v for k, v in data.items() if k not in fresh or k in ("date", "machine")}
    data = {**fresh, **keep}
    path.write_text(json.dumps(data, indent=2) + "\n")
    md = (markdown(results, pinned) + "\n" + targets_markdown(data) + "\n"
          + noise_markdown(data) + "\n" + low_load_markdown(data))
    path.with_suffix(".md").write_text(md)
    return md


def update_docs(results_path: Path, docs: Path) -> None:
    """Replace the generated tables between the markers in docs/benchmarks.md."""
    results, pinned, data = load(results_path)
    text = docs.read_text()
    for name, table in (("results", markdown(results, pinned) + "\n" + targets_markdown(data)),
                        ("robust", noise_markdown(data)), ("lowload", low_load_markdown(data))):
        if f"<!-- {name}:start" not in text:
            continue
        head = text.index(f"<!-- {name}:start")
        head = text.index("\n", head) + 1
        tail = text.index(f"<!-- {name}:end -->")
        text = text[:head] + table + text[tail:]
    docs.write_text(text)


def main(argv: list[str]) -> int:
    """report.py [RESULTS_JSON] [--docs]: re-render tables; --docs also refreshes the docs."""
    paths = [a for a in argv if not a.startswith("--")]
    path = Path(paths[0] if paths else Path(__file__).with_name("results.json"))
    print(rerender(path))
    if "--docs" in argv:
        update_docs(path, Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
