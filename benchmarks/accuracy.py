"""DefiNet against doing nothing and against CHGNet on held-out DFT structures, per host.

    python benchmarks/accuracy.py [--checkpoint CKPT] [--split val] [--chgnet-per-host 10]
                                  [--json OUT] [--skip-chgnet] [--chgnet-cache FILE]

DefiNet predicts every structure of the split; CHGNet (weights inside the chgnet wheel) relaxes
the first N structures of each host (sorted by atoms_id) with ASE FIRE, fmax 0.05 eV/A, fixed
cell, at most 1000 steps. Both are scored with the same coordinate MAE against the DFT-relaxed
structures (minimum image, vacancy nodes excluded). CHGNet results are cached per structure
(with the chgnet version and torch threads that timed them) in ``--chgnet-cache``, by default
``benchmarks/results/chgnet-<split>.json``, so an interrupted run resumes; a new file re-times
CHGNet beside DefiNet in one run. Speed is compared per
structure on the same structures: CHGNet's relaxation wall time against DefiNet's
``Predictor.predict`` end to end (graph building included, one structure at a time).
Exits non-zero when DefiNet is worse than doing nothing on any host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "definet-dataset"
RESULTS = ROOT / "benchmarks" / "results"
#: Timed passes of DefiNet over each host's structures; the median pass is reported.
TIMED_PASSES = 3


def chgnet_relax(structure, fmax: float = 0.05, steps: int = 1000) -> tuple[np.ndarray, float, int]:
    """Relaxed Cartesian coordinates (fixed cell), wall seconds and FIRE steps with CHGNet."""
    from ase.optimize import FIRE
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    calc = _calculator(CHGNetCalculator)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calc
    start = time.perf_counter()
    opt = FIRE(atoms, logfile=None)
    opt.run(fmax=fmax, steps=steps)
    return atoms.get_positions(), time.perf_counter() - start, opt.get_number_of_steps()


_CALC = {}


def marked_structure(graph):
    """The marked input structure of a dataset graph (vacancy nodes kept, markers as site property)."""
    from pymatgen.core import Lattice, Structure

    from definet.data.markers import MARKER_KEY

    return Structure(
        Lattice(graph.cell[0].numpy()),
        [int(z) for z in graph.z],
        graph.pos.numpy(),
        coords_are_cartesian=True,
        site_properties={MARKER_KEY: [int(m) for m in graph.marker]},
    )


def definet_seconds(predictor, graphs, passes: int = TIMED_PASSES) -> float:
    """Mean end-to-end seconds per structure of ``predictor.predict`` (graph building included).

    One structure at a time (batch 1), as a user relaxes one defect: the same unit as CHGNet's
    seconds per relaxation. One warm-up call is not timed; of ``passes`` timed passes over the
    structures the median is kept, so that a pause of the machine in one pass (this VM's
    timings vary by up to a half between runs) does not decide the figure.
    """
    structures = [marked_structure(g) for g in graphs]
    predictor.predict(structures[:1], batch_size=1)
    means = []
    for _ in range(passes):
        start = time.perf_counter()
        for s in structures:
            predictor.predict([s], batch_size=1)
        means.append((time.perf_counter() - start) / len(structures))
    return statistics.median(means)


def _read_cache(cache_file: Path) -> dict:
    """The cached CHGNet results, ``{}`` when there are none yet."""
    if not cache_file.exists():
        return {}
    try:
        return json.loads(cache_file.read_text())
    except json.JSONDecodeError as err:
        sys.exit(
            f"{cache_file}: not a CHGNet cache (JSON of host/atoms_id -> results): {err}; "
            "move it away or pass another --chgnet-cache"
        )


def _calculator(cls):
    if "calc" not in _CALC:
        _CALC["calc"] = cls(use_device="cpu")
    return _CALC["calc"]


def chgnet_side(
    graphs, per_host: int, cache_file: Path, cached_only: bool = False
) -> dict[str, dict]:
    """CHGNet MAE and seconds per structure for the first ``per_host`` graphs of each host."""
    from importlib.metadata import version

    import torch

    from definet.data.markers import VACANCY
    from definet.forcefield_loss import real_structure
    from definet.metrics import minimum_image

    cache = _read_cache(cache_file)
    timed_with = {"chgnet": version("chgnet"), "torch_threads": torch.get_num_threads()}
    by_host: dict[str, list] = {}
    for g in sorted(graphs, key=lambda g: (g.host, g.atoms_id)):
        by_host.setdefault(g.host, []).append(g)
    for host, items in by_host.items():
        for g in items[:per_host]:
            key = f"{host}/{g.atoms_id}"
            if key in cache or cached_only:
                continue
            real = (g.marker != VACANCY).numpy()
            cell = g.cell[0].numpy()
            pos, seconds, steps = chgnet_relax(real_structure(g, g.pos))
            err = np.abs(minimum_image(pos - g.y[real].numpy(), cell))
            cache[key] = {
                "mae": float(err.mean()),
                "seconds": seconds,
                "steps": steps,
            } | timed_with
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            partial = cache_file.with_name(cache_file.name + ".partial")
            partial.write_text(json.dumps(cache, indent=1))
            partial.replace(cache_file)  # an interrupted write leaves the old cache whole
            print(
                f"  CHGNet {key}: MAE {cache[key]['mae']:.4f} A, {steps} steps, {seconds:.0f} s",
                flush=True,
            )
    out = {}
    timed_otherwise: set[str] = set()
    for host, items in by_host.items():
        done = [g for g in items[:per_host] if f"{host}/{g.atoms_id}" in cache]
        rows = [cache[f"{host}/{g.atoms_id}"] for g in done]
        timed_otherwise |= {
            f"chgnet {r.get('chgnet')}, {r.get('torch_threads')} threads"
            for r in rows
            if any(r.get(k) != v for k, v in timed_with.items())
        }
        if not rows:
            continue
        out[host] = {
            "n": len(rows),
            "mae": float(np.mean([r["mae"] for r in rows])),
            "s_per_structure": float(np.mean([r["seconds"] for r in rows])),
            "ids": [g.atoms_id for g in done],
        }
    if timed_otherwise:  # cached relaxations are kept; their times say how they were taken
        print(
            f"note: cached CHGNet times were taken with {'; '.join(sorted(timed_otherwise))}, "
            f"this run has chgnet {timed_with['chgnet']}, {timed_with['torch_threads']} threads; "
            f"delete {cache_file} to time them again",
            flush=True,
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument(
        "--data-root", default=str(DATA), help="dataset in the official layout (dirs or .tar.gz)"
    )
    parser.add_argument("--split", default="val", help="val, or test where a test.csv exists")
    parser.add_argument(
        "--chgnet-per-host",
        type=int,
        default=10,
        help="structures per host that CHGNet relaxes (its first by atoms_id)",
    )
    parser.add_argument("--skip-chgnet", action="store_true", help="DefiNet and do-nothing only")
    parser.add_argument(
        "--chgnet-cached-only",
        action="store_true",
        help="report only the CHGNet relaxations already in the cache",
    )
    parser.add_argument(
        "--chgnet-cache",
        default=None,
        help="CHGNet results per structure (default: benchmarks/results/chgnet-<split>.json)",
    )
    parser.add_argument("--json", default=None, help="also write the table and provenance here")
    args = parser.parse_args()
    if not Path(args.data_root).exists():
        sys.exit(f"dataset root {args.data_root} is absent; nothing to measure")

    import torch

    from definet.data.dataset import load_split
    from definet.inference import evaluate_graphs
    from definet.predict import Predictor, default_checkpoint

    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    predictor = Predictor(checkpoint, device="cpu")  # loads the model once
    model, settings = predictor.model, predictor.graph_settings
    graphs = load_split(args.data_root, args.split, settings, progress=False)
    print(
        f"command: python benchmarks/accuracy.py --checkpoint {checkpoint} --split {args.split} "
        f"--chgnet-per-host {args.chgnet_per_host}{' --skip-chgnet' if args.skip_chgnet else ''}"
        + (f" --chgnet-cache {args.chgnet_cache}" if args.chgnet_cache else "")
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}"
    )
    start = time.perf_counter()
    result = evaluate_graphs(model, graphs, batch_size=32)
    scoring_ms = 1000 * (time.perf_counter() - start) / len(graphs)
    cache_file = Path(args.chgnet_cache or RESULTS / f"chgnet-{args.split}.json")
    chgnet = (
        {}
        if args.skip_chgnet
        else chgnet_side(
            graphs, args.chgnet_per_host, cache_file, cached_only=args.chgnet_cached_only
        )
    )

    header = (
        f"{'host':<15}{'n':>5}{'MAE':>9}{'nothing':>9}{'ratio':>7}{'local3A':>9}"
        f"{'n_chg':>6}{'DefiNet*':>9}{'CHGNet*':>9}{'DefiNet ms':>11}{'CHGNet s':>9}"
    )
    print(header)
    print("-" * len(header))
    failed = []
    for host, row in result["hosts"].items():
        c = chgnet.get(host)
        timed = [g for g in graphs if g.host == host]
        if c:
            timed = [g for g in timed if g.atoms_id in set(c["ids"])]
            row["definet_mae_chgnet_subset"] = evaluate_graphs(model, timed)["overall"]["mae"]
            row["chgnet_mae"], row["chgnet_n"] = c["mae"], c["n"]
            row["chgnet_s_per_structure"] = c["s_per_structure"]
        definet_ms = 1000 * definet_seconds(predictor, timed[: args.chgnet_per_host])
        row["definet_ms_per_structure"] = definet_ms
        if c:
            row["chgnet_over_definet_time"] = 1000 * c["s_per_structure"] / definet_ms
        if row["ratio"] >= 1.0:
            failed.append(host)
        print(
            f"{host:<15}{row['n']:>5}{row['mae']:>9.4f}{row['dummy_mae']:>9.4f}"
            f"{row['ratio']:>7.3f}{row['local_mae_3A']:>9.4f}"
            + (
                f"{c['n']:>6}{row['definet_mae_chgnet_subset']:>9.4f}{c['mae']:>9.4f}"
                if c
                else f"{'-':>6}{'-':>9}{'-':>9}"
            )
            + f"{definet_ms:>11.1f}"
            + (f"{c['s_per_structure']:>9.1f}" if c else f"{'-':>9}")
        )
    o = result["overall"]
    print(
        f"{'overall':<15}{o['n']:>5}{o['mae']:>9.4f}{o['dummy_mae']:>9.4f}{o['ratio']:>7.3f}"
        f"{o['local_mae_3A']:>9.4f}   mean host ratio {o['mean_host_ratio']:.3f}"
    )
    print("* on the same structures CHGNet relaxed (the first n_chg of each host by atoms_id)")
    print(
        "DefiNet ms: Predictor.predict end to end (graph building included), one structure at a "
        f"time, on those structures, median of {TIMED_PASSES} passes; batched scoring of all "
        f"{len(graphs)}: {scoring_ms:.1f} ms each"
    )
    if args.json:
        result |= {
            "checkpoint": str(checkpoint),
            "scoring_ms_per_structure": scoring_ms,
            "chgnet_cache": None if args.skip_chgnet else str(cache_file),
        }
        Path(args.json).write_text(json.dumps(result, indent=2))
    if failed:
        print(f"FAIL: DefiNet is worse than doing nothing on {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
