"""How far apart are models' predictions, beside how far each is from DFT?

    python benchmarks/model_agreement.py --reference A.pt --reference B.pt \
        --checkpoint C.pt --checkpoint D.pt --split val --host MoS2_500 --json out.json

Averaging models (an ensemble) removes the part of their errors in which they disagree;
distilling (``teacher`` in a training config) pulls a student towards its teacher. Both pay
only as far as that disagreement is part of the error. Per host and model: the coordinate MAE
between its predictions and the reference's (several ``--reference`` files are averaged, as
an ensemble), and its own MAE and ratio to doing nothing against DFT, beside the reference's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def agreement_by_host(graphs, reference: list, models: dict[str, list]) -> dict[str, dict]:
    """Per host: n, do-nothing MAE, the reference's ratio, and per model its distance to the
    reference (MAE over real atoms, averaged per structure) and its ratio to doing nothing."""
    from definet.data.markers import VACANCY
    from definet.metrics import graph_errors, summarize_by_host

    def ratios(preds: list) -> dict:
        return summarize_by_host(graph_errors(g, p) for g, p in zip(graphs, preds, strict=True))

    ref = ratios(reference)["hosts"]
    own = {name: ratios(preds)["hosts"] for name, preds in models.items()}
    distance: dict[str, dict[str, list[float]]] = {}
    for i, graph in enumerate(graphs):
        real = graph.marker != VACANCY
        for name, preds in models.items():
            gap = float((preds[i][real] - reference[i][real]).abs().mean())
            distance.setdefault(graph.host, {}).setdefault(name, []).append(gap)
    return {
        host: {
            "n": ref[host]["n"],
            "dummy_mae": ref[host]["dummy_mae"],
            "reference_ratio": ref[host]["ratio"],
            "models": {
                name: {
                    "distance_to_reference": float(np.mean(distance[host][name])),
                    "ratio": own[name][host]["ratio"],
                }
                for name in models
            },
        }
        for host in sorted(ref)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=ROOT.parent / "shared/data/definet-dataset"
    )
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--host", action="append", help="repeatable; default: every host")
    parser.add_argument(
        "--reference", action="append", required=True, help="repeatable: several are averaged"
    )
    parser.add_argument("--checkpoint", action="append", required=True, help="repeatable")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if not args.data_root.exists():
        parser.error(f"--data-root {args.data_root}: not found (the DefiNet dataset)")
    from definet.checkpoint import load_averaged
    from definet.data.dataset import load_split
    from definet.distill import load_teacher
    from definet.inference import predicted_coordinates

    reference_model, settings, _ = load_averaged(args.reference)  # the graph that serves them
    graphs = load_split(args.data_root, args.split, settings, hosts=args.host, progress=False)
    reference = predicted_coordinates(reference_model, graphs)
    models = {
        path: predicted_coordinates(load_teacher(path, settings), graphs)
        for path in args.checkpoint
    }
    results = agreement_by_host(graphs, reference, models)
    print(
        "| host | n | do-nothing MAE (A) | reference ratio | model | distance to reference (A) | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for host, r in results.items():
        for name, m in r["models"].items():
            print(
                f"| {host} | {r['n']} | {r['dummy_mae']:.4f} | {r['reference_ratio']:.3f} | "
                f"{name} | {m['distance_to_reference']:.4f} | {m['ratio']:.3f} |"
            )
    if args.json:
        payload = {"split": args.split, "reference": args.reference, "hosts": results}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    from _cli import run

    run(main)
