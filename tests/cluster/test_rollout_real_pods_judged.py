"""Canary analysis on real scorer pods, judged on latency and on the lack of traffic: the
project's scorer image on the local cluster's real node, the operator process, Prometheus
discovering the pods (kubernetes_sd), requests through the cluster DNS split by the Replicas
router.

- A candidate slower only at latency (a model doing ~20 ms more arithmetic per call, same
  scores, no errors, well within the SLO) is rolled back on `p99LatencyRatio` (its p99 against
  the stable track's). Prints the time from the start of the first bad interval to the
  rollback, in intervals.
- With no requests at all, every interval is Inconclusive (too few requests) and the rollout
  pauses: it is neither promoted nor failed for want of traffic.

One stable fleet (pipeline `judged`, v1 on 2 pods) serves both tests, so its pods start once per
module. Each test starts from it serving v1 with no rollout: a rollout left by the test before is
cancelled by putting the spec back to v1, as a user reverting the Git change would.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from scorefleet import load
from tests.cluster import real_pods
from tests.cluster.real_pods import pipeline_yaml, scorer_pods, wait_ready_pods
from tests.cluster.test_rollout_real_pods import (  # noqa: F401 (cluster_operator: fixture)
    DRAIN_DELAY,
    RESYNC,
    candidate_pods,
    cluster_operator,
    from_first_bad,
    rollback_events,
    seconds,
    send,
    status,
    under_load,
    until_judged,
)
from tests.conftest import eventually, kubectl, namespace_on_real_node
from tests.scorer.scorer_process import Models

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow,
              pytest.mark.timeout(900)]

NAME = "judged"
INTERVAL = 10  # seconds per analysis interval of the latency test
SLOW = "v4"  # v1 plus ~20 ms of arithmetic per model call (slow_model)
SLO = "1s"  # p99 the pipeline promises: far above either model, so only the ratio can fail


def slow_model(models: Models, version: str = SLOW, layers: int = 75) -> None:
    """v1 with dense arithmetic added to every model call: a 256x256 matrix built from the
    batch's features, multiplied `layers` times by a permutation matrix, summed, multiplied by
    0 and added to the margin. The scores are v1's exactly (the product stays finite); only
    the time differs, as with a bigger model: 22 ms per call at batch sizes 1-8 on this
    machine's CPU, one thread, against 0.01 ms for v1. onnxruntime cannot fold any of it away:
    it depends on the input."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    size = 256
    model = onnx.load(str(models.dir / "model-v1.onnx"))
    graph = model.graph
    features = graph.input[0].name
    sigmoid = next(n for n in graph.node if n.op_type == "Sigmoid")
    embed = np.zeros((32, size), dtype=np.float32)
    embed[np.arange(32), np.arange(32)] = 1.0
    permutation = np.eye(size, dtype=np.float32)[np.roll(np.arange(size), 1)]
    graph.initializer.extend([
        numpy_helper.from_array(embed, "slow_embed"),
        numpy_helper.from_array(permutation, "slow_permutation"),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), "slow_zero")])
    nodes = [helper.make_node("MatMul", [features, "slow_embed"], ["slow_rows"]),
             helper.make_node("Transpose", ["slow_rows"], ["slow_columns"]),
             helper.make_node("MatMul", ["slow_columns", "slow_rows"], ["slow_0"])]
    nodes += [helper.make_node("MatMul", [f"slow_{i}", "slow_permutation"], [f"slow_{i + 1}"])
              for i in range(layers)]
    nodes += [helper.make_node("ReduceSum", [f"slow_{layers}"], ["slow_sum"], keepdims=1),
              helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
              helper.make_node("Add", [sigmoid.input[0], "slow_nothing"], ["slow_margin"])]
    sigmoid.input[0] = "slow_margin"
    at = list(graph.node).index(sigmoid)
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    onnx.checker.check_model(model)
    models.add(version, model)


def judged_pipeline(models: Models, store_url: str, version: str, rollout: str = "") -> str:
    """2 stable pods serving `version`, an SLO of SLO at p99, and the `rollout` section given
    (indented under spec)."""
    base: str = pipeline_yaml(NAME, models, store_url, replicas=2, version=version)
    return base + f"  slo: {{p99Latency: {SLO}}}\n" + rollout


