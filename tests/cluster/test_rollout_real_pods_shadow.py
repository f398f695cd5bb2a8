"""Shadow and supersede on real scorer pods: the project's scorer image on the local cluster's
real node, the operator process, Prometheus discovering the pods (kubernetes_sd), and real
requests through the cluster DNS, each counted by the track and model its answer names.

One fleet for the module (pipeline `phish`, v1 on 2 stable pods): each test rolls a candidate
out on it, so the stable pods start once.

- A candidate whose scores drift (odds x4) scores the stable pods' own requests beside v1 (the
  scorer's paired shadow, inside the stable pods) and fails in shadow on its score drift; no
  candidate pod ever exists and every answer is stable v1's. Prints the time to fail and the
  measured PSI and agreement beside their thresholds.
- A Git change while a two-step canary is at step 2 supersedes the running rollout: the new
  candidate starts again at step 1, the old candidate's pods go away, and the requests sent
  throughout are all answered. Prints the failed requests and the times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from scorefleet import load
from scorefleet.scorer.example_model import synthetic_features
from tests.cluster import real_pods
from tests.cluster.real_pods import pipeline_yaml, scorer_pods, wait_ready_pods
from tests.cluster.test_rollout_real_pods import (  # noqa: F401 (cluster_operator: fixture)
    candidate_pods,
    cluster_operator,
    seconds,
    status,
    under_load,
)
from tests.conftest import eventually, kubectl, namespace_on_real_node
from tests.scorer.scorer_process import Models

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow,
              pytest.mark.timeout(900)]

INTERVAL = 10  # seconds per analysis interval
RESYNC = 1  # real_pods.operator's SCOREFLEET_RESYNC_SECONDS
DRIFTED = "v9"  # v1 with every score's odds x4
SUPERSEDER = "v8"  # v1 stamped as another version: same scores, a new revision


def drifted_model(models: Models, version: str = DRIFTED, shift: float = 1.4) -> None:
    """v1 with every score's odds multiplied by e^shift (~4x): the same ranking, a shifted
    score distribution, as a recalibrated or mis-trained model would give."""
    import onnx

    model = onnx.load(str(models.dir / "model-v1.onnx"))
    ensemble = next(n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor")
    base = next(a for a in ensemble.attribute if a.name == "base_values")
    base.floats[0] += shift
    models.add(version, model)


def restamped_model(models: Models, version: str = SUPERSEDER) -> None:
    import onnx

    models.add(version, onnx.load(str(models.dir / "model-v1.onnx")))


def shadow_pipeline(models: Models, store_url: str, version: str) -> str:
    """ShadowThenCanary: every request of the stable pods also scored by the candidate, for
    at least 2 minutes and 1,000 pairs before any canary step (so a candidate failing sooner
    fails in shadow); the default limits (agreement >= 0.99, drift <= 0.1)."""
    base: str = pipeline_yaml("phish", models, store_url, replicas=2, version=version)
    return base + f"""\
  rollout:
    strategy: ShadowThenCanary
    shadow: {{sampleRate: 1.0, duration: 2m, minSamples: 1000, maxCpuFraction: 0.5}}
    canary: {{steps: [{{weight: 33, manualGate: true}}]}}
    analysis: {{interval: {INTERVAL}s, minRequestCount: 50, inconclusiveLimit: 6}}
"""


def canary_pipeline(models: Models, store_url: str, version: str) -> str:
    """Two steps: 10% (one candidate pod beside two: 33%) held for 10 s of judged traffic,
    then 50% (two candidate pods) held at a manual gate."""
    base: str = pipeline_yaml("phish", models, store_url, replicas=2, version=version)
    return base + f"""\
  rollout:
    canary: {{steps: [{{weight: 10, pause: 10s}}, {{weight: 50, manualGate: true}}]}}
    analysis: {{interval: {INTERVAL}s, minRequestCount: 20}}
