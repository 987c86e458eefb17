#!/usr/bin/env bash
# The main job: set up (if needed), train a small DefiNet on a sample of the dataset and predict.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${DEFINET_DATA:-../shared/data/definet-dataset}
.venv/bin/definet train --config workflows/train/sample.yaml
.venv/bin/definet evaluate --checkpoint runs/sample/best.pt --data-root "$DATA" --split val \
  --host MoS2_500 --json runs/sample/val.json
