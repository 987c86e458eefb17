#!/usr/bin/env bash
# The main job: set up (if needed), then validate DefiNet on MoS2 4x4 defects with CHGNet
# relaxations from both starts, on the embedded store (no server). Extra arguments go to
# `definet validate` (e.g. --n 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p results
exec .venv/bin/definet validate --spec workflows/validate-mos2.yaml \
  --json results/validate-mos2.json "$@"