"""


@dataclass(frozen=True)
class Fleet:
    node: Any
    ns: str
    name: str
    target: str
    models: Models

    def apply(self, text: str) -> None:
        kubectl("apply", "-n", self.ns, "-f", "-", stdin=text)


@pytest.fixture(scope="module")
def fleet(cluster_operator: Any, models: Models) -> Iterator[Fleet]:  # noqa: F811
    """`phish` serving v1 from 2 ready pods in a namespace of its own on the real node."""
    node = cluster_operator
    drifted_model(models)
    restamped_model(models)
    real_pods.publish_models(models, node)
    with namespace_on_real_node() as ns:
        fleet = Fleet(node, ns, "phish", load.headless_target("phish", ns, node.dns), models)
        fleet.apply(canary_pipeline(models, node.model_store_url, "v1"))
        wait_ready_pods(ns, "phish", 2)
        eventually("v1 stable", lambda: status(ns, "phish").get("phase") == "Ready",
                   timeout=120)
        yield fleet


def events_of(ns: str, name: str, reason: str) -> list[str]:
    items = json.loads(kubectl("get", "events", "-n", ns, "-o", "json", "--field-selector",
                               f"involvedObject.name={name}"))["items"]
    return [e["message"] for e in items if e["reason"] == reason]


def test_a_drifting_candidate_fails_in_shadow_before_taking_any_traffic(fleet: Fleet) -> None:
    """v9 (odds x4) scores the stable pods' own requests beside v1, inside those pods, and
    fails the drift limit (PSI 0.1, less its sampling noise) in shadow; no candidate pod is
    ever made, every answer is stable v1's, and the stable pods were never replaced."""
    ns, name = fleet.ns, fleet.name
    before = {p["metadata"]["name"] for p in wait_ready_pods(ns, name, 2)}
    # Varied events (a constant one would put every score in one bucket).
    events = synthetic_features(2000, seed=5).astype(float).tolist()
    seen_candidates: set[str] = set()
    judged: list[tuple[str, str | None, int]] = []  # (lastRunAt, lastResult, pairs so far)

    def finished() -> dict[str, Any] | None:
        """The final status once the rollout ended; meanwhile records every candidate pod
        and each judged interval."""
        seen_candidates.update(p["metadata"]["name"] for p in candidate_pods(ns, name))
        s = status(ns, name)
        a = s.get("analysis") or {}
        if a.get("lastRunAt") and (not judged or judged[-1][0] != a["lastRunAt"]):
            judged.append((a["lastRunAt"], a.get("lastResult"),
                           (s.get("shadow") or {}).get("samples", 0)))
        return s if s.get("rollout", {}).get("phase") in ("Failed", "Succeeded") else None

    with under_load(fleet.target, rate=60, seconds=200, events=events) as results:
        time.sleep(3)  # the load is flowing before the change
        fleet.apply(shadow_pipeline(fleet.models, fleet.node.model_store_url, DRIFTED))
        applied = time.monotonic()
        done = eventually("rollout finished", finished, timeout=180, interval=0.5)
        seen_done = time.monotonic()
    (answers,) = results
    rollout, shadow = done["rollout"], done.get("shadow") or {}
    assert rollout["phase"] == "Failed", (rollout, shadow, done.get("analysis"))
    assert "in shadow" in rollout["message"], rollout["message"]
    assert done["candidate"]["version"] == DRIFTED and done["stable"]["version"] == "v1"

    # Why, with the numbers: the drift check's measured value beside its threshold.
    # status.shadow shows the interval that failed it, as status.analysis does.
    assert shadow["checks"] == done["analysis"]["checks"], (shadow, done["analysis"])
    checks = {c["metric"]: c for c in shadow["checks"]}
    drift, agreement = checks["scoreDrift"], checks["agreement"]
    assert drift["result"] == "Failed", checks
    assert drift["measured"] > drift["threshold"] == 0.1, drift
    assert shadow["samples"] >= 50 and done["analysis"]["failures"] == 2  # failureLimit
    (rolled_back, *_) = [m for m in events_of(ns, name, "RolledBack")
                         if m.startswith("rolled back in shadow")]
    assert "scoreDrift" in rolled_back, rolled_back
    kubectl("wait", "-n", ns, "--for=condition=RolledBack", f"sp/{name}", "--timeout=30s")

    # It never took a request: no canary step, no candidate track or pod, and every answer
    # came from the stable pods with v1; they are the pods of before (the candidate scored
    # inside them, beside v1), and Prometheus has their pairs.
    assert not done.get("canary"), done["canary"]
    assert not seen_candidates and not candidate_pods(ns, name)
    assert not kubectl("get", "deployment", f"{name}-candidate", "-n", ns,
                       "--ignore-not-found").strip()
    assert answers.codes == {"OK": answers.codes["OK"]}, answers.summary()
    assert {(track, version) for _, track, version in answers.rows} == {("stable", "v1")}
    after = scorer_pods(ns, name)
    assert {p["metadata"]["name"] for p in after} == before
    assert all(c["restartCount"] == 0 for p in after for c in p["status"]["containerStatuses"])
    rows = real_pods.prom_query(fleet.node.prometheus_url, (
        f'sum by (pod) (scorefleet_shadow_pairs_total{{namespace="{ns}",pipeline="{name}",'
        f'primary_version="v1",shadow_version="{DRIFTED}"}})'))
    pairs_by_pod = {r["metric"]["pod"]: float(r["value"][1]) for r in rows}
    assert set(pairs_by_pod) == before and all(pairs_by_pod.values()), pairs_by_pod

    in_shadow = seconds(rollout["finishedAt"], shadow["startedAt"])
    from_change = seconds(rollout["finishedAt"], rollout["startedAt"])
    print(f"\nSHADOW DRIFT ON REAL PODS: Failed in shadow {in_shadow:.0f} s after the shadow "
          f"started ({in_shadow / INTERVAL:.2f} intervals of {INTERVAL} s), {from_change:.0f} s "
          f"after the rollout started ({seen_done - applied:.0f} s after the apply, as "
          f"polled); {shadow['samples']} pairs; scoreDrift {drift['measured']} > "
          f"{drift['threshold']} ({drift['message']}); agreement {agreement['measured']} vs "
          f">= {agreement['threshold']} ({agreement['result']}: {agreement['message']}); "
          f"pairs by stable pod {pairs_by_pod}; intervals judged (end, result, pairs) "
          f"{judged}; candidate pods seen 0; load "
          f"{answers.summary()}")


