"""The operator at scale: 1,000 ScoringPipelines on kwok nodes against the real local control
plane (docs/scale.md)."""
