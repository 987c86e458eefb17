"""Where a checkpoint's coordinate error lives: by how far DFT moved each atom, and by how many
defects each structure has.

    python benchmarks/displacement_profile.py --split val \
        --json benchmarks/results/displacement_profile-val.json

For every real atom of a split, the DFT displacement ``d`` (relaxed - unrelaxed, minimum image)
and the predicted one ``p`` fall in bins of ``|d|``. Per host and bin: the share of atoms, the
share of the host's absolute coordinate error, the atoms' mean error (A, per component, as the
MAE), and how much of the move the model makes, ``<p . d/|d|> / <|d|>`` (1: all of it along the
right direction, 0: none). A model that predicts about half of the large moves is averaging
over outcomes it cannot tell apart; more epochs or width do not fix that.

The same pass groups the structures of each host by their number of defect sites (markers
other than pristine, vacancy nodes included) in bins of three: n, coordinate MAE, do-nothing
MAE and ratio per bin (as ``definet evaluate``), and the correlation between a structure's
defect count and its own ratio. ``--split train`` shows how well the checkpoint fits what it
was trained on, the other half of a generalisation gap.

A third grouping names each atom by its nearest defect within 3.5 A (the first neighbour shells
of these hosts; ``v_Mo`` a Mo vacancy, ``W_Mo`` W on a Mo site, ``far`` beyond it): per host and
kind, the share of atoms and of the error, and the ratio of the atoms' summed error to their
summed do-nothing error (pooled over atoms, so it differs a little from ``definet evaluate``'s
per-structure mean). It tells a user how far to trust a prediction around the defect they study.

``--start-forces`` asks whether a universal potential knows what the model misses: CHGNet's
forces ``F`` on the unrelaxed structure (no relaxation) against the DFT move ``d`` and the
model's miss ``d - p``, per host: their cosines over all atoms, and the share of the MAE left
after adding the least-squares multiple of ``F`` to the prediction (fitted on the split itself:
about what a linear force prior could add at most; 1 = nothing).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN_EDGES = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, np.inf)  # A
DEFECT_BIN_WIDTH = 3
NEAR_DEFECT = 3.5  # A: an atom farther from every defect counts as "far"
FAR = "far"


def defect_names(graph, site_elements: dict[tuple, int]) -> list[str]:
    """Each node's defect name: ``v_Mo`` (vacancy), ``W_Mo`` (W on a Mo site; ``W_?`` where
    ``site_elements`` does not know the site) or ``""`` (pristine)."""
    from pymatgen.core import Element

    from definet.data.augment import site_keys
    from definet.data.markers import PRISTINE, VACANCY

    names = []
    for key, z, marker in zip(
        site_keys(graph), graph.z.tolist(), graph.marker.tolist(), strict=True
    ):
        if marker == PRISTINE:
            names.append("")
        elif marker == VACANCY:
            names.append(f"v_{Element.from_Z(z).symbol}")
        else:
            site = site_elements.get(key)
            names.append(
                f"{Element.from_Z(z).symbol}_{Element.from_Z(site).symbol if site else '?'}"
            )
    return names


def nearest_defect_names(graph, site_elements: dict[tuple, int]) -> np.ndarray:
    """Per real atom, the name of its nearest defect within :data:`NEAR_DEFECT`, else ``far``."""
    from definet.data.markers import VACANCY
    from definet.metrics import nearest_defects

    marker = graph.marker.numpy()
    distance, nearest = nearest_defects(graph.pos.numpy(), marker, graph.cell[0].numpy())
    names = np.array(defect_names(graph, site_elements) + [FAR], dtype=object)
    nearest = np.where(distance <= NEAR_DEFECT, nearest, len(names) - 1)
    return names[nearest[marker != VACANCY]]


def displacements(
    checkpoint: str | None,
    data_root: Path,
    split: str,
    hosts: list[str] | None,
    start_force: Callable | None = None,
):
    """``(host -> (true, predicted displacements, nearest-defect names[, start forces]),
    per-structure rows)``: the arrays run over real atoms, displacements (n_atoms, 3), names
    from :func:`nearest_defect_names`, forces only with ``start_force`` (a callable from a
    graph to the forces on its real atoms at ``pos``); a row is ``(number of defect sites,
    StructureErrors)``."""
    from definet.checkpoint import load_model
    from definet.data.augment import host_site_elements
    from definet.data.dataset import load_split
    from definet.data.markers import PRISTINE, VACANCY
    from definet.inference import predicted_coordinates
    from definet.metrics import graph_errors, minimum_image
    from definet.predict import resolve_checkpoint

    model, settings, _ = load_model(resolve_checkpoint(checkpoint))
    graphs = load_split(data_root, split, settings=settings, hosts=hosts, progress=False)
    site_elements = host_site_elements(graphs)
    out: dict[str, tuple[list, list, list, list]] = {}
    rows = []
    for graph, moved_to in zip(graphs, predicted_coordinates(model, graphs), strict=True):
        rows.append((int((graph.marker != PRISTINE).sum()), graph_errors(graph, moved_to)))
        real = graph.marker != VACANCY
        cell, start = graph.cell[0].numpy(), graph.pos[real].numpy()
        arrays = out.setdefault(graph.host, ([], [], [], []))
        arrays[0].append(minimum_image(graph.y[real].numpy() - start, cell))
        arrays[1].append(minimum_image(moved_to[real].numpy() - start, cell))
        arrays[2].append(nearest_defect_names(graph, site_elements[graph.host]))
        if start_force is not None:
            arrays[3].append(start_force(graph))
    moves = {h: tuple(np.concatenate(a) for a in arrays if a) for h, arrays in sorted(out.items())}
    return moves, rows


def profile(true: np.ndarray, moved: np.ndarray) -> list[dict]:
    """One row per bin of ``|true|`` (see the module docstring)."""
    size = np.linalg.norm(true, axis=1)
    error = np.abs(moved - true).mean(axis=1)
    direction = true / np.where(size > 0, size, 1.0)[:, None]
    along = (moved * direction).sum(axis=1)
    rows = []
    for low, high in zip(BIN_EDGES[:-1], BIN_EDGES[1:], strict=True):
        inside = (size >= low) & (size < high)
        n = int(inside.sum())
        rows.append(
            {
                "bin": [low, None if np.isinf(high) else high],
                "n_atoms": n,
                "share_of_atoms": n / len(size),
                "share_of_error": float(error[inside].sum() / error.sum()) if error.sum() else 0.0,
                "mean_error": float(error[inside].mean()) if n else None,
                "move_captured": float(along[inside].mean() / size[inside].mean())
                if n and size[inside].mean() > 0
                else None,
            }
        )
    return rows


def by_nearest_defect(true: np.ndarray, moved: np.ndarray, names: np.ndarray) -> list[dict]:
    """One row per nearest-defect name (see the module docstring), largest error share first."""
    error = np.abs(moved - true).sum(axis=1)
    dummy = np.abs(true).sum(axis=1)
    rows = []
    for name in np.unique(names):
        inside = names == name
        rows.append(
            {
                "nearest_defect": str(name),
                "n_atoms": int(inside.sum()),
                "share_of_atoms": float(inside.mean()),
                "share_of_error": float(error[inside].sum() / error.sum()) if error.sum() else 0.0,
                "ratio": float(error[inside].sum() / dummy[inside].sum())
                if dummy[inside].sum()
                else None,
            }
        )
    return sorted(rows, key=lambda row: -row["share_of_error"])


def chgnet_start_force() -> Callable:
    """Graph -> CHGNet's forces (eV/A) on its real atoms at the unrelaxed coordinates."""
    from definet.forcefield_loss import load_force_field, real_structure

    chgnet = load_force_field("CHGNet")

    def start_force(graph) -> np.ndarray:
        structure = real_structure(graph, graph.pos)
        return np.asarray(chgnet.predict_structure(structure, task="ef")["f"])

    return start_force


