"""Loading models: example models agree with onnxruntime; bad artifacts fail clearly."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from scorefleet.api.scorer_config import ModelRef
from scorefleet.scorer.example_model import NUM_FEATURES, synthetic_features
from scorefleet.scorer.model_store import ModelLoadError, load_model
from tests.scorer.scorer_process import Models


def test_loads_and_scores_like_onnxruntime(models: Models) -> None:
    model = load_model(ModelRef.model_validate(models.ref("v1")))
    assert model.num_features == NUM_FEATURES and model.sha256 == models.sha256["model-v1.onnx"]
    x = synthetic_features(100, seed=7)
    expected = ort.InferenceSession(str(models.dir / "model-v1.onnx")).run(None, {"features": x})
    np.testing.assert_allclose(model.run(x), expected[0], rtol=1e-5, atol=1e-6)
    assert model.decide(np.array([0.49, 0.5], dtype=np.float32)).tolist() == [False, True]


def test_v2_differs_from_v1(models: Models) -> None:
    x = synthetic_features(2000, seed=8)
    v1 = load_model(ModelRef.model_validate(models.ref("v1"))).run(x)
    v2 = load_model(ModelRef.model_validate(models.ref("v2"))).run(x)
    flips = np.count_nonzero((v1 >= 0.5) != (v2 >= 0.5))
    assert 0 < flips < 0.2 * len(x)


def test_wrong_digest_is_a_load_error(models: Models) -> None:
    ref = ModelRef.model_validate(models.ref("v1", sha256="0" * 64))
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        load_model(ref)


def test_corrupt_file_is_a_load_error(models: Models) -> None:
    with pytest.raises(ModelLoadError, match="onnxruntime cannot open it"):
        load_model(ModelRef.model_validate(models.ref("broken")))


def test_example_model_build_is_reproducible(models: Models, tmp_path: object) -> None:
    from pathlib import Path

    from scorefleet.scorer.example_model import build

    again = build(Path(str(tmp_path)))
    assert again == models.sha256
