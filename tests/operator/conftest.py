from __future__ import annotations

from typing import Any

import pytest

from scorefleet.api.pipeline import ScoringPipeline


def make_pipeline(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None,
                  generation: int = 1) -> ScoringPipeline:
    body = {
        "metadata": {"name": "phish", "namespace": "fraud", "uid": "uid-1",
                     "generation": generation},
        "spec": {"model": {"name": "phishing", "version": "v1",
                           "uri": "file:///models/v1.onnx", "threshold": 0.8},
                 **(spec or {})},
        "status": status or {},
    }
    return ScoringPipeline.from_body(body)


@pytest.fixture
def pipeline() -> ScoringPipeline:
    return make_pipeline()
