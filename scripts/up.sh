#!/usr/bin/env bash
# The main job on the embedded local default: set up, start the local control plane, install
# the CRD, run the operator, apply examples/pipeline.yaml and wait until it is Ready.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/scorefleet up "$@"
