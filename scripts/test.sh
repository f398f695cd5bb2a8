#!/usr/bin/env bash
# The whole check, as CI runs it: setup, static checks, then every test (the control-plane
# tests start the local cluster themselves). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
step() { echo "== $*" >&2; }
step "ruff";        .venv/bin/ruff check scorefleet tests benchmarks
step "mypy";        .venv/bin/mypy
step "imports";     .venv/bin/lint-imports
step "crd drift";   .venv/bin/python -m scorefleet.api.crd --check
step "pytest";      exec .venv/bin/python -m pytest "$@"
