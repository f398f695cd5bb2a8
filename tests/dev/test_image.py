"""The images built here, for real: the OCI archives `build_images()` writes are imported by a
real containerd (a throwaway one, started by this module as a plain process under a temporary
directory, CRI plugin off) and run with runc through `ctr run`:

- the pause image sleeps and exits 0 on SIGTERM;
- the scorer image, with a config file and an example model mounted read-only, a read-only
  root but for a tmpfs /tmp, and the host network (`--net-host`; pod networking is the node's
  business), serves gRPC on 127.0.0.1 and
  scores an event like onnxruntime on the host does, then drains and exits 0 on SIGTERM;
- the default command (the operator) starts, as uid 10001, from a venv without build tools.

Needs root, containerd, runc, buildah and debootstrap (scripts/setup.sh installs them). The
first run builds the images (minutes); later runs find them cached under ~/.cache/scorefleet.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scorefleet.api.spec import DEFAULT_SCORER_IMAGE
from scorefleet.dev import image, oci
from tests.conftest import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="building and running images needs root"),
]
CONTAINERD_CONFIG = """\
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[debug]
  address = "{dir}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"""


@pytest.fixture(scope="session")
def images() -> image.ImageSet:
    return image.build_images(sys.stderr)


@dataclass(frozen=True)
class Containerd:
    ctr: Path
    address: Path
    dir: Path

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.ctr), "-a", str(self.address), "-n", image.NAMESPACE,
                               *args], capture_output=True, text=True, timeout=timeout,
                              check=False)

    def ok(self, *args: str, timeout: float = 60) -> str:
        proc = self.run(*args, timeout=timeout)
        assert proc.returncode == 0, f"ctr {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    def start(self, ref: str, name: str, *args: str, log: Path, options: tuple[str, ...] = ()
              ) -> subprocess.Popen[bytes]:
        """`ctr run --rm` in the foreground of a child process: its exit status is the
        container's."""
        with log.open("wb") as out:
            return subprocess.Popen([str(self.ctr), "-a", str(self.address), "-n",
                                     image.NAMESPACE, "run", "--rm", *options, ref, name, *args],
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)

    def kill(self, name: str, sig: str = "SIGTERM") -> None:
        self.run("task", "kill", "-s", sig, name)


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    binary, ctr = shutil.which("containerd"), shutil.which("ctr")
    assert binary and ctr, "containerd is not installed (scripts/setup.sh installs it)"
    # Short path: unix socket names are limited to 108 bytes.
    work = Path(tempfile.mkdtemp(prefix="sf-ctd-", dir="/tmp"))
    (work / "config.toml").write_text(CONTAINERD_CONFIG.format(dir=work))
    with (work / "containerd.log").open("wb") as log:
        proc = subprocess.Popen([binary, "--config", str(work / "config.toml")], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    c = Containerd(Path(ctr), work / "containerd.sock", work)
    try:
        eventually("containerd answers", lambda: proc.poll() is None and
                   c.run("version", timeout=5).returncode == 0, timeout=30)
        yield c
    finally:
        for line in c.run("task", "ls", "-q").stdout.split():
            c.kill(line, "SIGKILL")
        for line in c.run("containers", "ls", "-q").stdout.split():
            c.run("containers", "rm", line)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        mounts = Path("/proc/mounts").read_text().split("\n")
        for mnt in sorted((ln.split()[1] for ln in mounts if f" {work}/" in ln), reverse=True):
            subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def imported(images: image.ImageSet, containerd: Containerd) -> image.ImageSet:
    started = time.monotonic()
    image.import_images(images, containerd.ctr, containerd.address, out=sys.stderr)
    print(f"import_images (both, cold): {time.monotonic() - started:.1f}s", file=sys.stderr)
    return images


# -- the archives ---------------------------------------------------------------------------------
def test_archives_name_their_images(images: image.ImageSet) -> None:
    assert images.scorer.name == DEFAULT_SCORER_IMAGE
    assert images.pause.name == "localhost/scorefleet/pause:3.10"
    for img in images:
        info = oci.inspect(img.archive)
        assert info.name == img.name and info.manifest_digest == img.digest
        assert img.archive.is_relative_to(image.images_root())
        assert 0 < img.compressed_bytes < img.unpacked_bytes
    pause = oci.inspect(images.pause.archive).config
    assert pause["config"]["Entrypoint"] == ["/pause"]
    scorer = oci.inspect(images.scorer.archive).config["config"]
    assert scorer["User"] == "10001:10001"
    assert scorer["Cmd"] == ["python", "-m", "scorefleet.operator"]
    assert "Entrypoint" not in scorer or not scorer["Entrypoint"]
    assert any(e.startswith("PATH=/opt/venv/bin:") for e in scorer["Env"])


def test_layers_keep_real_mtimes(images: image.ImageSet) -> None:
    """Zeroed mtimes would make Python recompile every module at each start."""
    with tarfile.open(images.scorer.archive) as outer:
        layer = oci.inspect(images.scorer.archive).layers[-1]  # the project, copied last
        blob = outer.extractfile(f"blobs/sha256/{layer.digest.removeprefix('sha256:')}")
        assert blob is not None
        with tarfile.open(fileobj=blob, mode="r|gz") as tar:
            mtimes = [m.mtime for m in tar if m.name == "opt/scorefleet/scorefleet/__init__.py"]
    assert mtimes and all(t > 1_600_000_000 for t in mtimes), mtimes


def test_a_code_change_rebuilds_a_small_layer(images: image.ImageSet) -> None:
    """The project is the last layer, apart from the dependencies' venv: a commit that changes
    only code rebuilds and re-imports a few MB (the deps stage is reused from buildah's cache)."""
    *_, venv, project = oci.inspect(images.scorer.archive).layers
    assert project.size < 5e6 < 50e6 < venv.size, (project.size, venv.size)


def test_project_layers_hold_no_build_time_mounts(images: image.ImageSet) -> None:
    """The host's CA bundle (mounted into the RUN steps) and buildah's resolver, hosts and
    hostname mounts never land in a layer above the base."""
    info = oci.inspect(images.scorer.archive)
    names: set[str] = set()
    with tarfile.open(images.scorer.archive) as outer:
        for layer in info.layers[1:]:
            blob = outer.extractfile(f"blobs/sha256/{layer.digest.removeprefix('sha256:')}")
            assert blob is not None
            with tarfile.open(fileobj=blob, mode="r|gz") as tar:
                names |= {m.name for m in tar}
    assert any(n.startswith("opt/venv/") for n in names)
    assert any(n.startswith("opt/scorefleet/scorefleet/") for n in names)
    for path in ("etc/ssl/certs/ca-certificates.crt", "etc/resolv.conf", "etc/hosts",
                 "etc/hostname"):
        assert path not in names


def test_build_is_cached(images: image.ImageSet) -> None:
    again = image.build_images(sys.stderr)
    assert again.scorer.cached and again.pause.cached
    assert [i.digest for i in again] == [i.digest for i in images]


# -- containerd -----------------------------------------------------------------------------------
def test_import_then_reimport_is_a_no_op(imported: image.ImageSet,
                                         containerd: Containerd) -> None:
    listing = containerd.ok("images", "ls")
    for img in imported:
        assert image.imported_digest(img, containerd.ctr, containerd.address) == img.digest
        assert img.name in listing
    import io

    out = io.StringIO()
    image.import_images(imported, containerd.ctr, containerd.address, out=out)
    assert out.getvalue() == ""  # nothing imported the second time


def test_pause_sleeps_and_stops_on_term(imported: image.ImageSet, containerd: Containerd,
                                        tmp_path: Path) -> None:
    name = f"pause-{uuid.uuid4().hex[:8]}"
    proc = containerd.start(imported.pause.name, name, log=tmp_path / "pause.log")
    try:
        eventually("pause running", lambda: "RUNNING" in containerd.run("task", "ls").stdout
                   and name in containerd.run("task", "ls").stdout, timeout=30)
        time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "pause.log").read_text()
        containerd.kill(name)
        assert proc.wait(timeout=20) == 0, (tmp_path / "pause.log").read_text()
    finally:
        if proc.poll() is None:
            containerd.kill(name, "SIGKILL")
            proc.wait(timeout=20)


