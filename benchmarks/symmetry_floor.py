"""How much of each DFT relaxation could any E(3)-equivariant model reach, given its input?

    python benchmarks/symmetry_floor.py --split val --json benchmarks/results/symmetry_floor-val.json

An equivariant model (DefiNet is one: rotations, reflections, translations, permutations)
maps a start that has a symmetry to a prediction with the same symmetry. Where DFT broke that
symmetry (an atom buckling out of a flat layer, a Jahn-Teller distortion), no such model can
follow. Per structure, the symmetry operations of the marked start come from spglib (vacancy
nodes and substitutions count as their own species); the DFT displacement projected onto the
displacements those operations leave unchanged is the best such a model can predict. Per host:
the median number of operations and the coordinate MAE and ratio to doing nothing of that best
prediction (0: symmetry limits nothing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def symmetry_permutations(
    pos: np.ndarray, cell: np.ndarray, labels: list, symprec: float = 0.01
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(R, perm)`` for every symmetry operation of the structure: Cartesian rotation ``R``
    and the atom ``perm[i]`` that atom ``i`` lands on (same label, periodic images allowed)."""
    from pymatgen.core import Element, Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    kinds = {label: i for i, label in enumerate(sorted(set(labels)))}
    kind = np.array([kinds[label] for label in labels])
    lattice = Lattice(cell)
    species = [Element.from_Z(1 + k) for k in kind]  # one stand-in element per label
    structure = Structure(lattice, species, pos, coords_are_cartesian=True)
    operations = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations(
        cartesian=True
    )
    frac = lattice.get_fractional_coords(pos)
    found = []
    for op in operations:
        moved = lattice.get_fractional_coords(op.operate_multi(pos))
        distance = lattice.get_all_distances(moved, frac)  # periodic, nearest image
        distance[kind[:, None] != kind[None, :]] = np.inf
        perm = distance.argmin(axis=1)
        if distance[np.arange(len(pos)), perm].max() < 10 * symprec and len(set(perm)) == len(pos):
            found.append((op.rotation_matrix, perm))
    return found


def symmetric_part(displacement: np.ndarray, operations: list) -> np.ndarray:
    """Projection of ``displacement`` (N, 3) onto the displacements every operation maps onto
    themselves (``d[perm[i]] = R d[i]``): the group average of ``R^T d[perm[i]]``."""
    total = np.zeros_like(displacement)
    for rotation, perm in operations:
        total += displacement[perm] @ rotation
    return total / len(operations)


def floor_by_host(graphs, symprec: float) -> dict[str, dict]:
    from definet.metrics import structure_errors, summarize

    errors: dict[str, list] = {}
    n_ops: dict[str, list[int]] = {}
    for g in graphs:
        pos, y, marker = g.pos.numpy(), g.y.numpy(), g.marker.numpy()
        cell = g.cell[0].numpy()
        labels = list(zip(g.z.tolist(), marker.tolist(), strict=True))
        operations = symmetry_permutations(pos, cell, labels, symprec)
        best = pos + symmetric_part(y - pos, operations)
        errors.setdefault(g.host, []).append(structure_errors(best, pos, y, marker, cell, g.host))
        n_ops.setdefault(g.host, []).append(len(operations))
    out = {}
    for host, errs in sorted(errors.items()):
        summary = summarize(errs)
        out[host] = {
            "n": summary.n,
            "median_operations": float(np.median(n_ops[host])),
            "max_operations": int(max(n_ops[host])),
            "floor_mae": summary.mae,
            "dummy_mae": summary.dummy_mae,
            "floor_ratio": summary.ratio,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=ROOT.parent / "shared/data/definet-dataset"
    )
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--host", action="append", help="repeatable; default: every host")
    parser.add_argument("--symprec", type=float, default=0.01, help="spglib tolerance (A)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if not args.data_root.exists():
        parser.error(f"--data-root {args.data_root}: not found (the DefiNet dataset)")
    from definet.checkpoint import read_checkpoint
    from definet.data.dataset import load_split
    from definet.data.graphs import GraphSettings
    from definet.predict import resolve_checkpoint

    settings = GraphSettings(**read_checkpoint(resolve_checkpoint(None))["graph_settings"])
    graphs = load_split(args.data_root, args.split, settings, hosts=args.host, progress=False)
    results = floor_by_host(graphs, args.symprec)
    print(
        "| host | n | operations (median / max) | floor MAE (A) | do-nothing MAE (A) | floor ratio |"
    )
    print("|---|---|---|---|---|---|")
    for host, r in results.items():
        print(
            f"| {host} | {r['n']} | {r['median_operations']:g} / {r['max_operations']} | "
            f"{r['floor_mae']:.4f} | {r['dummy_mae']:.4f} | {r['floor_ratio']:.3f} |"
        )
    if args.json:
        payload = {"split": args.split, "symprec": args.symprec, "hosts": results}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    from _cli import run

    run(main)
