"""The Replicas router on real scorer pods: real requests through the cluster DNS, balanced per
request (round_robin over the headless Service), counted by the track that answered (every
answer names it). A canary's weight is visible in the requests each track serves, and after an
abort the requests are served by the stable track only. Prints the measured figures: each
track's share, and how many requests the candidate served after the abort and for how long,
beside the time its address took to leave the Service's endpoints (endpoint propagation).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
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

    def tracks(self, after: float = 0.0, before: float = float("inf")) -> Counter[str]:
        return Counter(track for t, track, _ in self.rows if after <= t < before)

    def summary(self) -> str:
        return f"{dict(self.codes)} by track {dict(self.tracks())} {self.failures[:3]}"


def send(target: str, rate: float, seconds: float, workers: int = 4) -> Answers:
    """Open-loop load as load.run sends it, but tallying which track answered each RPC."""
    out = Answers()
    lock = threading.Lock()
    request = v1_pb2.ScoreRequest(event=v1_pb2.Event(event_id="r", features=[0.2] * 32))
    with load.channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        stub = v1_pb2_grpc.ScorerStub(ch)
        start = time.monotonic()
        step = workers / rate

        def work(offset: float) -> None:
            due = start + offset
            while due < start + seconds:
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    reply = stub.Score(request, timeout=2)
                    with lock:
                        out.codes["OK"] += 1
                        out.rows.append((time.monotonic(), reply.track, reply.model_version))
                except grpc.RpcError as err:
                    with lock:
                        out.codes[err.code().name] += 1
                        out.failures.append(f"{err.code().name}: {err.details()}")
                due += step

        threads = [threading.Thread(target=work, args=(i * step / workers,), daemon=True)
                   for i in range(workers)]
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