def _run_python(containerd: Containerd, img: image.Image, script: str, tmp_path: Path) -> str:
    name = f"py-{uuid.uuid4().hex[:8]}"
    log = tmp_path / f"{name}.log"
    proc = containerd.start(img.name, name, "python", "-c", script, log=log,
                            options=("--read-only",))
    assert proc.wait(timeout=120) == 0, log.read_text()
    return log.read_text()


def test_image_runs_as_10001_from_a_venv_without_build_tools(
        imported: image.ImageSet, containerd: Containerd, tmp_path: Path) -> None:
    out = _run_python(containerd, imported.scorer, (
        "import json, os, sys, importlib.util as u, scorefleet, scorefleet.scorer.protogen as p\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'prefix': sys.prefix,"
        " 'version': sys.version_info[:2], 'package': scorefleet.__file__,"
        " 'stubs_current': p.is_current(), 'tmp_mode': oct(os.stat('/tmp').st_mode & 0o7777),"
        " 'tools': [m for m in ('pip', 'grpc_tools', 'setuptools', 'wheel') if u.find_spec(m)]}))"
    ), tmp_path)
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["uid"] == facts["gid"] == 10001
    assert facts["prefix"] == "/opt/venv" and facts["version"] == [3, 11]
    # The project beside the venv (its own small layer), found through the venv's .pth file.
    assert facts["package"] == "/opt/scorefleet/scorefleet/__init__.py"
    assert facts["stubs_current"] is True
    assert facts["tools"] == []
    # A pod's writable root: /tmp usable by any uid, as in python:3.11-slim.
    assert facts["tmp_mode"] == "0o1777"


