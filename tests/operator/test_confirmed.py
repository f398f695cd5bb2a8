"""The memory that spares a steady reconcile its dry runs: only the same manifest against the
same resourceVersion counts as confirmed."""

from __future__ import annotations

from scorefleet.operator.confirmed import Confirmed

MANIFEST = {"kind": "ConfigMap", "metadata": {"name": "phish-stable", "namespace": "fraud"},
            "data": {"config.yaml": "a: 1"}}


def live(version: str | None) -> dict[str, object]:
    meta: dict[str, object] = {"name": "phish-stable", "namespace": "fraud"}
    if version is not None:
        meta["resourceVersion"] = version
    return {**MANIFEST, "metadata": meta}


def test_confirmed_only_for_the_same_manifest_at_the_same_version() -> None:
    c = Confirmed()
    assert not c.unchanged(MANIFEST, live("7"))  # nothing known: compare
    c.record(MANIFEST, live("7"))
    assert c.unchanged(MANIFEST, live("7"))
    assert not c.unchanged(MANIFEST, live("8"))  # written since (by anyone): compare
    changed = {**MANIFEST, "data": {"config.yaml": "a: 2"}}
    assert not c.unchanged(changed, live("7"))  # the operator wants something else now
    c.forget("ConfigMap", "fraud", "phish-stable")
    assert not c.unchanged(MANIFEST, live("7")) and len(c) == 0


def test_no_resource_version_is_never_confirmed() -> None:
    c = Confirmed()
    c.record(MANIFEST, live(None))
    assert len(c) == 0 and not c.unchanged(MANIFEST, live(None))
