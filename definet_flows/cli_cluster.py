"""``definet results``, ``definet store init`` and ``definet fireworks submit``.

Registered on the ``definet`` app by :mod:`definet_flows.cli`; the jobflow-remote
counterpart of ``fireworks submit`` is ``jf flow submit`` (:mod:`definet_flows.jf_plugin`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from definet_flows.cli import app, console, friendly_errors
from definet_flows.cli_options import CheckEngineOpt, DryRunOpt, with_spec_options

if TYPE_CHECKING:
    from maggma.core import Store

    from definet_flows.spec import ValidationSpec

__all__ = ["fireworks_app", "results", "store_app"]

fireworks_app = typer.Typer(
    help="FireWorks: submit DefiNet validation flows to a LaunchPad.", no_args_is_help=True
)
store_app = typer.Typer(help="The results store: set-up and indexes.", no_args_is_help=True)
app.add_typer(fireworks_app, name="fireworks")
app.add_typer(store_app, name="store")

StoreLocation = Annotated[
    str | None,
    typer.Option(
        "--store", help="results store: directory of the embedded store, or a store config file"
    ),
]
StoreConfig = Annotated[
    Path | None,
    typer.Option("--store-config", help="store config file (YAML/JSON, e.g. MongoDB)"),
]


def _open(store: str | None, store_config: Path | None) -> Store:
    """The results store named by ``--store``/``--store-config``; it must exist and answer."""
    from definet_flows.stores import open_store, store_from_config
    from definet_flows.submit import ping_store

    if store is not None and store_config is not None:
        raise ValueError("give --store or --store-config, not both")
    if store_config is not None:
        if not store_config.is_file():
            raise FileNotFoundError(f"store config not found: {store_config}")
        the_store = store_from_config(store_config)
    else:
        location = Path(store or "definet_results").expanduser()
        if not location.exists():
            raise FileNotFoundError(
                f"results store not found: {location} (give --store DIR or --store-config FILE)"
            )
        the_store = open_store(location)
    ping_store(the_store, "results store")
    return the_store


@app.command()
@friendly_errors
def results(
    store: StoreLocation = None,
    store_config: StoreConfig = None,
    host: Annotated[list[str] | None, typer.Option(help="host (repeatable)")] = None,
    defect_type: Annotated[
        list[str] | None,
        typer.Option(help="vacancy, substitution or interstitial (repeatable)"),
    ] = None,
    engine: Annotated[list[str] | None, typer.Option(help="engine (repeatable)")] = None,
    converged: Annotated[
        bool | None,
        typer.Option(
            "--converged/--not-converged",
            help="both relaxations converged / at least one did not",
        ),
    ] = None,
    same_minimum: Annotated[
        bool | None,
        typer.Option("--same-minimum/--different-minimum", help="both starts, same minimum"),
    ] = None,
    status: Annotated[str | None, typer.Option(help="completed or failed")] = None,
    steps_unrelaxed: Annotated[
        str | None, typer.Option(help="ionic steps from the unrelaxed start, MIN:MAX")
    ] = None,
    steps_predicted: Annotated[
        str | None, typer.Option(help="ionic steps from the DefiNet start, MIN:MAX")
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="DefiNet weights: sha256 (prefix), checkpoint file, shipped name or 'shipped'"
        ),
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="the builder's summaries instead of defects")
    ] = False,
    build: Annotated[
        bool, typer.Option("--build", help="with --summary: run the summary builder first")
    ] = False,
    limit: Annotated[int, typer.Option(help="at most this many rows (0: all)")] = 0,
    sort: Annotated[
        str | None, typer.Option(help="column to sort by, '-column' for descending")
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="write rows as JSON to this file ('-': stdout)")
    ] = None,
    csv_out: Annotated[
        str | None, typer.Option("--csv", help="write rows as CSV to this file ('-': stdout)")
    ] = None,
) -> None:
    """Query the ValidationDocs (or, with --summary, the summaries) of a results store."""
    from definet_flows.results import (
        ResultsQuery,
        build_summaries,
        docs_table,
        parse_range,
        query_docs,
        query_summaries,
        summary_table,
        write_rows,
    )
    from definet_flows.stores import summary_store

    if status is not None and status not in ("completed", "failed"):
        raise ValueError(f"--status {status!r}: use completed or failed")
    if build and not summary:
        raise ValueError("--build goes with --summary")
    query = ResultsQuery(
        hosts=host or [],
        defect_types=defect_type or [],
        engines=engine or [],
        converged=converged,
        same_minimum=same_minimum,
        status=status,
        steps_unrelaxed=parse_range(steps_unrelaxed),
        steps_predicted=parse_range(steps_predicted),
        checkpoint=_checkpoint(checkpoint),
    )
    the_store = _open(store, store_config)
    if summary:
        if sort is not None:
            raise ValueError("--sort applies to defect rows, not to --summary")
        summaries = summary_store(the_store)
        if build:
            n_built = build_summaries(the_store, summaries)
            console.print(f"summary builder: {n_built} groups (re)built")
        with summaries:
            rows = query_summaries(summaries, query, limit=limit)
        title = f"{len(rows)} summaries"
        table = summary_table
        if not rows and not build:
            console.print("no summaries stored: add --build to run the summary builder")
    else:
        with the_store:
            rows = query_docs(the_store, query, limit=limit, sort=sort)
        title = f"{len(rows)} defects"
        table = docs_table
    to_stdout = False
    for fmt, target in (("json", json_out), ("csv", csv_out)):
        if target is None:
            continue
        text = write_rows(rows, target, fmt)
        if text is not None:
            typer.echo(text, nl=not text.endswith("\n"))
            to_stdout = True
        else:
            console.print(f"wrote {len(rows)} rows to {target}")
    if not to_stdout:
        Console().print(table(rows, title=title))


def _checkpoint(value: str | None) -> str | None:
    from definet_flows.results import checkpoint_sha256

    return checkpoint_sha256(value)


@store_app.command("init")
@friendly_errors
def store_init(store: StoreLocation = None, store_config: StoreConfig = None) -> None:
    """Check that the results store answers and build its indexes (once per database).

    The embedded store is created if missing; montydb has no indexes (queries scan).
    """
    from definet_flows.stores import init_stores

    if store is not None and store_config is None:
        Path(store).expanduser().mkdir(parents=True, exist_ok=True)
    elif store is None and store_config is None:
        Path("definet_results").mkdir(exist_ok=True)
    done = init_stores(_open(store, store_config))
    for collection, fields in done.items():
        indexed = ", ".join(fields) if fields else "none (backend without indexes)"
        console.print(f"{collection}: indexes on {indexed}")


@fireworks_app.command("submit")
@friendly_errors
@with_spec_options
def fireworks_submit(
    spec: ValidationSpec,
    launchpad: Annotated[
        Path | None,
        typer.Option(help="my_launchpad.yaml (default: FireWorks' LAUNCHPAD_LOC)"),
    ] = None,
    fworker: Annotated[
        str | None, typer.Option(help="run only on the FireWorker of this name")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="run only on FireWorkers of this category")
    ] = None,
    priority: Annotated[int | None, typer.Option(help="FireWorks priority")] = None,
    check_engine: CheckEngineOpt = True,
    dry_run: DryRunOpt = False,
) -> None:
    """Convert the validation flow to a FireWorks workflow and add it to a LaunchPad."""
    from definet_flows.submit import describe, submit_fireworks

    flow, ids = submit_fireworks(
        spec,
        launchpad_file=launchpad,
        fworker=fworker,
        category=category,
        priority=priority,
        check_engine=check_engine,
        dry_run=dry_run,
    )
    console.print(describe(flow))
    if dry_run:
        console.print("dry run: all checks passed, nothing added to the LaunchPad")
    elif not ids:
        console.print("nothing to submit: every defect is already in the results store")
    else:
        new = sorted(ids.values())
        console.print(f"added workflow with {len(new)} fireworks (fw_ids {new[0]}-{new[-1]})")
