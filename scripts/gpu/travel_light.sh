#!/bin/bash
# Keep the tracked checkpoints and shipped weights (about 300 MB) out of a GPU call's working
# tree (at most 64 MiB):
#   bash scripts/gpu/travel_light.sh on    # before the call: untrack them in the index, ignore them
#   bash scripts/gpu/travel_light.sh off   # after it: the index and ignore list as they were
# Nothing is committed and no file is touched; only the index and .git/info/exclude change.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
HEAVY=(checkpoints model/definet/weights/definet-default.pt)
EXCLUDE=.git/info/exclude
case "${1:-}" in
on)
    if grep -qx "/${HEAVY[0]}" "$EXCLUDE" 2>/dev/null; then
        echo "travel_light: already on ($EXCLUDE ignores /${HEAVY[0]}); run '$0 off' first" >&2
        exit 1
    fi
    if ! git diff --cached --quiet; then
        echo "travel_light: the index has staged changes; commit or unstage them first" >&2
        exit 1
    fi
    git rm -r -q --cached "${HEAVY[@]}"
    for path in "${HEAVY[@]}"; do echo "/$path"; done >>"$EXCLUDE"
    ;;
off)
    for path in "${HEAVY[@]}"; do sed -i "\\#^/$path\$#d" "$EXCLUDE"; done
    git reset -q -- "${HEAVY[@]}"
    ;;
*)
    echo "usage: $0 on|off" >&2
    exit 2
    ;;
esac
(git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- | tail -1 |
    awk '{printf "travel_light: tracked and unignored files now %.1f MB\n", $1 / 1e6}'