def test_operator_command_starts(imported: image.ImageSet, containerd: Containerd,
                                 tmp_path: Path) -> None:
    name = f"op-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "operator.log"
    proc = containerd.start(imported.scorer.name, name, "python", "-m", "scorefleet.operator",
                            "--help", log=log, options=("--read-only",))
    assert proc.wait(timeout=120) == 0, log.read_text()
    assert "--liveness" in log.read_text()


# -- the scorer, serving from the image ----------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_scorer_serves_from_the_image(imported: image.ImageSet, containerd: Containerd,
                                      tmp_path: Path) -> None:
    from scorefleet.scorer.example_model import NUM_FEATURES, build, synthetic_features
    from scorefleet.scorer.protos import v1_pb2, v1_pb2_grpc

    # Mounted read-only into a container running as uid 10001: world-readable.
    mounted = tmp_path / "mounted"
    (mounted / "models").mkdir(parents=True)
    digests = build(mounted / "models")
    port, metrics_port = _free_port(), _free_port()
    (mounted / "config.yaml").write_text(yaml.safe_dump({
        "pipeline": "image-check", "track": "stable", "workers": 1, "drainDelaySeconds": 0,
        "gracePeriodSeconds": 5, "port": port, "metricsPort": metrics_port,
        "model": {"name": "phish", "version": "v1", "uri": "file:///models/model-v1.onnx",
                  "sha256": digests["model-v1.onnx"]},
    }))
    for path in [tmp_path, *mounted.rglob("*"), mounted]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    name = f"scorer-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "scorer.log"
    started = time.monotonic()
    proc = containerd.start(
        imported.scorer.name, name, "python", "-m", "scorefleet.scorer", "--config",
        "/etc/scorefleet/config.yaml", "--host", "127.0.0.1", log=log,
        # Read-only root with a tmpfs /tmp, as a hardened pod (emptyDir on /tmp) would run it:
        # the scorer writes nothing else (its Prometheus multiprocess directory is in /tmp).
        options=("--net-host", "--read-only",
                 "--mount", "type=tmpfs,src=tmpfs,dst=/tmp,options=nosuid:nodev:mode=1777",
                 "--mount", f"type=bind,src={mounted / 'config.yaml'},"
                            "dst=/etc/scorefleet/config.yaml,options=rbind:ro",
                 "--mount", f"type=bind,src={mounted / 'models'},dst=/models,options=rbind:ro"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def serving() -> bool:
                assert proc.poll() is None, log.read_text()[-4000:]
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                except grpc.RpcError:
                    return False
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            eventually("scorer in the container SERVING", serving, timeout=120)
            print(f"scorer container: run -> SERVING in {time.monotonic() - started:.1f}s",
                  file=sys.stderr)
            x = synthetic_features(4, seed=7)
            want = ort.InferenceSession(str(mounted / "models" / "model-v1.onnx")).run(
                None, {"features": x})[0]
            stub = v1_pb2_grpc.ScorerStub(channel)
            for i in range(len(x)):
                reply = stub.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(
                    event_id=f"e{i}", tenant="t", features=x[i].tolist())), timeout=5)
                assert reply.event_id == f"e{i}" and reply.model_version == "v1"
                assert reply.score == pytest.approx(float(np.asarray(want[i]).ravel()[0]),
                                                    abs=1e-6)
            with pytest.raises(grpc.RpcError) as bad:
                stub.Score(v1_pb2.ScoreRequest(event=v1_pb2.Event(
                    features=[0.5] * (NUM_FEATURES - 1))), timeout=5)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        containerd.kill(name)
        assert proc.wait(timeout=60) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            containerd.kill(name, "SIGKILL")
            proc.wait(timeout=30)