def test_a_git_change_at_canary_step_2_supersedes_the_running_rollout(fleet: Fleet) -> None:
    """v2 reaches step 2 (50%, two candidate pods, held at the gate); Git moves on to v8: the
    running rollout is superseded at once (not blocked by it), v8 starts at step 1, v2's pods
    go away, and every request sent meanwhile is answered."""
    ns, name, store = fleet.ns, fleet.name, fleet.node.model_store_url
    with under_load(fleet.target, rate=60, seconds=240) as results:
        fleet.apply(canary_pipeline(fleet.models, store, "v2"))
        at_step_2 = eventually("v2 at step 2, in effect", lambda: (
            s if (s := status(ns, name)).get("candidate", {}).get("version") == "v2"
            and (s.get("canary") or {}).get("step") == 1
            and s["canary"].get("stepStartedAt") else None), timeout=150, interval=0.5)
        old = {p["metadata"]["name"] for p in candidate_pods(ns, name)}
        assert len(old) == 2, old  # 50% beside 2 stable pods
        fleet.apply(canary_pipeline(fleet.models, store, SUPERSEDER))
        applied = time.monotonic()
        restarted = eventually(f"{SUPERSEDER} superseded v2, from step 1", lambda: (
            s if (s := status(ns, name)).get("candidate", {}).get("version") == SUPERSEDER
            and (s.get("canary") or {}).get("step") == 0
            and s.get("rollout", {}).get("phase") == "Canary" else None),
            timeout=60, interval=0.2)
        superseded_after = time.monotonic() - applied

        def old_pods_gone() -> float | None:
            names = set(kubectl("get", "pods", "-n", ns, "-o", "name").split())
            return time.monotonic() if not {f"pod/{n}" for n in old} & names else None

        gone_at = eventually("v2's pods gone", old_pods_gone, timeout=90, interval=0.5)
        wait_ready_pods(ns, name, 3, timeout=90)  # 2 stable, 1 candidate (10% -> 1 pod)
        # Clients re-resolve the Service when the pods' connections are recycled
        # (maxConnectionAge 10 s): by then the new pod has answered.
        time.sleep(12)
    (answers,) = results
    rollout = restarted["rollout"]
    assert rollout["attempt"] == 1 and restarted["stable"]["version"] == "v1"
    assert restarted["phase"] == "Progressing", restarted["phase"]
    assert [m for m in events_of(ns, name, "RolloutSuperseded")
            if f"{SUPERSEDER} " in m and "supersedes the canary rollout" in m]
    new = candidate_pods(ns, name)
    assert new and not {p["metadata"]["name"] for p in new} & old
    # Requests: all answered; v2 answered only until its pods were gone.
    failed = sum(n for code, n in answers.codes.items() if code != "OK")
    versions = {(track, version) for _, track, version in answers.rows}
    assert versions == {("stable", "v1"), ("candidate", "v2"), ("candidate", SUPERSEDER)}, \
        answers.summary()
    last_v2 = max(t for t, _, v in answers.rows if v == "v2")
    assert last_v2 <= gone_at + 1.0, (last_v2 - applied, gone_at - applied)
    took = seconds(at_step_2["canary"]["stepStartedAt"], at_step_2["rollout"]["startedAt"])
    print(f"\nSUPERSEDE ON REAL PODS: v2 at step 2 {took:.0f} s after its rollout started; "
          f"{SUPERSEDER} applied -> rollout superseded, at step 1 in {superseded_after:.1f} s "
          f"(as polled); v2's 2 pods gone {gone_at - applied:.1f} s after the apply, its last "
          f"answer {last_v2 - applied:+.1f} s; requests failed {failed} of "
          f"{sum(answers.codes.values())}: {answers.summary()}")
    assert failed == 0, answers.summary()
