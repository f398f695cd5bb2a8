"""Revision identity: what starts a rollout, what continues, supersedes, retries or cancels one."""

from __future__ import annotations

from typing import Any

import pytest

from scorefleet.api.spec import EnvVar, PipelineSpec
from scorefleet.api.status import ModelIdentity, RolloutStatus
from scorefleet.operator.decide.revision import (
    Revision,
    decide_revision,
    desired_revision,
    stable_revision,
)

IMAGE = "scorer:1"
MODEL = {"name": "phishing", "version": "v1", "uri": "file:///m/v1.onnx", "threshold": 0.8}


def spec(**over: Any) -> PipelineSpec:
    body: dict[str, Any] = {"model": {**MODEL, **over.pop("model", {})}}
    body.update(over)
    return PipelineSpec.model_validate(body)


def rev(**over: Any) -> Revision:
    return desired_revision(spec(**over), IMAGE)


def rollout(revision: str, phase: str = "Canary", attempt: int = 1) -> RolloutStatus:
    return RolloutStatus.model_validate({"revision": revision, "strategy": "Canary",
                                         "phase": phase, "attempt": attempt,
                                         "startedAt": "2026-01-01T00:00:00Z"})


def test_hash_is_stable_and_short() -> None:
    assert rev().hash == rev().hash
    assert len(rev().hash) == 16
    # Pinned: the hash must not change between releases, or every pipeline would start a
    # rollout after an operator upgrade.
    assert rev().hash == "2ae03de4bb759fd8"
    assert rev().hash == Revision(model=spec().model, image=IMAGE).hash


@pytest.mark.parametrize("change", [
    {"model": {"version": "v2"}},
    {"model": {"uri": "file:///m/other.onnx"}},
    {"model": {"sha256": "a" * 64}},
    {"model": {"threshold": 0.7}},
    {"scorer": {"image": "scorer:2"}},
    {"scorer": {"env": [{"name": "FEATURE_FLAG", "value": "1"}]}},
    {"scorer": {"intraOpThreads": 2}},
])
def test_everything_that_changes_scores_changes_the_revision(change: dict[str, Any]) -> None:
    assert rev(**change).hash != rev().hash


@pytest.mark.parametrize("change", [
    {"scorer": {"batching": {"maxQueueDelayUs": 0}}},
    {"scorer": {"workers": 4}},
    {"scorer": {"drainDelay": "10s"}},
    {"scaling": {"minReplicas": 5, "maxReplicas": 9}},
    {"slo": {"p99Latency": "50ms"}},
    {"rollout": {"strategy": "Shadow"}},
])
def test_capacity_and_policy_changes_are_not_revisions(change: dict[str, Any]) -> None:
    assert rev(**change).hash == rev().hash


def test_unset_image_is_the_operators_default() -> None:
    assert desired_revision(spec(), "scorer:9").image == "scorer:9"
    assert desired_revision(spec(scorer={"image": "mine:1"}), "scorer:9").image == "mine:1"


def test_same_scorer_means_only_the_model_differs() -> None:
    assert rev(model={"version": "v2"}).same_scorer(rev())
    assert not rev(scorer={"image": "scorer:2"}).same_scorer(rev())


def test_stable_revision_round_trips_through_status() -> None:
    r = rev(scorer={"image": "scorer:2", "env": [{"name": "A", "value": "b"}]})
    m = r.model
    identity = ModelIdentity(name=m.name, version=m.version, uri=m.uri, sha256=m.sha256,
                             threshold=m.threshold)
    # A later spec with another image must not change what the stable track is recorded as.
    back = stable_revision(identity, r.record(), spec(scorer={"image": "scorer:3"}), IMAGE)
    assert back == r
    assert back.hash == r.hash
    assert r.record().env == [EnvVar(name="A", value="b")]


def test_stable_without_record_takes_the_specs_scorer() -> None:
    m = spec().model
    identity = ModelIdentity(name=m.name, version=m.version, uri=m.uri, threshold=m.threshold)
    assert stable_revision(identity, None, spec(), IMAGE) == rev()
    assert stable_revision(None, None, spec(), IMAGE) is None


def test_first_revision_is_not_a_rollout() -> None:
    assert decide_revision(rev(), None, None, retry=False).outcome == "NoRollout"


def test_at_stable_is_not_a_rollout() -> None:
    assert decide_revision(rev(), rev(), None, retry=False).outcome == "NoRollout"


def test_a_new_model_starts_a_rollout() -> None:
    d = decide_revision(rev(model={"version": "v2"}), rev(), None, retry=False)
    assert d.outcome == "Start" and d.starts


def test_going_back_to_stable_cancels_instead_of_rolling_out() -> None:
    v2 = rev(model={"version": "v2"})
    for phase in ("Canary", "Shadow", "Failed", "Aborted"):
        d = decide_revision(rev(), rev(), rollout(v2.hash, phase), retry=False)
        assert d.outcome == "Reverted", phase
        assert not d.starts


def test_a_succeeded_rollout_of_the_stable_revision_stays_on_record() -> None:
    v2 = rev(model={"version": "v2"})
    d = decide_revision(v2, v2, rollout(v2.hash, "Succeeded"), retry=False)
    assert d.outcome == "NoRollout"


@pytest.mark.parametrize("phase", ["Shadow", "Canary", "Promoting", "Failed", "Aborted"])
def test_a_newer_change_supersedes_whatever_rollout_there_is(phase: str) -> None:
    v2, v3 = rev(model={"version": "v2"}), rev(model={"version": "v3"})
    d = decide_revision(v3, rev(), rollout(v2.hash, phase), retry=False)
    assert d.outcome == "Supersede"
    assert v2.hash in d.message and "v3" in d.message


def test_after_a_success_the_next_change_starts_fresh() -> None:
    v2, v3 = rev(model={"version": "v2"}), rev(model={"version": "v3"})
    assert decide_revision(v3, v2, rollout(v2.hash, "Succeeded"), False).outcome == "Start"


@pytest.mark.parametrize("phase", ["Failed", "Aborted"])
def test_a_failed_candidate_stays_failed_until_retry(phase: str) -> None:
    v2 = rev(model={"version": "v2"})
    assert decide_revision(v2, rev(), rollout(v2.hash, phase), retry=False).outcome == "Continue"
    d = decide_revision(v2, rev(), rollout(v2.hash, phase, attempt=2), retry=True)
    assert d.outcome == "Retry" and "attempt 3" in d.message


def test_retry_of_a_running_rollout_is_just_continue() -> None:
    v2 = rev(model={"version": "v2"})
    assert decide_revision(v2, rev(), rollout(v2.hash, "Canary"), retry=True).outcome == (
        "Continue")
