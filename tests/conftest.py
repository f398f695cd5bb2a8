"""Shared fixtures. The control plane is real: `ensure_up()` builds (cached) and starts etcd,
kube-apiserver, controller-manager, scheduler and kwok on 127.0.0.1 once per session."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

# The example models and scorer processes, shared by the scorer, integration and cluster tests.
from tests.scorer.conftest import models, start_scorer  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def session_images(workdir: Path) -> Any:
    """The node tests' pause and app images (a few MB, built in seconds). The scorer image
    is imported only by the tests that run real scorer pods (the `scorer_image` fixture)."""
    from tests.dev import testimages

    return lambda: testimages.image_source(workdir)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The local control plane with the ScoringPipeline CRD installed; KUBECONFIG points at it.

    With a real node when this machine can run one ($SCOREFLEET_REAL_NODE: auto, off,
    require). Stopped at the end only if this session started it, so a developer's running
    cluster survives a test run.
    """
    from scorefleet.dev import cluster

    was_up = any(c.healthy for c in cluster.status())
    info = cluster.ensure_up(images=session_images(tmp_path_factory.mktemp("images")))
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    os.environ["PATH"] = f"{info.bin_dir}{os.pathsep}{os.environ['PATH']}"
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    # Not `kubectl wait`: on a loaded machine it can meet the new CRD before its status has
    # any conditions and then fails at once ("accessor error") instead of waiting.
    eventually("CRD scoringpipelines.scorefleet.io Established", lambda: kubectl(
        "get", "crd/scoringpipelines.scorefleet.io", "-o",
        'jsonpath={.status.conditions[?(@.type=="Established")].status}',
        check=False).strip() == "True")
    yield info
    if not was_up and not os.environ.get("SCOREFLEET_KEEP_CLUSTER"):
        cluster.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that hand the machine's one real node to another cluster run last: another
    engineer's or CI's cluster can take the node in between, and the tests after them would
    lose theirs."""
    items.sort(key=lambda item: item.get_closest_marker("node_handoff") is not None)


def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> str:
    proc = subprocess.run(["kubectl", *args], capture_output=True, text=True, input=stdin,
                          timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def real_node(control_plane: Any) -> Any:
    """The session cluster's real node (NodeInfo). Skipped, saying why, where this machine
    cannot run one; an error instead when SCOREFLEET_REAL_NODE=require (as in CI)."""
    from scorefleet.dev import node

    if control_plane.node is None:
        reason = f"no real node: {control_plane.node_unavailable}"
        if node.mode() is node.Mode.REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    return control_plane.node


@pytest.fixture(scope="session")
def scorer_image(real_node: Any) -> str:
    """The project's scorer image, built here (cached by content) and imported into the real
    node's containerd; its name is what the operator writes into scorer pods."""
    from scorefleet.dev import image

    images = image.build_images()
    image.import_images(images, ctr=Path(shutil.which("ctr") or "ctr"),
                        address=real_node.containerd_socket)
    return images.scorer.name


@contextlib.contextmanager
def namespace_on_real_node() -> Iterator[str]:
    """A namespace whose pods run on the real node (PodNodeSelector and
    PodTolerationRestriction annotations, as an admin would dedicate nodes to a team)."""
    from scorefleet.dev import nodeconf

    name = f"r-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("annotate", "namespace", name,
            *(f"{k}={v}" for k, v in nodeconf.namespace_annotations().items()))
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def real_namespace(real_node: Any) -> Iterator[str]:
    """A namespace on the real node for one test (namespace_on_real_node)."""
    with namespace_on_real_node() as name:
        yield name


@pytest.fixture
def kube(control_plane: Any) -> Any:
    from kubernetes import config

    from scorefleet.operator.kube import Kube

    return Kube(config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig)))


@pytest.fixture
def namespace(control_plane: Any) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def eventually(what: str, check: Callable[[], T | None], timeout: float = 60.0,
               interval: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
