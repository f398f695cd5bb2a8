"""The Replicas router on real scorer pods: real requests through the cluster DNS, balanced per
request (round_robin over the headless Service), counted by the track that answered (every
answer names it). A canary's weight is visible in the requests each track serves, and after an
abort the requests are served by the stable track only. Prints the measured figures: each
track's share, and how many requests the candidate served after the abort and for how long,
beside the time its address took to leave the Service's endpoints (endpoint propagation).

The analysis on the same pods: the operator judges what Prometheus discovered and scraped from
them; a candidate failing its requests is rolled back (prints the time from the first bad
interval to the rollback, in intervals), a good one is promoted to full.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from scorefleet import load
from scorefleet.operator.kube import Kube
from scorefleet.rollout_cli import main as cli
from scorefleet.scorer.protos import v1_pb2, v1_pb2_grpc
from tests.cluster import real_pods
from tests.cluster.real_pods import pipeline_yaml, scorer_pods, wait_ready_pods
from tests.conftest import eventually, kubectl
from tests.scorer.scorer_process import Models

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow,
              pytest.mark.timeout(900)]  # the first real-pod test also builds the image

DRAIN_DELAY = 2.0  # pipeline_yaml's scorer.drainDelay


@pytest.fixture(scope="module")
def cluster_operator(real_node: Any, scorer_image: str, models: Models,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    real_pods.publish_models(models, real_node)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with real_pods.operator(real_node.prometheus_url, log):
        yield real_node


def rollout_pipeline(name: str, models: Models, store_url: str, version: str) -> str:
    """2 stable pods; one canary step of 33% held at a manual gate (one candidate pod beside
    two: a third of the pods, so a third of the requests)."""
    base: str = pipeline_yaml(name, models, store_url, replicas=2, version=version)
    return base + """\
  rollout:
    canary: {steps: [{weight: 33, manualGate: true}]}
    analysis: {interval: 10s, minRequestCount: 50}
"""


@dataclass
class Answers:
    """Every RPC's end time (monotonic), answering track and model, or its error code."""

    rows: list[tuple[float, str, str]] = field(default_factory=list)  # (t, track, version)
    codes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)  # end time of each failed RPC

    def tracks(self, after: float = 0.0, before: float = float("inf")) -> Counter[str]:
        return Counter(track for t, track, _ in self.rows if after <= t < before)

    def summary(self) -> str:
        return f"{dict(self.codes)} by track {dict(self.tracks())} {self.failures[:3]}"