@dataclass(frozen=True)
class Fleet:
    node: Any
    ns: str
    models: Models

    @property
    def target(self) -> str:
        return load.headless_target(NAME, self.ns, self.node.dns)

    def apply(self, version: str, rollout: str = "") -> None:
        kubectl("apply", "-n", self.ns, "-f", "-", stdin=judged_pipeline(
            self.models, self.node.model_store_url, version, rollout))

    def status(self) -> dict[str, Any]:
        return status(self.ns, NAME)

    def stable_v1(self) -> None:
        """v1 on 2 ready stable pods, Ready, no rollout and no candidate pod: from a fresh
        pipeline, or by cancelling the rollout a test before left (spec back to v1). A test
        before that promoted its candidate (and so failed) leaves another stable model: the
        pipeline is then made afresh, so that this test is judged on its own."""
        if kubectl("get", "sp", NAME, "-n", self.ns, "--ignore-not-found", "-o",
                   "jsonpath={.status.stable.version}").strip() not in ("", "v1"):
            kubectl("delete", "sp", NAME, "-n", self.ns, "--cascade=foreground",
                    "--timeout=120s")
        self.apply("v1")
        wait_ready_pods(self.ns, NAME, 2)
        eventually("v1 stable, no rollout", lambda: (
            (s := self.status()).get("phase") == "Ready" and not s.get("rollout")
            and s["stable"]["version"] == "v1" and not candidate_pods(self.ns, NAME)),
            timeout=120)


@pytest.fixture(scope="module")
def fleet(cluster_operator: Any, models: Models) -> Iterator[Fleet]:  # noqa: F811
    slow_model(models)
    real_pods.publish_models(models, cluster_operator)
    with namespace_on_real_node() as ns:
        yield Fleet(cluster_operator, ns, models)


def test_a_candidate_slower_only_at_p99_is_rolled_back_by_the_latency_ratio(
        fleet: Fleet) -> None:
    """v4 answers every request correctly, within the SLO, but ~20 ms slower than v1: the
    operator, judging what Prometheus scraped from the real pods while real requests are split
    by the Replicas router, rolls it back on its p99 against the stable track's."""
    fleet.stable_v1()
    ns = fleet.ns
    with under_load(fleet.target) as results:
        fleet.apply(SLOW, f"""\
  rollout:
    canary: {{steps: [{{weight: 33}}]}}
    analysis: {{interval: {INTERVAL}s, minRequestCount: 20}}
""")
        started = eventually("canary step in effect", lambda: (
            fleet.status().get("canary") or {}).get("stepStartedAt"), timeout=120)
        done, judged = until_judged(ns, NAME)
        eventually("candidate scaled to zero", lambda: not candidate_pods(ns, NAME),
                   timeout=60, interval=0.2)
        time.sleep(DRAIN_DELAY + 2)  # its open connections end with its drain
    (during,) = results
    rollout, analysis = done["rollout"], done["analysis"]
    assert rollout["phase"] == "Failed", (rollout, analysis)

    # Why, with the numbers: the p99 ratio, measured beside its threshold, in status and in
    # the rollback's Event; no other check failed (it is slower, not wrong or out of its SLO).
    checks = {c["metric"]: c for c in analysis["checks"]}
    ratio = checks["p99LatencyRatio"]
    assert ratio["result"] == "Failed", analysis
    assert ratio["measured"] > ratio["threshold"], ratio
    assert {m for m, c in checks.items() if c["result"] == "Failed"} == {"p99LatencyRatio"}, \
        analysis
    assert analysis["failures"] == 2  # failureLimit, the default
    (rolled_back,) = eventually("the rollback's Event", lambda: rollback_events(ns, NAME),
                                timeout=30)
    assert "p99LatencyRatio" in rolled_back["message"], rolled_back["message"]
    assert f"> {ratio['threshold']:g}" in rolled_back["message"], rolled_back["message"]

    # Traffic back on stable: in status, in the candidate's Deployment, in who answers.
    assert done["stable"]["version"] == "v1" and done["phase"] == "Failed"
    eventually("status: candidate at 0 of 0 replicas", lambda: (
        fleet.status().get("replicas") or {}).get("candidate") == {"desired": 0, "ready": 0},
        timeout=30)
    assert kubectl("get", "deployment", f"{NAME}-candidate", "-n", ns,
                   "-o", "jsonpath={.spec.replicas}") == "0"
    kubectl("wait", "-n", ns, "--for=condition=RolledBack", f"sp/{NAME}", "--timeout=30s")
    # Every request answered: the candidate is slow, never failing.
    assert during.codes == Counter(OK=during.codes["OK"]), during.summary()
    slow_answers = sum(1 for _, _, v in during.rows if v == SLOW)
    assert slow_answers > 0, during.summary()  # the candidate did take requests
    final = send(fleet.target, rate=60, seconds=5)
    assert final.codes == Counter(OK=final.codes["OK"]), final.summary()
    assert {(track, version) for _, track, version in final.rows} == {("stable", "v1")}

    # How fast: failureLimit 2 means two bad intervals, each judged by the first resync after
    # it ends.
    from_bad = from_first_bad(judged, started, rollout["finishedAt"])
    from_step = seconds(rollout["finishedAt"], started)
    print(f"\nP99 ROLLBACK ON REAL PODS: {from_bad:.0f} s from the start of the first bad "
          f"interval to Failed ({from_bad / INTERVAL:.2f} intervals of {INTERVAL} s), "
          f"{from_step:.0f} s from the step's start ({from_step / INTERVAL:.2f} intervals); "
          f"intervals judged {[(t, r) for t, r, _ in judged]}; p99LatencyRatio "
          f"{ratio['measured']} > {ratio['threshold']} ({ratio['message']}); "
          f"p99LatencyMs {checks['p99LatencyMs']['measured']} <= "
          f"{checks['p99LatencyMs']['threshold']}; the candidate answered {slow_answers} "
          f"requests; load {during.summary()}")
    assert from_bad <= 2 * (INTERVAL + RESYNC) + 2


