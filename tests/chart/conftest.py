"""Fixtures for the chart and image tests: the pinned helm binary and rendering helpers."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

CHART = ROOT / "charts" / "scorefleet"
Manifest = dict[str, Any]


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """The pinned helm (built from its Go module once per machine, then cached)."""
    from scorefleet.dev import build, paths

    build.build_all(out=io.StringIO())
    helm = paths.path_dir() / "helm"
    assert helm.exists(), f"no helm at {helm}"
    return helm


def run(cmd: list[str | Path], check: bool = True, stdin: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, input=stdin,
                          env=env, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


class Helm:
    """helm against the chart, with values given as Python data (written to a file, so types
    survive: --set would turn "8080" and 8080 into each other)."""

    def __init__(self, binary: Path, tmp: Path) -> None:
        self.binary = binary
        self.tmp = tmp
        self._n = 0

    def values_file(self, values: dict[str, Any] | None) -> list[str]:
        if not values:
            return []
        self._n += 1
        path = self.tmp / f"values-{self._n}.yaml"
        path.write_text(yaml.safe_dump(values))
        return ["-f", str(path)]

    def __call__(self, *args: str, values: dict[str, Any] | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.binary, *args, *self.values_file(values)], check=check)

    def template_text(self, values: dict[str, Any] | None = None, release: str = "sf",
                      namespace: str = "scorefleet-system", include_crds: bool = False) -> str:
        args = ["template", release, str(CHART), "--namespace", namespace]
        if include_crds:
            args.append("--include-crds")
        return self(*args, values=values).stdout

    def template(self, values: dict[str, Any] | None = None, release: str = "sf",
                 namespace: str = "scorefleet-system",
                 include_crds: bool = False) -> list[Manifest]:
        text = self.template_text(values, release, namespace, include_crds)
        return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture
def helm(helm_bin: Path, tmp_path: Path) -> Helm:
    return Helm(helm_bin, tmp_path)


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single manifest of `kind` (and `name`), failing with what was rendered instead."""
    found = [m for m in manifests
             if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [(m["kind"], m["metadata"]["name"]) for m in manifests])
    return found[0]


def operator_container(manifests: list[Manifest]) -> Manifest:
    (container,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def env_without_cluster() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return env
