#!/bin/bash
# One call on a lent GPU machine (see scripts/gpu/README.md): install carried wheels if any, then
# train CONFIG from the packed graphs until TRAIN_WINDOW_S seconds after the start; arguments
# after CONFIG go to train_on_device.py (e.g. --keep-config-steps).
#   bash scripts/gpu/run_on_device.sh workflows/train/experiments/high-density-gpu-h128.yaml
set -o pipefail
T0=$(date +%s)
CONFIG=${1:?training config}
if compgen -G ".whl/*.whl" >/dev/null; then  # optional: only parsing CIFs there needs pymatgen
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 11
fi
export PYTHONPATH=/tmp/site:$PWD/model PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 12
python3 scripts/gpu/train_on_device.py --config "$CONFIG" --graphs .gpu/graphs.npz \
    --out-dir "$OUT/run" --deadline $((T0 + ${TRAIN_WINDOW_S:-480})) "${@:2}" 2>&1 | grep --line-buffered -v Warn | tee "$OUT/train.log"
rc=$?
rm -f "$OUT/run/last.pt"  # optimizer state: too large to come back, and not needed here
echo "done in $(( $(date +%s) - T0 )) s"
exit $rc
