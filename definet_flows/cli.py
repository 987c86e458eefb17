"""The ``definet`` command: train, evaluate and predict with DefiNet; validate and report.

Errors print as one red line; set ``DEFINET_DEBUG=1`` for the full traceback.
"""

from __future__ import annotations

import json
import os
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from definet_flows.cli_options import with_spec_options

if TYPE_CHECKING:
    from definet_flows.spec import ValidationSpec

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
            console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@friendly_errors
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="training YAML")],
    out_dir: Annotated[str | None, typer.Option(help="override out_dir of the config")] = None,
    init_from: Annotated[str | None, typer.Option(help="fine-tune from this checkpoint")] = None,
    skip_bad: Annotated[bool, typer.Option(help="skip unreadable pairs, report them")] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="override threads of the config (torch CPU threads)")
    ] = None,
    quiet: bool = False,
) -> None:
    """Train DefiNet (resumes from OUT_DIR/last.pt when it exists)."""
    import logging

    from definet.train import train_from_config
    from definet.train_config import TrainConfig

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO)
    cfg = TrainConfig.from_yaml(config)
    if out_dir:
        cfg.out_dir = out_dir
    if init_from:
        cfg.init_from = init_from
    if threads:
        cfg.threads = threads
    cfg.skip_bad = cfg.skip_bad or skip_bad
    best = train_from_config(cfg, progress=not quiet)
    console.print(f"best checkpoint: {best}")


@app.command()
@friendly_errors
def evaluate(
    data_root: Annotated[Path, typer.Option(help="dataset root (official layout or .tar.gz)")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="file or shipped name (definet-chgnet); default: the shipped model"),
    ] = None,
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
def ensemble(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="two or more single-model checkpoints (best.pt, last.pt)")
    ],
    out: Annotated[Path, typer.Option(help="the ensemble checkpoint to write")],
) -> None:
    """Average several DefiNets: one checkpoint whose prediction is the mean of theirs.

    Use it wherever a checkpoint goes (evaluate, predict, validate, Predictor). Members must
    share the graph cutoff; where their neighbour caps differ, the file is served the widest
    graph and each member takes its own nearest edges of it.
    """
    from definet.checkpoint import ensemble_from_files, file_sha256, save_atomic

    save_atomic(ensemble_from_files(checkpoints), out)
    console.print(f"wrote {out} ({len(checkpoints)} members, sha256 {file_sha256(out)[:12]})")


@app.command()
@friendly_errors
def predict(
    files: Annotated[list[Path], typer.Argument(help="defect structures (CIF, POSCAR, ...)")],
    out: Annotated[Path, typer.Option(help="directory for the relaxed CIFs")],
    host_cell: Annotated[Path | None, typer.Option(help="host unit cell")] = None,
    supercell: Annotated[str | None, typer.Option(help="e.g. 8x8x1; detected when omitted")] = None,
    pristine: Annotated[Path | None, typer.Option(help="pristine supercell instead")] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="file or shipped name (definet-chgnet); default: the shipped model"),
    ] = None,
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
    stems = [f.stem for f in files]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise ValueError(
            f"input files share the name(s) {', '.join(repeated)}: their outputs "
            "(<name>_predicted.cif) would overwrite each other; predict them into separate --out"
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


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


_SUMMARY_ROWS = [
    ("defects", "n_defects"),
    ("failed", "n_failed"),
    ("outside the model's training", "n_out_of_distribution"),
    *(
        (f"{label}, {start_label} start", f"{key}_{start}")
        for label, key in (
            ("median steps", "median_steps"),
            ("mean steps", "mean_steps"),
            ("p90 steps", "p90_steps"),
            ("share converged", "share_converged"),
            ("share conv. in <= 3 steps", "share_within_3_steps"),
        )
        for start, start_label in (("unrelaxed", "unrelaxed"), ("predicted", "DefiNet"))
    ),
    ("share same minimum", "share_same_minimum"),
    ("mean dE (eV), DefiNet - unrelaxed", "mean_energy_difference"),
    ("mean DefiNet MAE (A)", "mean_definet_mae"),
    ("mean do-nothing MAE (A)", "mean_baseline_mae"),
]


def _summary_table(summary: dict):
    """Figures as rows, groups (all, each host, each defect type) as columns."""
    from rich.table import Table

    groups = [("all", summary)]
    groups += list(summary["per_host"].items())
    groups += [
        (k, v) for k, v in summary["per_defect_type"].items() if k not in summary["per_host"]
    ]
    table = Table(
        title=f"DefiNet validation: {summary['n_defects']} defects, engine {summary['engine']}"
    )
    table.add_column("figure")
    for name, _ in groups:
        table.add_column(name, justify="right")
    for label, key in _SUMMARY_ROWS:
        table.add_row(label, *(_fmt(g.get(key)) for _, g in groups))
    return table


@app.command()
@friendly_errors
@with_spec_options
def validate(
    spec: ValidationSpec,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the summary here")] = None,
    retry_failed: Annotated[bool, typer.Option(help="rerun defects stored as failed")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Relax defects from the unrelaxed and the DefiNet-predicted start; compare the steps.

    Runs on this machine (jobflow run_locally); defects already in the store are skipped.
    """
    from definet_flows.validation import run_validation

    summary = run_validation(spec, progress=not quiet, retry_failed=retry_failed)
    Console().print(_summary_table(summary))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2, default=str))
        console.print(f"wrote {json_out}")
    if summary["failures_log"]:
        console.print(f"tracebacks of the jobs that failed: {summary['failures_log']}")
    if summary["not_stored"]:
        console.print(
            f"[red]error: {len(summary['not_stored'])} defect(s) ran but were not stored "
            "(see the log above); a rerun repeats them[/red]"
        )
        raise typer.Exit(1)


@app.command()
@friendly_errors
def report(
    store: Annotated[str, typer.Option(help="results store directory or store config file")],
    out: Annotated[Path, typer.Option(help="directory for report.md and its plots")],
    title: Annotated[str, typer.Option(help="report title")] = "DefiNet validation report",
) -> None:
    """Write a Markdown report with plots of the ValidationDocs in a store."""
    from definet_flows.report import write_report
    from definet_flows.stores import open_store

    if not Path(store).expanduser().exists():
        raise FileNotFoundError(f"results store not found: {store}")
    path = write_report(open_store(store), out, title=title)
    console.print(f"wrote {path}")


# `definet results`, `store init`, `fireworks submit`, `generate`, `export` register themselves
from definet_flows import cli_cluster, cli_data  # noqa: E402, F401
