#!/usr/bin/env bash
# Without jobflow-remote: run `definet validate` on every spec in $DEFINET_SPECS_DIR, then
# sleep and start again. Finished defects are skipped (keys in the results store), so each
# pass only runs what is new (a new spec, a larger n, other weights or settings).
set -uo pipefail

SPECS_DIR="${DEFINET_SPECS_DIR:-/specs}"
STORE="${DEFINET_STORE_CONFIG:-/config/store.yaml}"
INTERVAL="${DEFINET_INTERVAL_S:-600}"

while true; do
    for spec in "$SPECS_DIR"/*.yaml; do
        [ -e "$spec" ] || continue
        echo "definet validate --spec $spec"
        definet validate --spec "$spec" --store "$STORE" --quiet \
            || echo "validation of $spec failed; next pass retries it" >&2
    done
    sleep "$INTERVAL"
done
