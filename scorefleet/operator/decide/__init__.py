"""Pure decisions: (spec, observations, now) -> plans. No I/O, no clients, no Kopf (import-linter enforces it)."""
