"""The pure parts of the image build, without root or a network: where debootstrap's mirror
comes from, what the scorer image's cache key covers, and OCI layouts written and read back."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from scorefleet.dev import debian_base, image, oci
from tests.conftest import ROOT

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "other.sources").write_text("Types: deb\nURIs: https://other.example/x\n"
                                     "Suites: nodistro\nComponents: main\n")
    (d / "debian.sources").write_text(DEB822)
    mirror = debian_base.find_mirror((tmp_path / "sources.list", d))
    assert mirror == debian_base.Mirror("http://mirror.example/debian",
                                        "/usr/share/keyrings/debian-archive-keyring.gpg")


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://mirror.example/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://mirror.example/debian bookworm main contrib\n")
    mirror = debian_base.find_mirror((tmp_path / "sources.list",))
    assert mirror == debian_base.Mirror("http://mirror.example/debian", None)


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://mirror.example/debian trixie main\n")
    with pytest.raises(debian_base.BaseBuildError, match="no apt source for Debian bookworm"):
        debian_base.find_mirror((tmp_path / "sources.list",))


def test_this_machine_has_a_mirror() -> None:
    """The machine's own apt configuration names one (setup and CI rely on it)."""
    assert debian_base.find_mirror().uri.startswith(("http://", "https://"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the scorer image's key reads: Dockerfile, .dockerignore, context."""
    out = tmp_path / "repo"
    out.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, out / name)
    (out / "scorefleet" / "scorer").mkdir(parents=True)
    (out / "scorefleet" / "__init__.py").write_text("")
    (out / "scorefleet" / "scorer" / "server.py").write_text("x = 1\n")
    (out / "tests").mkdir()
    (out / "tests" / "test_x.py").write_text("")
    return out


def test_scorer_key_follows_the_build_context(repo: Path) -> None:
    key = image.context_key(repo)
    assert image.context_key(repo) == key
    # Outside the context (.dockerignore): no rebuild.
    (repo / "tests" / "test_x.py").write_text("changed")
    (repo / "scorefleet" / "__pycache__").mkdir()
    (repo / "scorefleet" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (repo / "scorefleet" / "scorer" / "_generated").mkdir()
    (repo / "scorefleet" / "scorer" / "_generated" / "PROTO_SHA").write_text("x")
    assert image.context_key(repo) == key
    # Inside it: a source file, its mode, the Dockerfile, the ignore file.
    changes: list[Callable[[], object]] = [
        lambda: (repo / "scorefleet" / "scorer" / "server.py").write_text("x = 2\n"),
        lambda: (repo / "scorefleet" / "scorer" / "server.py").chmod(0o755),
        lambda: (repo / "scorefleet" / "scorer" / "new.py").write_text(""),
        lambda: (repo / "Dockerfile").write_text((repo / "Dockerfile").read_text() + "\n# x\n"),
        lambda: (repo / ".dockerignore").write_text(
            (repo / ".dockerignore").read_text() + "**/*.tmp\n"),
    ]
    for change in changes:
        change()
        new = image.context_key(repo)
        assert new != key
        key = new


def test_oci_layout_round_trip(tmp_path: Path) -> None:
    layer = oci.layer_tar([oci.LayerFile("usr/bin/hello", b"#!/bin/sh\necho hi\n", 0o755,
                                         1_700_000_000)])
    digest = oci.write_image(tmp_path / "layout", "localhost/x/hello:1", [layer],
                             {"Entrypoint": ["/usr/bin/hello"]})
    archive = tmp_path / "hello.tar"
    oci.pack(tmp_path / "layout", archive)
    info = oci.inspect(archive)
    assert info.name == "localhost/x/hello:1" and info.manifest_digest == digest
    assert info.config["config"] == {"Entrypoint": ["/usr/bin/hello"]}
    assert info.config["os"] == "linux" and info.config["architecture"] == oci.go_arch()
    with tarfile.open(archive) as tar:
        assert sorted(n for n in tar.getnames() if "/" not in n) == [
            "blobs", "index.json", "oci-layout"]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        annotations = index["manifests"][0]["annotations"]
        assert annotations == {oci.CONTAINERD_NAME: "localhost/x/hello:1",
                               oci.REF_NAME: "localhost/x/hello:1"}
        # Every blob is named by its content's digest.
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("blobs/sha256/"):
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                assert hashlib.sha256(data).hexdigest() == member.name.rsplit("/", 1)[1]
    # The layer keeps the file's mode and mtime; parents are directories.
    blob = (tmp_path / "layout" / "blobs" / "sha256" /
            info.layers[0].digest.removeprefix("sha256:")).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert [n for n in members] == ["usr", "usr/bin", "usr/bin/hello"]
    assert members["usr/bin/hello"].mode == 0o755
    assert members["usr/bin/hello"].mtime == 1_700_000_000


def test_name_image_refuses_a_layout_of_many_images(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"digest": "sha256:a"}, {"digest": "sha256:b"}]}))
    with pytest.raises(ValueError, match="expected one manifest"):
        oci.name_image(layout, "x:1")