def test_no_traffic_is_inconclusive_and_pauses_never_promotes(fleet: Fleet) -> None:
    """Both tracks on real pods, discovered and scraped by Prometheus, and no request sent:
    each interval is Inconclusive (too few requests) and after inconclusiveLimit of them the
    rollout pauses; it is not promoted for want of a failure, nor failed."""
    fleet.stable_v1()
    ns, interval = fleet.ns, 5
    fleet.apply("v2", f"""\
  rollout:
    canary: {{steps: [{{weight: 33}}]}}
    analysis: {{interval: {interval}s, minRequestCount: 20}}
""")
    # Until paused, or out of the canary phase (promoted or failed: then the test fails now).
    paused = eventually("paused", lambda: (
        s if (r := (s := fleet.status()).get("rollout") or {}).get("paused") or r.get(
            "phase", "Canary") != "Canary" else None), timeout=120, interval=0.5)
    rollout, analysis = paused["rollout"], paused["analysis"]
    assert (rollout["phase"], rollout.get("pauseReason")) == ("Canary", "Inconclusive"), rollout
    assert analysis["successes"] == 0 and analysis["failures"] == 0, analysis
    assert analysis["inconclusive"] == 3, analysis  # the default inconclusiveLimit
    checks = {c["metric"]: c for c in analysis["checks"]}
    count = checks["requestCount"]
    assert count["result"] == "Inconclusive" and not count.get("measured"), count
    assert paused["stable"]["version"] == "v1" and paused["phase"] == "Paused"
    kubectl("wait", "-n", ns, "--for=condition=Promoted=False", f"sp/{NAME}", "--timeout=10s")

    # Not for want of a candidate: its pod is ready and Prometheus scrapes it, as it does the
    # stable pods; there is simply nothing to count.
    (candidate,) = candidate_pods(ns, NAME)
    assert real_pods.ready(candidate), candidate["status"]
    scraped = eventually("Prometheus scrapes every pod", lambda: (
        pods if {p["metadata"]["name"] for p in scorer_pods(ns, NAME)} <= (
            pods := real_pods.discovered_pods(fleet.node.prometheus_url, ns, NAME))
        else None), timeout=30)

    # Paused, the analysis goes on and nothing advances: still no promotion an interval on.
    later = eventually("another interval judged", lambda: (
        s if (s := fleet.status())["analysis"].get("lastRunAt") != analysis["lastRunAt"]
        else None), timeout=3 * interval)
    assert later["rollout"]["phase"] == "Canary" and later["rollout"]["paused"], later["rollout"]
    assert later["analysis"]["successes"] == 0 and later["stable"]["version"] == "v1"
    assert later["analysis"]["lastResult"] == "Inconclusive", later["analysis"]
    took = seconds(paused["analysis"]["lastRunAt"], rollout["startedAt"])
    print(f"\nNO TRAFFIC ON REAL PODS: paused ({rollout['pauseReason']}) {took:.0f} s after "
          f"the rollout started, after {analysis['inconclusive']} Inconclusive intervals of "
          f"{interval} s; requestCount {count.get('measured')} >= {count['threshold']}? "
          f"({count['message']}); pods scraped {sorted(scraped)}; one interval later "
          f"{later['analysis']['lastResult']}, still paused, stable "
          f"{later['stable']['version']}")
