"""Largest force-field force on DefiNet's predicted structures: what sets the relaxation's steps.

    python benchmarks/start_forces.py --checkpoint checkpoints/definet-chgnet-v1.pt \
        --checkpoint model/definet/weights/definet-chgnet.pt --split val

For each checkpoint, predicts every structure of a split of an exported pipeline dataset
(default ``runs/three-steps/dataset``, see benchmarks/three_steps.py) and evaluates CHGNet's
forces there (no relaxation): per host the median largest force per structure and the share of
structures whose largest force is under 0.1 and 0.15 eV/A. A start under 0.1 eV/A usually
converges within 3 BFGS steps; it is a cheap proxy for benchmarks/three_steps.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.1, 0.15)  # eV/A


def largest_forces(checkpoint: str, data_root: Path, split: str, loss) -> dict[str, list[float]]:
    """Host -> largest force (eV/A) on each predicted structure of ``split``."""
    from definet.checkpoint import load_model
    from definet.data.dataset import load_split
    from definet.inference import predicted_batches

    model, settings, _ = load_model(checkpoint)
    by_host: dict[str, list[float]] = {}
    graphs = load_split(data_root, split, settings=settings, progress=False)
    for batch, pred in predicted_batches(model, graphs, batch_size=8):
        for host, forces in zip(batch.host, loss.forces(pred, batch), strict=True):
            by_host.setdefault(host, []).append(forces.norm(dim=1).max().item())
    return by_host


def summarize(by_host: dict[str, list[float]]) -> dict[str, dict]:
    groups = {**by_host, "all": [f for forces in by_host.values() for f in forces]}
    return {
        name: {"n": len(f), "median_max_force": float(np.median(f))}
        | {f"share_below_{t}": float(np.mean(np.array(f) < t)) for t in THRESHOLDS}
        for name, f in sorted(groups.items())
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="repeatable")
    parser.add_argument("--data-root", type=Path, default=ROOT / "runs/three-steps/dataset")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if not args.data_root.is_dir():
        parser.error(f"--data-root {args.data_root}: no exported dataset (definet export)")
    from definet.forcefield_loss import ForceFieldLoss

    torch.set_num_threads(2)
    loss = ForceFieldLoss.named("CHGNet")
    results = {}
    print("| checkpoint | group | n | median largest force (eV/A) | < 0.1 | < 0.15 |")
    print("|---|---|---|---|---|---|")
    for checkpoint in args.checkpoint:
        results[checkpoint] = summarize(
            largest_forces(checkpoint, args.data_root, args.split, loss)
        )
        for name, row in results[checkpoint].items():
            print(
                f"| {checkpoint} | {name} | {row['n']} | {row['median_max_force']:.3f} | "
                f"{row['share_below_0.1']:.0%} | {row['share_below_0.15']:.0%} |"
            )
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    from _cli import run

    run(main)
