"""jobflow-remote plugin: ``jf flow submit`` sends a DefiNet validation to a worker.

jobflow-remote loads it through the entry point ``jobflow_remote.plugins`` (``definet =
"definet_flows.jf_plugin"``) and calls :func:`setup_jf_plugin`; ``jf plugin list`` shows it.

::

    jf -p definet flow submit --spec workflows/validate-mos2.yaml --worker cluster \\
        --resources '{"nodes": 1, "ntasks": 32, "time": "04:00:00"}'
    jf flow submit --host MoS2 --supercell 4x4 --n 20 --engine cp2k --no-check-engine \\
        --store workflows/store-mongodb.yaml --worker cluster --exec-config cp2k

Every check (spec, project, worker, exec config, job store, queue database, results store)
runs before the flow is inserted; a failure prints one red line and inserts nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Annotated

import typer

from definet_flows.cli_options import CheckEngineOpt, DryRunOpt, with_spec_options

if TYPE_CHECKING:
    from definet_flows.spec import ValidationSpec

__all__ = ["setup_jf_plugin", "submit"]

COMMAND_NAME = "submit"
_JFR = "jobflow-remote"


def _one_line_errors(command: Callable[..., None]) -> Callable[..., None]:
    """A failed check (SubmissionError) ends the command with one red line, jf's way."""

    @wraps(command)
    def wrapper(**kwargs) -> None:
        from jobflow_remote.cli.utils import exit_with_error_msg

        from definet_flows.submit import SubmissionError

        try:
            command(**kwargs)
        except SubmissionError as exc:
            exit_with_error_msg(f"Error: {exc}", soft_wrap=True)  # one line, never wrapped

    return wrapper


@_one_line_errors
@with_spec_options
def submit(
    spec: ValidationSpec,
    worker: Annotated[
        str | None,
        typer.Option(
            "--worker",
            "-w",
            help="worker (required if the project has several)",
            rich_help_panel=_JFR,
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            "--project", help="project (default: `jf -p` or the only one)", rich_help_panel=_JFR
        ),
    ] = None,
    exec_config: Annotated[
        str | None,
        typer.Option(
            "--exec-config", "-e", help="execution config of the project", rich_help_panel=_JFR
        ),
    ] = None,
    resources: Annotated[
        str | None,
        typer.Option(
            "--resources",
            "-r",
            help="scheduler resources as JSON/YAML or a file, e.g. '{nodes: 1, time: \"02:00:00\"}'",
            rich_help_panel=_JFR,
        ),
    ] = None,
    priority: Annotated[
        int, typer.Option(help="job priority in the queue", rich_help_panel=_JFR)
    ] = 0,
    jobstore: Annotated[
        str | None,
        typer.Option(help="one of the project's optional_jobstores", rich_help_panel=_JFR),
    ] = None,
    check_engine: CheckEngineOpt = True,
    dry_run: DryRunOpt = False,
) -> None:
    """Submit a DefiNet validation flow (spec file or options) to a jobflow-remote worker."""
    from jobflow_remote.cli.utils import out_console, print_success_msg

    from definet_flows.submit import describe, parse_mapping, submit_jobflow_remote

    flow, ids = submit_jobflow_remote(
        spec,
        worker=worker,
        project=project,
        exec_config=exec_config,
        resources=parse_mapping(resources, "resources"),
        priority=priority,
        jobstore=jobstore,
        check_engine=check_engine,
        dry_run=dry_run,
    )
    out_console.print(describe(flow))
    if dry_run:
        print_success_msg("dry run: all checks passed, nothing submitted")
    elif not ids:
        print_success_msg("nothing to submit: every defect is already in the results store")
    else:
        print_success_msg(
            f"submitted flow {flow.uuid} with {len(ids)} jobs (db_ids {ids[0]}-{ids[-1]})"
        )


def setup_jf_plugin() -> None:
    """Add ``submit`` to ``jf flow`` (once: ``jf plugin list`` calls this again)."""
    from jobflow_remote.cli.flow import app_flow

    if any(c.name == COMMAND_NAME for c in app_flow.registered_commands):
        return
    app_flow.command(name=COMMAND_NAME)(submit)
