"""How much of a model's miss is a field spanning the whole supercell?

    python benchmarks/long_wave_miss.py --split val [--checkpoint CKPT] [--json out.json]

Per structure, the miss (DFT-relaxed minus predicted coordinates, real atoms) is fitted, each
Cartesian component by least squares, with the supercell's longest in-plane waves: a constant
and cos/sin of 2 pi n.f for n = (1, 0), (0, 1), (1, 1), (1, -1) in fractional coordinates f of
the first two lattice vectors (9 functions). Per host: the model's ratio to doing nothing, the
ratio the prediction would have with that part of its miss added (what a model that got the
longest waves right could reach), and, as a control, the share of Laplace noise of the miss's
size that the same fit removes (what 9 functions remove from anything).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: In-plane wave numbers of the fit (besides the constant), one of each +-n pair.
WAVES = ((1, 0), (0, 1), (1, 1), (1, -1))


def longest_waves(frac: np.ndarray) -> np.ndarray:
    """(N, 9) fit functions at fractional coordinates ``frac`` (N, 3)."""
    columns = [np.ones(len(frac))]
    for n1, n2 in WAVES:
        phase = 2 * np.pi * (n1 * frac[:, 0] + n2 * frac[:, 1])
        columns += [np.cos(phase), np.sin(phase)]
    return np.stack(columns, axis=1)


def long_wave_part(frac: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The least-squares fit of ``values`` (N, 3) by :func:`longest_waves`, per component."""
    basis = longest_waves(frac)
    coefficients, *_ = np.linalg.lstsq(basis, values, rcond=None)
    return basis @ coefficients


def long_wave_by_host(graphs, predictions, seed: int = 0) -> dict[str, dict]:
    from definet.metrics import minimum_image, structure_errors, summarize

    rng = np.random.default_rng(seed)
    model: dict[str, list] = {}
    corrected: dict[str, list] = {}
    noise_left: dict[str, list[float]] = {}
    for g, pred in zip(graphs, predictions, strict=True):
        pos, y, marker = g.pos.numpy(), g.y.numpy(), g.marker.numpy()
        cell = g.cell[0].numpy()
        pred = np.asarray(pred, dtype=float)
        real = marker != 2
        frac = np.linalg.solve(cell.T, pos[real].T).T
        miss = minimum_image(y - pred, cell)[real]
        better = pred.copy()
        better[real] += long_wave_part(frac, miss)
        model.setdefault(g.host, []).append(structure_errors(pred, pos, y, marker, cell, g.host))
        corrected.setdefault(g.host, []).append(
            structure_errors(better, pos, y, marker, cell, g.host)
        )
        noise = rng.laplace(size=miss.shape) * np.abs(miss).mean()
        left = np.abs(noise - long_wave_part(frac, noise)).sum() / np.abs(noise).sum()
        noise_left.setdefault(g.host, []).append(float(left))
    out = {}
    for host in sorted(model):
        plain, fixed = summarize(model[host]), summarize(corrected[host])
        out[host] = {
            "n": plain.n,
            "ratio": plain.ratio,
            "ratio_long_waves_right": fixed.ratio,
            "noise_removed": 1.0 - float(np.mean(noise_left[host])),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=ROOT.parent / "shared/data/definet-dataset"
    )
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--host", action="append", help="repeatable; default: every host")
    parser.add_argument("--checkpoint", help="default: the shipped model")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if not args.data_root.exists():
        parser.error(f"--data-root {args.data_root}: not found (the DefiNet dataset)")
    from definet.checkpoint import load_model
    from definet.data.dataset import load_split
    from definet.inference import predicted_coordinates
    from definet.predict import resolve_checkpoint

    model, settings, _ = load_model(resolve_checkpoint(args.checkpoint))
    graphs = load_split(args.data_root, args.split, settings, hosts=args.host, progress=False)
    results = long_wave_by_host(graphs, predicted_coordinates(model, graphs))
    print("| host | n | ratio | ratio with the longest waves right | noise the fit removes |")
    print("|---|---|---|---|---|")
    for host, r in results.items():
        print(
            f"| {host} | {r['n']} | {r['ratio']:.3f} | {r['ratio_long_waves_right']:.3f} | "
            f"{r['noise_removed']:.1%} |"
        )
    if args.json:
        payload = {"split": args.split, "checkpoint": args.checkpoint, "hosts": results}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    from _cli import run

    run(main)
