#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a venv in .venv with torch (CPU) and the project.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import definet, definet_flows, pytest" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  # torch before the rest: the build pip finds without an index (a local CPU wheel on our
  # machines), else the CPU build from PyTorch's index (PyPI's default build is the multi-GB
  # CUDA one); DEFINET_TORCH_INDEX picks another index, e.g. .../whl/cu128 for a GPU
  if [ -n "${DEFINET_TORCH_INDEX:-}" ] \
    || ! .venv/bin/pip install -q --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
    .venv/bin/pip install -q "torch==2.13.0" \
      --index-url "${DEFINET_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" \
      --extra-index-url https://pypi.org/simple
  fi
  .venv/bin/pip install -q -e ".[dev]"
fi
