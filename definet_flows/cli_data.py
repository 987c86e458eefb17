"""``definet generate`` and ``definet export``: training data from the pipeline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from definet_flows.cli import app, console, friendly_errors


@app.command()
@friendly_errors
def generate(
    plan: Annotated[Path, typer.Option(help="generation plan YAML (engine, store, sets)")],
    workers: Annotated[int, typer.Option(min=1, help="parallel relaxations (processes)")] = 1,
    retry_failed: Annotated[
        bool, typer.Option(help="relax again defects stored as failed")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the counts here")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Relax the plan's defects once and store them as relaxed pairs (resumes where it stopped)."""
    from definet_flows.generate import GenerationPlan, run_generation

    the_plan = GenerationPlan.from_yaml(plan)
    counts = run_generation(
        the_plan, workers=workers, retry_failed=retry_failed, progress=not quiet
    )
    Console().print(
        f"{counts['n_requested']} defects: {counts['n_run']} relaxed now, "
        f"{counts['n_skipped']} already stored; {counts['n_completed']} completed, "
        f"{counts['n_failed']} failed; {counts['wall_time_s']:.0f} s; store {counts['store']}"
    )
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(counts, indent=2))


@app.command()
@friendly_errors
def export(
    store: Annotated[str, typer.Option(help="results store directory or store config file")],
    out: Annotated[Path, typer.Option(help="dataset root to write (official DefiNet layout)")],
    source: Annotated[
        str, typer.Option(help="'pairs' (definet generate) or 'validation' (definet validate)")
    ] = "pairs",
    host: Annotated[list[str] | None, typer.Option(help="only these hosts")] = None,
    train: Annotated[float, typer.Option(help="fraction in train.csv")] = 0.8,
    val: Annotated[float, typer.Option(help="fraction in val.csv")] = 0.1,
    test: Annotated[float, typer.Option(help="fraction in test.csv")] = 0.1,
    seed: Annotated[int, typer.Option(help="seed of the split hash")] = 0,
    include_unconverged: Annotated[
        bool, typer.Option(help="also export relaxations that hit the step cap")
    ] = False,
    settings_hash: Annotated[
        str | None,
        typer.Option(help="only relaxations with these engine settings (hash or its prefix)"),
    ] = None,
) -> None:
    """Write the stored relaxed pairs as <out>/<host>/{train,val,test}.csv + CIF/ pairs.

    Splits are a hash of each defect id: exporting again after more relaxations keeps every
    pair in its split. `definet train` reads the result (set data_root to OUT).
    """
    from definet_flows.export import export_pairs, pairs_from_store
    from definet_flows.generate import pairs_store
    from definet_flows.stores import open_store

    if source not in ("pairs", "validation"):
        raise ValueError(f"--source must be 'pairs' or 'validation', got {source!r}")
    if not Path(store).expanduser().exists():
        raise FileNotFoundError(f"results store not found: {store}")
    results = open_store(store)
    the_store = pairs_store(results) if source == "pairs" else results
    criteria: dict = {"host": {"$in": host}} if host else {}
    if settings_hash:
        criteria["settings_hash"] = {"$regex": f"^{re.escape(settings_hash.lower())}"}
    with the_store:
        counts = export_pairs(
            pairs_from_store(the_store, criteria, converged_only=not include_unconverged),
            out,
            {"train": train, "val": val, "test": test},
            seed=seed,
        )
    if not counts:
        raise ValueError(f"{store}: no completed {source} documents to export")
    for name, splits in sorted(counts.items()):
        console.print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
    console.print(f"wrote {out}")
