"""How a checkpoint's accuracy depends on the number of defects in a structure.

    python benchmarks/defect_count.py --split val --json benchmarks/results/defect_count-val.json

Per host, the structures of a split are grouped by their number of defect sites (markers other
than pristine, vacancy nodes included) in bins of three. Per bin: n, coordinate MAE, do-nothing
MAE and their ratio (as ``definet evaluate``), and per host the correlation between a
structure's defect count and its own ratio. ``--split train`` shows how well the checkpoint
fits what it was trained on, the other half of a generalisation gap.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN_WIDTH = 3


def structure_rows(
    checkpoint: str | None, data_root: Path, split: str, hosts: list[str] | None
) -> list[tuple[int, object]]:
    """``(number of defect sites, StructureErrors)`` for every structure of the split."""
    from definet.checkpoint import load_model
    from definet.data.dataset import load_split
    from definet.data.markers import PRISTINE
    from definet.metrics import graph_errors
    from definet.predict import resolve_checkpoint
    from definet.train import predicted_batches

    model, settings, _ = load_model(resolve_checkpoint(checkpoint))
    graphs = load_split(data_root, split, settings=settings, hosts=hosts, progress=False)
    rows = []
    for batch, pred in predicted_batches(model, graphs):
        for i, graph in enumerate(batch.to_data_list()):
            defects = int((graph.marker != PRISTINE).sum())
            rows.append((defects, graph_errors(graph, pred[batch.batch == i])))
    return rows


def by_defect_count(rows: Iterable[tuple[int, object]]) -> dict:
    """Host -> ``{"bins": [...], "correlation": r}`` (see the module docstring)."""
    from definet.metrics import summarize

    hosts: dict[str, list[tuple[int, object]]] = {}
    for defects, errors in rows:
        hosts.setdefault(errors.host, []).append((defects, errors))
    out = {}
    for host, items in sorted(hosts.items()):
        groups: dict[int, list] = {}
        for defects, errors in items:
            groups.setdefault((defects - 1) // BIN_WIDTH, []).append(errors)
        bins = []
        for key in sorted(groups):
            summary = summarize(groups[key])
            low = key * BIN_WIDTH + 1
            bins.append(
                {
                    "defects": [low, low + BIN_WIDTH - 1],
                    "n": summary.n,
                    "mae": summary.mae,
                    "dummy_mae": summary.dummy_mae,
                    "ratio": summary.ratio,
                }
            )
        counts = np.array([d for d, _ in items], dtype=float)
        ratios = np.array([e.ratio for _, e in items])
        varies = len(items) > 2 and counts.std() > 0 and np.nanstd(ratios) > 0
        correlation = float(np.corrcoef(counts, ratios)[0, 1]) if varies else None
        out[host] = {"bins": bins, "correlation": correlation}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="default: the shipped model")
    parser.add_argument(
        "--data-root", type=Path, default=ROOT.parent / "shared/data/definet-dataset"
    )
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--host", action="append", help="repeatable; default: every host")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if not args.data_root.exists():
        parser.error(f"--data-root {args.data_root}: not found (the DefiNet dataset)")
    torch.set_num_threads(2)
    results = by_defect_count(
        structure_rows(args.checkpoint, args.data_root, args.split, args.host)
    )
    print("| host | defect sites | n | MAE (A) | do-nothing (A) | ratio |")
    print("|---|---|---|---|---|---|")
    for host, result in results.items():
        for row in result["bins"]:
            low, high = row["defects"]
            print(
                f"| {host} | {low}-{high} | {row['n']} | {row['mae']:.4f} | "
                f"{row['dummy_mae']:.4f} | {row['ratio']:.3f} |"
            )
    print("\ncorrelation of a structure's defect count with its ratio:")
    for host, result in results.items():
        r = result["correlation"]
        print(f"  {host}: {'n/a' if r is None else f'{r:.2f}'}")
    if args.json:
        payload = {"checkpoint": args.checkpoint or "shipped default", "split": args.split}
        args.json.write_text(json.dumps(payload | {"hosts": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
