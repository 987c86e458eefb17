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
  # before the rest; the pin finds the CPU build where pip is configured with one (a local
  # wheel on our machines); elsewhere set PIP_INDEX_URL=https://download.pytorch.org/whl/cpu
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[dev]"
fi
