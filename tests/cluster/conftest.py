from tests.scorer.conftest import models, start_scorer  # noqa: F401  (shared fixtures)
