"""Revision identity: which change is a rollout, and which rollout a change belongs to.

A *revision* is everything that changes what the scorers compute for an event: the model (name,
version, artifact URI, digest, format, decision threshold), the scorer image, and the scorer
settings that reach the computation (environment, onnxruntime intra-op threads). Its hash is
stable across processes and releases of this operator (canonical JSON, sorted keys).

Settings that change capacity or latency but not a score (replicas, batching, ports, drain and
grace periods, resources) are not part of it: they apply to every track at once, as a rolling
update, like a Deployment change would. Rolling out a batching change step by step would buy
nothing a canary can judge that the SLO does not already watch.

The decision (Flagger keeps `lastAppliedSpec` and `lastPromotedSpec` for the same reason):

    desired == stable                     -> no rollout (going back to stable is not a rollout;
                                             a rollout of another revision is cancelled),
                                             except a Promoting rollout of that very revision:
                                             it continues to its end
    no stable yet                         -> no rollout (the first model is simply deployed)
    desired != rollout's revision         -> start; a newer change supersedes a running,
                                             failed or aborted rollout instead of waiting
    same revision, Failed/Aborted + retry -> start again (attempt + 1), no annotation bump
    otherwise                             -> continue the rollout as persisted
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from scorefleet.api.scorer_config import ModelRef
from scorefleet.api.spec import EnvVar, PipelineSpec
from scorefleet.api.status import ModelIdentity, RevisionRecord, RolloutStatus

TERMINAL_FAILED = ("Failed", "Aborted")


@dataclass(frozen=True)
class Revision:
    """One revision's content; `hash` names it."""

    model: ModelRef
    image: str
    intra_op_threads: int = 1
    env: tuple[EnvVar, ...] = ()

    @property
    def hash(self) -> str:
        canonical = json.dumps({
            "model": self.model.wire(),
            "image": self.image,
            "intraOpThreads": self.intra_op_threads,
            "env": [e.wire() for e in self.env],
        }, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def same_scorer(self, other: Revision) -> bool:
        """Only the model differs: the candidate can run as a shadow inside the stable pods."""
        return (self.image, self.intra_op_threads, self.env) == (
            other.image, other.intra_op_threads, other.env)

    def record(self) -> RevisionRecord:
        return RevisionRecord(hash=self.hash, image=self.image,
                              intra_op_threads=self.intra_op_threads, env=list(self.env))

    def describe(self) -> str:
        return f"{self.model.name} {self.model.version} ({self.hash})"


def desired_revision(spec: PipelineSpec, default_image: str) -> Revision:
    """The revision the spec asks for; an unset image is the operator's default."""
    return Revision(model=spec.model, image=spec.scorer.image or default_image,
                    intra_op_threads=spec.scorer.intra_op_threads, env=tuple(spec.scorer.env))


def stable_revision(model: ModelIdentity | None, record: RevisionRecord | None,
                    spec: PipelineSpec, default_image: str) -> Revision | None:
    """The revision the stable track serves, from status. A pipeline established before
    revisions were recorded (`stableRevision` unset) is taken to run the spec's scorer."""
    if model is None:
        return None
    ref = ModelRef(name=model.name, version=model.version, uri=model.uri, sha256=model.sha256,
                   threshold=model.threshold)
    if record is None:
        current = desired_revision(spec, default_image)
        return Revision(model=ref, image=current.image,
                        intra_op_threads=current.intra_op_threads, env=current.env)
    return Revision(model=ref, image=record.image, intra_op_threads=record.intra_op_threads,
                    env=tuple(record.env))


RevisionOutcome = Literal["NoRollout", "Reverted", "Start", "Supersede", "Retry", "Continue"]


@dataclass(frozen=True)
class RevisionDecision:
    outcome: RevisionOutcome
    message: str

    @property
    def starts(self) -> bool:
        return self.outcome in ("Start", "Supersede", "Retry")


def decide_revision(desired: Revision, stable: Revision | None, rollout: RolloutStatus | None,
                    retry: bool) -> RevisionDecision:
    """What the spec's revision means for the persisted rollout. `retry` is an unhandled
    `retry` action."""
    if stable is None:
        return RevisionDecision("NoRollout", f"first revision {desired.describe()} is deployed "
                                             "directly: nothing is served that it could hurt")
    if desired.hash == stable.hash:
        if rollout is not None and rollout.phase == "Promoting" and (
                rollout.revision == stable.hash):
            # Recorded as stable before its promotion ended (operators before the fix in
            # decide/status.py did, once the stable pods served it): finish the promotion
            # rather than leave it Promoting with the candidate taking its share for good.
            return RevisionDecision("Continue", rollout.message)
        if rollout is not None and rollout.revision != stable.hash:
            return RevisionDecision(
                "Reverted", f"spec is back to the stable revision {stable.describe()}: the "
                            f"rollout of {rollout.revision} is cancelled, not rolled back")
        return RevisionDecision("NoRollout", f"the stable track serves {stable.describe()}")
    if rollout is None or rollout.phase == "Succeeded":
        return RevisionDecision("Start", f"new revision {desired.describe()} differs from "
                                         f"the stable {stable.describe()}")
    if rollout.revision != desired.hash:
        return RevisionDecision(
            "Supersede", f"new revision {desired.describe()} supersedes the "
                         f"{rollout.phase.lower()} rollout of {rollout.revision}")
    if rollout.phase in TERMINAL_FAILED and retry:
        return RevisionDecision("Retry", f"retry of {desired.describe()} "
                                         f"(attempt {rollout.attempt + 1})")
    return RevisionDecision("Continue", rollout.message)
