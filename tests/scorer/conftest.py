"""Fixtures for the scorer tests: the example models (built once) and scorer processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scorer.scorer_process import Models, ScorerProcess

StartScorer = Callable[..., ScorerProcess]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    from scorefleet.scorer.example_model import build

    out = tmp_path_factory.mktemp("models")
    return Models(out, build(out))


def _starter(base: Path, started: list[ScorerProcess]) -> StartScorer:
    def start(config: dict[str, Any], env: dict[str, str] | None = None) -> ScorerProcess:
        workdir = base / f"scorer{len(started)}"
        workdir.mkdir()
        proc = ScorerProcess(workdir, config, env=env)
        started.append(proc)
        return proc

    return start


@pytest.fixture
def start_scorer(tmp_path: Path) -> Iterator[StartScorer]:
    """``start_scorer(config)`` -> a running scorer process, stopped at teardown."""
    started: list[ScorerProcess] = []
    yield _starter(tmp_path, started)
    for proc in started:
        proc.kill()


@pytest.fixture(scope="module")
def start_module_scorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartScorer]:
    """Like start_scorer, shared by the tests of one module."""
    started: list[ScorerProcess] = []
    yield _starter(tmp_path_factory.mktemp("scorers"), started)
    for proc in started:
        proc.kill()