def send(target: str, rate: float, seconds: float, workers: int = 4,
         stop: threading.Event | None = None,
         events: list[list[float]] | None = None) -> Answers:
    """Open-loop load as load.run sends it, but tallying which track answered each RPC; for
    `seconds` at most, less if `stop` is set. Each worker cycles through `events` (default:
    one constant event)."""
    out = Answers()
    lock = threading.Lock()
    requests = [v1_pb2.ScoreRequest(event=v1_pb2.Event(event_id="r", features=e))
                for e in events or [[0.2] * 32]]
    with load.channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        stub = v1_pb2_grpc.ScorerStub(ch)
        start = time.monotonic()
        step = workers / rate

        def work(offset: float, sent: int) -> None:
            due = start + offset
            while due < start + seconds and not (stop and stop.is_set()):
                time.sleep(max(0.0, due - time.monotonic()))
                request = requests[sent % len(requests)]
                sent += 1
                try:
                    reply = stub.Score(request, timeout=2)
                    with lock:
                        out.codes["OK"] += 1
                        out.rows.append((time.monotonic(), reply.track, reply.model_version))
                except grpc.RpcError as err:
                    with lock:
                        out.codes[err.code().name] += 1
                        out.failures.append(f"{err.code().name}: {err.details()}")
                        out.failed_at.append(time.monotonic())
                due += step

        threads = [threading.Thread(target=work, args=(i * step / workers,
                                                       i * len(requests) // workers),
                                    daemon=True) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 10)
    return out


def status(ns: str, name: str) -> dict[str, Any]:
    sp = json.loads(kubectl("get", "sp", name, "-n", ns, "-o", "json"))
    return dict(sp.get("status") or {})


def ready_addresses(kube: Kube, ns: str, service: str) -> set[str]:
    """Addresses the Service's EndpointSlices list as ready (what cluster DNS publishes)."""
    data = kube._call("GET", f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                      query=[("labelSelector", f"kubernetes.io/service-name={service}")]) or {}
    return {a for s in data.get("items", []) for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready") for a in e.get("addresses", [])}


def test_canary_weight_is_what_real_requests_see_and_after_an_abort_only_stable_serves(
        cluster_operator: Any, real_namespace: str, models: Models, kube: Kube) -> None:
    node, ns, name = cluster_operator, real_namespace, "split"
    target = load.headless_target(name, ns, node.dns)
    kubectl("apply", "-n", ns, "-f", "-",
            stdin=rollout_pipeline(name, models, node.model_store_url, "v1"))
    wait_ready_pods(ns, name, 2)
    eventually("v1 stable", lambda: status(ns, name).get("phase") == "Ready", timeout=120)

    kubectl("apply", "-n", ns, "-f", "-",
            stdin=rollout_pipeline(name, models, node.model_store_url, "v2"))
    pods = wait_ready_pods(ns, name, 3)
    candidate_ips = {p["status"]["podIP"] for p in pods
                     if p["metadata"]["labels"]["scorefleet.io/track"] == "candidate"}
    assert len(candidate_ips) == 1
    eventually("canary step in effect", lambda: (status(ns, name).get("canary") or {})
               .get("stepStartedAt"), timeout=60)
    eventually("DNS lists all 3 pods", lambda: len(ready_addresses(
        kube, ns, f"{name}-headless")) == 3, timeout=30)

    # 1. The weight, as requests: a third of them answered by the candidate's one pod.
    split = send(target, rate=90, seconds=12)
    assert split.codes == Counter(OK=split.codes["OK"]), split.summary()
    by_track = split.tracks()
    share = by_track["candidate"] / sum(by_track.values())
    versions = {(track, version) for _, track, version in split.rows}
    print(f"\nREPLICAS SPLIT: 33% asked, 1 candidate pod beside 2 stable: candidate served "
          f"{by_track['candidate']} of {sum(by_track.values())} requests = {share:.1%}")
    assert versions == {("stable", "v1"), ("candidate", "v2")}
    assert 0.20 <= share <= 0.47, by_track

    # 2. Abort under load: the candidate's traffic ends, and no request fails.
    results: list[Answers] = []
    loader = threading.Thread(target=lambda: results.append(send(target, rate=90, seconds=40)))
    loader.start()
    time.sleep(5)
    aborted_at = time.monotonic()
    assert cli(["-n", ns, "abort", name]) == 0
    removed_at = eventually("candidate out of the endpoints", lambda: (
        time.monotonic() if not ready_addresses(kube, ns, f"{name}-headless")
        & candidate_ips else None), timeout=60, interval=0.1)
    eventually("rollout Aborted", lambda: status(ns, name).get("rollout", {})
               .get("phase") == "Aborted", timeout=30)
    # scorer_pods leaves out pods being deleted: this is when the candidate pod was told to
    # stop; it drains (keeps answering its open connections) for the drain delay after.
    stopping_at = eventually("candidate pod deleted", lambda: time.monotonic() if not [
        p for p in scorer_pods(ns, name)
        if p["metadata"]["labels"]["scorefleet.io/track"] == "candidate"] else None,
        timeout=60, interval=0.2)
    loader.join(timeout=60)
    (abort,) = results
    after = [t for t, track, _ in abort.rows if track == "candidate" and t >= aborted_at]
    last = max(after) - aborted_at if after else 0.0
    propagation = removed_at - aborted_at
    rate = len(after) / last if last else 0.0
    print(f"ABORT: candidate served {len(after)} requests after the abort was written "
          f"({rate:.0f}/s), the last {last:.2f} s after it; its address left the endpoints "
          f"{propagation:.2f} s after it, its pod was deleted after "
          f"{stopping_at - aborted_at:.2f} s; drain delay {DRAIN_DELAY:g} s; "
          f"load {abort.summary()}")
    assert abort.codes == Counter(OK=abort.codes["OK"]), abort.summary()
    # Clients keep their connection to the candidate until it stops taking requests, the
    # drain delay after it was deleted (that is what the drain delay is for): its last answer
    # comes at most endpoint propagation + drain delay after the abort (+ 1 s of slack).
    assert last <= max(propagation, stopping_at - aborted_at) + DRAIN_DELAY + 1.0

    # 3. Afterwards only the stable track answers, with the stable model.
    final = send(target, rate=60, seconds=5)
    assert final.codes == Counter(OK=final.codes["OK"]), final.summary()
    assert {(track, version) for _, track, version in final.rows} == {("stable", "v1")}
    sp = status(ns, name)
    assert sp["stable"]["version"] == "v1" and sp["phase"] == "Failed"
    kubectl("wait", "-n", ns, "--for=condition=RolledBack", f"sp/{name}", "--timeout=30s")


INTERVAL = 10  # seconds per analysis interval in the analysed pipelines below
RESYNC = 1  # real_pods.operator's SCOREFLEET_RESYNC_SECONDS


def analysed_pipeline(name: str, models: Models, store_url: str, version: str) -> str:
    """2 stable pods; one canary step of 33% with no pause and no gate: analysed for one
    interval, then promoted, unless `failureLimit` (2, the default) intervals fail first."""
    base: str = pipeline_yaml(name, models, store_url, replicas=2, version=version)
    return base + f"""\
  rollout:
    canary: {{steps: [{{weight: 33}}]}}
    analysis: {{interval: {INTERVAL}s, minRequestCount: 20}}
"""


def fixed_batch_model(models: Models, version: str = "v3") -> None:
    """v1 exported with a fixed batch size of 2 (its output reshaped to [2], not [-1]): it
    loads, passes the scorer's warm-up (which scores 2 rows) and so its pod turns Ready, then
    fails every request of one event with INTERNAL, as a model traced at one batch size does."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(models.dir / "model-v1.onnx"))
    (flat,) = [t for t in model.graph.initializer if t.name == "flat"]
    flat.CopyFrom(numpy_helper.from_array(np.array([2], dtype=np.int64), "flat"))
    models.add(version, model)


def candidate_pods(ns: str, name: str) -> list[dict[str, Any]]:
    return [p for p in scorer_pods(ns, name)
            if p["metadata"]["labels"]["scorefleet.io/track"] == "candidate"]


def seconds(later: str, earlier: str) -> float:
    def parse(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()

    return parse(later) - parse(earlier)


@contextlib.contextmanager
def under_load(target: str, rate: float = 60, seconds: float = 150,
               events: list[list[float]] | None = None) -> Iterator[list[Answers]]:
    """`rate` RPC/s sent to `target` while the block runs (at most `seconds`; `events` as
    `send` takes them); the load's answers are in the list after the block."""
    stop = threading.Event()
    results: list[Answers] = []
    loader = threading.Thread(target=lambda: results.append(
        send(target, rate=rate, seconds=seconds, stop=stop, events=events)))
    loader.start()
    try:
        yield results
    finally:
        stop.set()
        loader.join(timeout=30)


@contextlib.contextmanager
def v1_under_load(node: Any, ns: str, name: str, models: Models) -> Iterator[list[Answers]]:
    """Pipeline `name` serving v1 from 2 ready pods, with 60 RPC/s sent through the cluster DNS
    while the block runs (at most 150 s); the load's answers are in the list after the block."""
    target = load.headless_target(name, ns, node.dns)
    kubectl("apply", "-n", ns, "-f", "-",
            stdin=analysed_pipeline(name, models, node.model_store_url, "v1"))
    wait_ready_pods(ns, name, 2)
    eventually("v1 stable", lambda: status(ns, name).get("phase") == "Ready", timeout=120)
    with under_load(target) as results:
        yield results


Judged = list[tuple[str, str | None, int]]  # (lastRunAt, lastResult, failures) per interval


def until_judged(ns: str, name: str, timeout: float = 120) -> tuple[dict[str, Any], Judged]:
    """Polls status until the rollout is Failed or Succeeded; returns that status and every
    judged interval seen on the way (its end and verdict), to find where the first bad one
    began."""
    judged: Judged = []

    def finished() -> dict[str, Any] | None:
        s = status(ns, name)
        a = s.get("analysis") or {}
        if a.get("lastRunAt") and (not judged or judged[-1][0] != a["lastRunAt"]):
            judged.append((a["lastRunAt"], a.get("lastResult"), a.get("failures", 0)))
        return s if s.get("rollout", {}).get("phase") in ("Failed", "Succeeded") else None

    return eventually("rollout judged", finished, timeout=timeout, interval=0.2), judged


def from_first_bad(judged: Judged, step_started: str, finished: str) -> float:
    """Seconds from the start of the first interval judged Failed to `finished`: it starts
    where the interval before it ended, or at the step's start."""
    first_bad = next(i for i, (_, result, _) in enumerate(judged) if result == "Failed")
    return seconds(finished, judged[first_bad - 1][0] if first_bad else step_started)


def rollback_events(ns: str, name: str) -> list[dict[str, Any]] | None:
    """The rollback transition's own Event(s), not the conditions' change Events of the same
    reason."""
    events = json.loads(kubectl("get", "events", "-n", ns, "-o", "json", "--field-selector",
                                f"involvedObject.name={name}"))["items"]
    return [e for e in events if e["reason"] == "RolledBack" and not e["message"]
            .startswith(("Promoted is", "RolledBack is"))] or None


def test_a_candidate_failing_its_requests_is_rolled_back_by_the_analysis(
        cluster_operator: Any, real_namespace: str, models: Models) -> None:
    """v3 loads and turns Ready but fails every request: the operator, judging what Prometheus
    discovered and scraped from the real pods, rolls it back while real requests through the
    cluster DNS are split by the Replicas router; afterwards only stable v1 answers."""
    node, ns, name = cluster_operator, real_namespace, "bad"
    target = load.headless_target(name, ns, node.dns)
    fixed_batch_model(models)
    real_pods.publish_models(models, node)
    with v1_under_load(node, ns, name, models) as results:
        kubectl("apply", "-n", ns, "-f", "-",
                stdin=analysed_pipeline(name, models, node.model_store_url, "v3"))
        started = eventually("canary step in effect", lambda: (
            status(ns, name).get("canary") or {}).get("stepStartedAt"), timeout=120)
        done, judged = until_judged(ns, name)
        seen_done = time.monotonic()
        seen_gone = eventually("candidate scaled to zero", lambda: time.monotonic()
                               if not candidate_pods(ns, name) else None,
                               timeout=60, interval=0.2)
        time.sleep(DRAIN_DELAY + 2)  # its open connections end with its drain
    (load_seen,) = results
    rollout, analysis = done["rollout"], done["analysis"]
    assert rollout["phase"] == "Failed", (rollout, analysis)

    # Why, with the numbers: the failed check's measured value beside its threshold, in
    # status and in the rollback's Event.
    checks = {c["metric"]: c for c in analysis["checks"]}
    error_rate = checks["errorRate"]
    assert error_rate["result"] == "Failed", analysis
    assert error_rate["measured"] > error_rate["threshold"], error_rate
    assert analysis["failures"] == 2  # failureLimit, the default

    (rolled_back,) = eventually("the rollback's Event", lambda: rollback_events(ns, name),
                                timeout=30)
    assert "errorRate" in rolled_back["message"], rolled_back["message"]
    assert f"> {error_rate['threshold']:g}" in rolled_back["message"], rolled_back["message"]

    # Traffic back on stable, in status and in who answers.
    eventually("status: candidate at 0 of 0 replicas", lambda: (
        status(ns, name).get("replicas") or {}).get("candidate") == {"desired": 0, "ready": 0},
        timeout=30)
    assert done["stable"]["version"] == "v1" and done["phase"] == "Failed"
    replicas = kubectl("get", "deployment", f"{name}-candidate", "-n", ns,
                       "-o", "jsonpath={.spec.replicas}")
    assert replicas == "0"
    kubectl("wait", "-n", ns, "--for=condition=RolledBack", f"sp/{name}", "--timeout=30s")
    failed_candidate = load_seen.codes["INTERNAL"]
    assert failed_candidate > 0, load_seen.summary()  # the candidate did take requests
    assert set(load_seen.codes) <= {"OK", "INTERNAL"}, load_seen.summary()
    # v3 answers only the rare batch of exactly two requests.
    assert {v for _, _, v in load_seen.rows} <= {"v1", "v3"}, load_seen.summary()
    v3_answers = sum(1 for _, _, v in load_seen.rows if v == "v3")
    last_failure = max(load_seen.failed_at) - seen_done
    # Its last failure comes at most when its pod was gone, plus its drain (+ 1 s of slack).
    assert max(load_seen.failed_at) <= seen_gone + DRAIN_DELAY + 1.0
    final = send(target, rate=60, seconds=5)
    assert final.codes == Counter(OK=final.codes["OK"]), final.summary()
    assert {(track, version) for _, track, version in final.rows} == {("stable", "v1")}

    # How fast: the first interval measured bad starts where the interval before it ended
    # (or at the step's start); failureLimit 2 means two bad intervals, each judged by the
    # first resync after it ends.
    from_bad = from_first_bad(judged, started, rollout["finishedAt"])
    from_step = seconds(rollout["finishedAt"], started)
    print(f"\nROLLBACK ON REAL PODS: {from_bad:.0f} s from the start of the first bad "
          f"interval to Failed ({from_bad / INTERVAL:.2f} intervals of {INTERVAL} s), "
          f"{from_step:.0f} s from the step's start ({from_step / INTERVAL:.2f} intervals); "
          f"intervals judged {[(t, r) for t, r, _ in judged]}; errorRate "
          f"{error_rate['measured']} > {error_rate['threshold']}; requests failed by the "
          f"candidate {failed_candidate} (answered {v3_answers}), the last "
          f"{last_failure:+.2f} s from Failed seen, {seen_gone - seen_done:.2f} s to its pod "
          f"gone; "
          f"load {dict(load_seen.codes)}")
    assert from_bad <= 2 * (INTERVAL + RESYNC) + 2


def test_a_good_candidate_is_promoted_to_full_on_the_analysis(
        cluster_operator: Any, real_namespace: str, models: Models) -> None:
    """v2, healthy, passes its one analysed interval under real traffic and is promoted: the
    stable track re-templated to v2, the candidate track removed, and every answer afterwards
    comes from v2."""
    node, ns, name = cluster_operator, real_namespace, "good"
    target = load.headless_target(name, ns, node.dns)
    with v1_under_load(node, ns, name, models) as results:
        kubectl("apply", "-n", ns, "-f", "-",
                stdin=analysed_pipeline(name, models, node.model_store_url, "v2"))
        done = eventually("rollout finished", lambda: (
            s if (s := status(ns, name)).get("rollout", {}).get("phase") in (
                "Failed", "Succeeded") else None), timeout=150, interval=0.5)
    (during,) = results
    assert done["rollout"]["phase"] == "Succeeded", (done["rollout"], done.get("analysis"))
    assert done["stable"]["version"] == "v2" and done["analysis"]["failures"] == 0
    assert {v for _, _, v in during.rows} == {"v1", "v2"}, during.summary()
    kubectl("wait", "-n", ns, "--for=condition=Promoted", f"sp/{name}", "--timeout=30s")
    eventually("candidate track removed", lambda: not kubectl(
        "get", "deployment", f"{name}-candidate", "-n", ns, "--ignore-not-found").strip(),
        timeout=60)
    pods = wait_ready_pods(ns, name, 2)
    assert {p["metadata"]["labels"]["scorefleet.io/track"] for p in pods} == {"stable"}
    time.sleep(DRAIN_DELAY + 1)  # the replaced pods' drain ends
    final = send(target, rate=60, seconds=5)
    assert final.codes == Counter(OK=final.codes["OK"]), final.summary()
    assert {(track, version) for _, track, version in final.rows} == {("stable", "v2")}
    took = seconds(done["rollout"]["finishedAt"], done["rollout"]["startedAt"])
    print(f"\nPROMOTION ON REAL PODS: Succeeded {took:.0f} s after the rollout started; "
          f"requests during it {during.summary()}; afterwards "
          f"{len(final.rows)} of {len(final.rows)} answers from stable v2")
