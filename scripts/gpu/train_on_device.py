"""Train one config on a lent GPU machine until a wall-clock deadline, from packed graphs.

It times a short probe run first, then sets ``max_steps`` so that the cosine decay ends by the
deadline; the config.yaml written beside the checkpoints records the steps it chose.

    python scripts/gpu/train_on_device.py --config CONFIG --graphs .gpu/graphs.npz \
        --out-dir "$OUT/run" --deadline "$(( $(date +%s) + 420 ))"
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from pack_graphs import unpack  # noqa: E402

from definet.checkpoint import read_checkpoint  # noqa: E402
from definet.train import Trainer  # noqa: E402
from definet.train_config import TrainConfig  # noqa: E402

PROBE_STEPS = 60
FINISH_S = 30  # last validation and save


def step_seconds(config: TrainConfig, train: list, val: list) -> float:
    """Seconds per training step, timed on steps 20..PROBE_STEPS of a throw-away run."""
    out = Path(tempfile.mkdtemp(prefix="definet-probe-"))  # fresh: never resumes an old probe
    probe = replace(
        config, out_dir=str(out), max_steps=PROBE_STEPS, val_every=10**9, checkpoint_every=10**9
    )
    Trainer(probe, train, val, progress=False).fit()
    times = {
        r["step"]: r["time"]
        for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
        if r["event"] == "train"
    }
    return (times[PROBE_STEPS] - times[20]) / (PROBE_STEPS - 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--graphs", required=True, type=Path)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--deadline", required=True, type=float, help="epoch seconds")
    parser.add_argument(
        "--keep-config-steps",
        action="store_true",
        help="train the config's max_steps (and its val/checkpoint cadence) when they fit before "
        "the deadline, else as many as fit; without it the deadline alone sets the steps",
    )
    args = parser.parse_args()
    with np.load(args.graphs) as packed:
        packed = dict(packed)
    train, val = unpack(packed, "train"), unpack(packed, "val")
    config = replace(TrainConfig.from_yaml(args.config), out_dir=args.out_dir)
    print(f"{len(train)} train, {len(val)} val graphs", flush=True)
    step_s = step_seconds(config, train, val)
    left = args.deadline - time.time() - FINISH_S
    steps = int(0.9 * left / step_s)
    if steps < PROBE_STEPS:
        raise SystemExit(
            f"--deadline leaves {left:.0f} s after the probe: {steps} steps of "
            f"{1000 * step_s:.0f} ms; give it more time"
        )
    keep = args.keep_config_steps and steps >= config.max_steps
    steps = config.max_steps if keep else steps
    epochs_needed = math.ceil(steps / math.ceil(len(train) / config.batch_size))
    config = replace(
        config,
        max_steps=steps,
        epochs=max(config.epochs, epochs_needed),  # the deadline sets the length, not `epochs`
        val_every=config.val_every if keep else max(50, steps // 8),
        checkpoint_every=config.checkpoint_every if keep else max(100, steps // 4),
        max_hours=left / 3600,
    )
    print(f"{1000 * step_s:.1f} ms/step -> max_steps {steps} in {left:.0f} s", flush=True)
    best = Trainer(config, train, val, progress=False).fit()
    validation = read_checkpoint(best)["metadata"]["validation"]
    print(json.dumps({h: round(s["ratio"], 3) for h, s in validation["hosts"].items()}))
    print(json.dumps(validation["overall"]))


if __name__ == "__main__":
    main()
