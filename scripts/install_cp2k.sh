#!/usr/bin/env bash
# Install CP2K (Debian package) and the per-element data files pymatgen's CP2K input
# sets need, for the `cp2k` relaxation engine of definet_flows.
#
# Idempotent: installs only what is missing. Run once per machine:
#
#     bash scripts/install_cp2k.sh            # uses `python3` (activate the venv first)
#     PYTHON=.venv/bin/python bash scripts/install_cp2k.sh
#
# Environment knobs:
#     DEFINET_CP2K_DATA_DIR   where the pymatgen CP2K data goes (default ~/.cache/definet/cp2k-data)
#     CP2K_SHARE_DIR          CP2K's own basis/potential files (default /usr/share/cp2k)
#     PYTHON                  python with pymatgen installed (default python3)
#
# The engine sets CP2K_DATA_DIR, DEFAULT_CP2K_FUNCTIONAL and DEFAULT_CP2K_BASIS_TYPE itself
# when they are unset (pointing at the default data dir), so the exports printed at the end
# are only needed for a non-default location or for using pymatgen/atomate2 directly.
set -euo pipefail

DATA_DIR="${DEFINET_CP2K_DATA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/definet/cp2k-data}"
SHARE_DIR="${CP2K_SHARE_DIR:-/usr/share/cp2k}"
PYTHON="${PYTHON:-python3}"

# 1. CP2K binaries + cp2k-data (Debian/Ubuntu).
if command -v cp2k.psmp >/dev/null 2>&1 || command -v cp2k.popt >/dev/null 2>&1; then
    echo "cp2k: found $(command -v cp2k.psmp || command -v cp2k.popt)"
else
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: cp2k is not installed and apt-get is unavailable; install CP2K" \
            "(cp2k.psmp or cp2k.popt on PATH) by other means" >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "cp2k: installing the Debian package (apt-get install cp2k)"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y cp2k
fi

if [ ! -d "$SHARE_DIR" ]; then
    echo "error: CP2K data directory $SHARE_DIR not found (package cp2k-data)" >&2
    exit 1
fi

# 2. pymatgen's per-element YAML files (what `pmg config --cp2k SRC DEST` writes).
#    Generated into a temporary directory and moved in place, so an interrupted run
#    never leaves a half-written data dir behind.
if [ -s "$DATA_DIR/Si" ] && [ -s "$DATA_DIR/Mo" ]; then
    echo "pymatgen CP2K data: found $DATA_DIR"
else
    mkdir -p "$(dirname "$DATA_DIR")"
    TMP_DIR="$(mktemp -u "$DATA_DIR.tmp.XXXXXX")"
    echo "pymatgen CP2K data: generating $DATA_DIR from $SHARE_DIR (about 20 s)"
    "$PYTHON" - "$SHARE_DIR" "$TMP_DIR" <<'EOF'
import contextlib
import io
import sys

from pymatgen.cli.pmg_config import setup_cp2k_data

with contextlib.redirect_stdout(io.StringIO()):
    setup_cp2k_data(sys.argv[1:3])
EOF
    rm -rf "$DATA_DIR"
    mv "$TMP_DIR" "$DATA_DIR"
fi

cat <<EOF

CP2K is ready. The definet_flows cp2k engine uses these defaults when unset:
    export CP2K_DATA_DIR="$DATA_DIR"
    export DEFAULT_CP2K_FUNCTIONAL=PBE
    export DEFAULT_CP2K_BASIS_TYPE=DZVP-MOLOPT
EOF
