#!/usr/bin/env bash
# The whole check, as CI runs it: setup, static checks, then every test (the control-plane
# tests start the local cluster themselves). Extra arguments go to pytest. Every step runs even
# when an earlier one fails, so one run shows every problem; the exit status is the first
# failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
status=0
step() {
  echo "== $1" >&2
  shift
  "$@"
  local rc=$?
  [ "$rc" -ne 0 ] && echo "== FAILED ($rc): $*" >&2 && [ "$status" -eq 0 ] && status=$rc
  return 0
}
step "ruff"      .venv/bin/ruff check scorefleet tests benchmarks
step "mypy"      .venv/bin/mypy
step "imports"   .venv/bin/lint-imports
step "crd drift" .venv/bin/python -m scorefleet.api.crd --check
step "pytest"    .venv/bin/python -m pytest "$@"
exit $status
