"""What `get` renders from a status (pure): measured values beside thresholds, per-track rows."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from scorefleet.rollout_cli.view import candidate_weight, pipeline_view, pipelines_table

BODY: dict[str, Any] = {
    "metadata": {"name": "phish", "namespace": "fraud"},
    "spec": {"model": {"name": "phishing", "version": "v2", "uri": "file:///m"},
             "rollout": {"canary": {"steps": [{"weight": 5}, {"weight": 25}, {"weight": 50}]},
                         "analysis": {"failureLimit": 2, "inconclusiveLimit": 3}}},
    "status": {
        "phase": "Progressing", "message": "canary in progress",
        "stable": {"name": "phishing", "version": "v1", "uri": "file:///m", "threshold": 0.5},
        "candidate": {"name": "phishing", "version": "v2", "uri": "file:///m",
                      "threshold": 0.5},
        "rollout": {"revision": "abc123", "strategy": "Canary", "phase": "Canary",
                    "attempt": 1, "startedAt": "2026-01-01T00:00:00Z",
                    "message": "canary step 2/3 at 25%: analysing"},
        "canary": {"step": 1, "weight": 25, "stepStartedAt": "2026-01-01T00:03:00Z"},
        "analysis": {"successes": 3, "failures": 1, "inconclusive": 0,
                     "lastRunAt": "2026-01-01T00:04:00Z", "checks": [
                         {"metric": "p99LatencyRatio", "result": "Failed", "measured": 1.5,
                          "threshold": 1.2, "comparator": "<=",
                          "message": "candidate 15 ms / stable 10 ms"},
                         {"metric": "requestCount", "result": "Successful", "measured": 1234,
                          "threshold": 200, "comparator": ">="}]},
        "replicas": {"stable": {"desired": 4, "ready": 4},
                     "candidate": {"desired": 1, "ready": 1}},
        "metrics": {"measuredAt": "2026-01-01T00:04:00Z",
                    "stable": {"qps": 812.5, "p99LatencyMs": 10.0, "errorRate": 0.0},
                    "candidate": {"qps": 270.1, "p99LatencyMs": 15.0, "errorRate": 0.0002}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "ScorersReady",
                        "message": "4/4 stable scorers serve phishing v1",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    },
}


def render(obj: Any) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(obj)
    return console.export_text()


def test_get_shows_tracks_weights_and_checks_beside_thresholds() -> None:
    text = render(pipeline_view(BODY, [{"type": "Warning", "reason": "AnalysisFailed",
                                        "message": "interval failed (1/2)",
                                        "lastTimestamp": "2026-01-01T00:04:00Z"}]))
    assert "fraud/phish  Progressing" in text
    assert "step 2/3 at 25%" in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines()
             if line.count("│") > 3}
    assert "phishing v1" in lines["stable"] and "75% (80% by pods)" in lines["stable"]
    assert "812.5" in lines["stable"] and "4/4" in lines["stable"]
    assert "25% (20% by pods)" in lines["candidate"] and "15.00" in lines["candidate"]
    row = lines["p99LatencyRatio"].split("│")
    assert [c.strip() for c in row[2:6]] == ["1.5", "<=", "1.2", "Failed"]
    assert "1/2 failed" in text and "0/3 inconclusive" in text
    assert "AnalysisFailed" in text and "ScorersReady" in text


def test_shadow_takes_no_traffic_and_shows_agreement() -> None:
    status = {**BODY["status"], "rollout": {**BODY["status"]["rollout"], "phase": "Shadow"},
              "shadow": {"samples": 12345, "agreement": 0.995, "scoreDrift": 0.012,
                         "startedAt": "2026-01-01T00:00:00Z"}}
    assert candidate_weight(status) == 0
    text = render(pipeline_view({**BODY, "status": status}))
    assert "12,345 pairs compared, agreement 0.9950, score drift (PSI) 0.0120" in text
    assert "shadow" in text


def test_no_rollout_and_list() -> None:
    quiet = {"metadata": BODY["metadata"], "spec": BODY["spec"],
             "status": {"phase": "Ready", "stable": BODY["status"]["stable"]}}
    assert "No rollout: the stable track serves phishing v1." in render(pipeline_view(quiet))
    table = render(pipelines_table([BODY, {**quiet, "metadata": {"name": "another"}}]))
    assert table.index("another") < table.index("phish")
    assert "Canary" in table and "25%" in table