def force_alignment(true: np.ndarray, moved: np.ndarray, force: np.ndarray) -> dict:
    """Cosines of the start force with the move and the miss, and the MAE share left after
    the least-squares multiple of the force (see the module docstring)."""
    miss = true - moved

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        norm = np.sqrt((a * a).sum() * (b * b).sum())
        return float((a * b).sum() / norm) if norm > 0 else 0.0

    scale = float((miss * force).sum() / (force * force).sum()) if force.any() else 0.0
    left = np.abs(miss - scale * force).mean() / np.abs(miss).mean() if miss.any() else 1.0
    return {
        "cos_force_move": cosine(force, true),
        "cos_force_miss": cosine(force, miss),
        "best_scale": scale,
        "error_left": float(left),
    }


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
            groups.setdefault((defects - 1) // DEFECT_BIN_WIDTH, []).append(errors)
        bins = []
        for key in sorted(groups):
            summary = summarize(groups[key])
            low = key * DEFECT_BIN_WIDTH + 1
            bins.append(
                {
                    "defects": [low, low + DEFECT_BIN_WIDTH - 1],
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
    parser.add_argument(
        "--start-forces", action="store_true", help="also CHGNet's forces at the start"
    )
    args = parser.parse_args(argv)
    if not args.data_root.exists():
        parser.error(f"--data-root {args.data_root}: not found (the DefiNet dataset)")
    torch.set_num_threads(2)
    start_force = chgnet_start_force() if args.start_forces else None
    moves, rows = displacements(args.checkpoint, args.data_root, args.split, args.host, start_force)
    results = {host: profile(*arrays[:2]) for host, arrays in moves.items()}
    counts = by_defect_count(rows)
    near = {host: by_nearest_defect(*arrays[:3]) for host, arrays in moves.items()}
    print("| host | DFT move (A) | atoms | share of error | mean error (A) | move captured |")
    print("|---|---|---|---|---|---|")
    for host, rows in results.items():
        for row in rows:
            low, high = row["bin"]
            span = f"{low:g}-{high:g}" if high is not None else f">= {low:g}"
            captured = "" if row["move_captured"] is None else f"{row['move_captured']:.2f}"
            error = "" if row["mean_error"] is None else f"{row['mean_error']:.4f}"
            print(
                f"| {host} | {span} | {row['share_of_atoms']:.1%} | "
                f"{row['share_of_error']:.1%} | {error} | {captured} |"
            )
    print("\n| host | defect sites | n | MAE (A) | do-nothing (A) | ratio |")
    print("|---|---|---|---|---|---|")
    for host, result in counts.items():
        for row in result["bins"]:
            low, high = row["defects"]
            print(
                f"| {host} | {low}-{high} | {row['n']} | {row['mae']:.4f} | "
                f"{row['dummy_mae']:.4f} | {row['ratio']:.3f} |"
            )
    print("\ncorrelation of a structure's defect count with its ratio:")
    for host, result in counts.items():
        r = result["correlation"]
        print(f"  {host}: {'n/a' if r is None else f'{r:.2f}'}")
    print(
        f"\n| host | nearest defect (within {NEAR_DEFECT:g} A) | atoms | share of error | ratio |"
    )
    print("|---|---|---|---|---|")
    for host, kinds in near.items():
        for row in kinds:
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.3f}"
            print(
                f"| {host} | {row['nearest_defect']} | {row['share_of_atoms']:.1%} | "
                f"{row['share_of_error']:.1%} | {ratio} |"
            )
    payload = {"checkpoint": args.checkpoint or "shipped default", "split": args.split}
    payload |= {"hosts": results, "by_defect_count": counts, "by_nearest_defect": near}
    if start_force is not None:
        payload["start_forces"] = {
            h: force_alignment(arrays[0], arrays[1], arrays[3]) for h, arrays in moves.items()
        }
        print("\nCHGNet's force at the start against the DFT move and the model's miss:")
        print("| host | cos(force, move) | cos(force, miss) | error left after best force |")
        print("|---|---|---|---|")
        for host, row in payload["start_forces"].items():
            print(
                f"| {host} | {row['cos_force_move']:.3f} | {row['cos_force_miss']:.3f} | "
                f"{row['error_left']:.1%} |"
            )
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    from _cli import run

    run(main)
