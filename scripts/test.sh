#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Extra arguments go to pytest, e.g. -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/install_cp2k.sh ] && [ "${DEFINET_SKIP_CP2K:-0}" != "1" ]; then
  if ! PYTHON=.venv/bin/python bash scripts/install_cp2k.sh >/dev/null; then
    if [ "${DEFINET_REQUIRE_CP2K:-0}" = "1" ]; then
      echo "error: CP2K could not be installed and DEFINET_REQUIRE_CP2K=1" >&2
      exit 1
    fi
    echo "warning: CP2K could not be installed; its tests will skip"
  fi
fi
exec .venv/bin/python -m pytest "$@"
