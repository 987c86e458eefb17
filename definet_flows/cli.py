"""The ``definet`` command: train, evaluate and predict with DefiNet; validate and report.

Errors print as one red line; set ``DEFINET_DEBUG=1`` for the full traceback.
"""

from __future__ import annotations

import json
import os
import sys
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="DefiNet: relaxed point-defect structures in one pass, proven with DFT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def friendly_errors(func):
    """Turn expected failures into one red line and exit code 1."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError, OSError, RuntimeError, ImportError) as exc:
            if os.environ.get("DEFINET_DEBUG"):
                raise
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@friendly_errors
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="training YAML")],
    out_dir: Annotated[str | None, typer.Option(help="override out_dir of the config")] = None,
    init_from: Annotated[str | None, typer.Option(help="fine-tune from this checkpoint")] = None,
    skip_bad: Annotated[bool, typer.Option(help="skip unreadable pairs, report them")] = False,
    quiet: bool = False,
) -> None:
    """Train DefiNet (resumes from OUT_DIR/last.pt when it exists)."""
    import logging

    from definet.train import TrainConfig, train_from_config

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO)
    cfg = TrainConfig.from_yaml(config)
    if out_dir:
        cfg.out_dir = out_dir
    if init_from:
        cfg.init_from = init_from
    cfg.skip_bad = cfg.skip_bad or skip_bad
    best = train_from_config(cfg, progress=not quiet)
    console.print(f"best checkpoint: {best}")


@app.command()
@friendly_errors
def evaluate(
    data_root: Annotated[Path, typer.Option(help="dataset root (official layout or .tar.gz)")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    checkpoint: Annotated[Path | None, typer.Option(help="default: the shipped model")] = None,
    host: Annotated[list[str] | None, typer.Option(help="only these host folders")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write results here")] = None,
    skip_bad: Annotated[bool, typer.Option(help="skip unreadable pairs, report them")] = False,
) -> None:
    """Coordinate MAE per host against the do-nothing baseline."""
    from definet.evaluate import evaluate_checkpoint, format_table

    result = evaluate_checkpoint(data_root, split, checkpoint, hosts=host, skip_bad=skip_bad)
    print(format_table(result))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {json_out}")


@app.command()
@friendly_errors
def predict(
    files: Annotated[list[Path], typer.Argument(help="defect structures (CIF, POSCAR, ...)")],
    out: Annotated[Path, typer.Option(help="directory for the relaxed CIFs")],
    host_cell: Annotated[Path | None, typer.Option(help="host unit cell")] = None,
    supercell: Annotated[str | None, typer.Option(help="e.g. 8x8x1; detected when omitted")] = None,
    pristine: Annotated[Path | None, typer.Option(help="pristine supercell instead")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="default: the shipped model")] = None,
    batch_size: int = 32,
) -> None:
    """Predict relaxed structures and write them as CIFs."""
    from pymatgen.core import Structure

    from definet.data.dataset import read_structure
    from definet.data.markers import pristine_supercell
    from definet.predict import Predictor

    if (host_cell is None) == (pristine is None):
        raise ValueError(
            "give exactly one of --host-cell (with optional --supercell) or --pristine"
        )
    structures = [read_structure(f) for f in files]
    if pristine is not None:
        ideal = read_structure(pristine)
        ideals = [ideal] * len(structures)
    else:
        unit = read_structure(host_cell)
        ideals = [pristine_supercell(unit, supercell, lattice=s.lattice) for s in structures]
    relaxed = Predictor(checkpoint).predict(structures, pristine=ideals, batch_size=batch_size)
    out.mkdir(parents=True, exist_ok=True)
    for path, structure in zip(files, relaxed, strict=True):
        target = out / f"{path.stem}_predicted.cif"
        Structure.from_sites(structure).to(filename=str(target))
        console.print(f"wrote {target}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
