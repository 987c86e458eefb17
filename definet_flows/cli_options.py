"""Typer options that describe a validation run, declared once for every command that runs one.

``definet validate``, ``definet fireworks submit`` and ``jf flow submit`` (jobflow-remote
plugin) take either a spec file (``--spec``) or the fields of
:class:`~definet_flows.spec.ValidationSpec` as options; options given with ``--spec`` override
the file. :func:`with_spec_options` adds them to a command, which receives the built spec.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from definet_flows.spec import ValidationSpec

__all__ = [
    "BatchSizeOpt",
    "CheckEngineOpt",
    "CheckpointOpt",
    "DefectCountOpt",
    "DopantOpt",
    "DryRunOpt",
    "EngineOpt",
    "EngineSettingsOpt",
    "FmaxOpt",
    "ForceFieldOpt",
    "HostOpt",
    "MaxStepsOpt",
    "MinLengthOpt",
    "NOpt",
    "SeedOpt",
    "SpecOpt",
    "StoreOpt",
    "SupercellOpt",
    "VacanciesOpt",
    "parse_counts",
    "spec_from_options",
    "with_spec_options",
]

R = TypeVar("R")
_SPEC = "Validation spec"
SpecOpt = Annotated[
    Path | None,
    typer.Option("--spec", "-s", help="validation spec YAML (options below override it)"),
]
HostOpt = Annotated[
    str | None,
    typer.Option(help="built-in host (MoS2, ...) or host structure file", rich_help_panel=_SPEC),
]
SupercellOpt = Annotated[
    str | None, typer.Option(help="supercell, e.g. 4x4 or 3x3x3", rich_help_panel=_SPEC)
]
MinLengthOpt = Annotated[
    float | None,
    typer.Option(help="min. image distance (A) when no supercell", rich_help_panel=_SPEC),
]
NOpt = Annotated[
    int | None, typer.Option("--n", "-n", help="number of defect supercells", rich_help_panel=_SPEC)
]
VacanciesOpt = Annotated[
    bool | None,
    typer.Option("--vacancies/--no-vacancies", help="single vacancies", rich_help_panel=_SPEC),
]
DopantOpt = Annotated[
    list[str] | None,
    typer.Option("--dopant", help="substituting element (repeatable)", rich_help_panel=_SPEC),
]
DefectCountOpt = Annotated[
    list[str] | None,
    typer.Option(help="multi-defect draw, e.g. v_S=2 (repeatable)", rich_help_panel=_SPEC),
]
SeedOpt = Annotated[
    int | None, typer.Option(help="seed of the multi-defect draws", rich_help_panel=_SPEC)
]
EngineOpt = Annotated[
    str | None,
    typer.Option(help="relaxation engine: forcefield, vasp or cp2k", rich_help_panel=_SPEC),
]
ForceFieldOpt = Annotated[
    str | None,
    typer.Option(help="forcefield engine: CHGNet, SevenNet, EMT, ...", rich_help_panel=_SPEC),
]
FmaxOpt = Annotated[float | None, typer.Option(help="force criterion, eV/A", rich_help_panel=_SPEC)]
MaxStepsOpt = Annotated[int | None, typer.Option(help="ionic step cap", rich_help_panel=_SPEC)]
EngineSettingsOpt = Annotated[
    str | None,
    typer.Option(
        help="engine settings as JSON/YAML or a file, e.g. '{fmax: 0.05}'", rich_help_panel=_SPEC
    ),
]
CheckpointOpt = Annotated[
    str | None,
    typer.Option(help="DefiNet checkpoint (default: shipped weights)", rich_help_panel=_SPEC),
]
BatchSizeOpt = Annotated[
    int | None, typer.Option(help="structures per DefiNet pass", rich_help_panel=_SPEC)
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        help="results store: a directory (embedded) or a store config file (MongoDB)",
        rich_help_panel=_SPEC,
    ),
]
CheckEngineOpt = Annotated[
    bool,
    typer.Option(
        "--check-engine/--no-check-engine",
        help="check that the engine runs on this machine (off: it runs only on the cluster)",
    ),
]
DryRunOpt = Annotated[bool, typer.Option(help="check and build the flow, submit nothing")]


def parse_counts(items: list[str] | None) -> dict[str, int] | None:
    """Parse ``["v_S=2", "W_Mo=1"]`` (or ``["v_S=2,W_Mo=1"]``) into ``{"v_S": 2, "W_Mo": 1}``.

    Raises
    ------
    ValueError
        On a malformed item.
    """
    if not items:
        return None
    counts = {}
    for item in (p.strip() for text in items for p in text.split(",") if p.strip()):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise ValueError(f"--defect-count {item!r}: use NAME=COUNT, e.g. v_S=2 or W_Mo=1")
        counts[name.strip()] = int(value)
    return counts


def spec_from_options(
    spec: SpecOpt = None,
    host: HostOpt = None,
    supercell: SupercellOpt = None,
    min_length: MinLengthOpt = None,
    n: NOpt = None,
    vacancies: VacanciesOpt = None,
    dopant: DopantOpt = None,
    defect_count: DefectCountOpt = None,
    seed: SeedOpt = None,
    engine: EngineOpt = None,
    force_field: ForceFieldOpt = None,
    fmax: FmaxOpt = None,
    max_steps: MaxStepsOpt = None,
    engine_settings: EngineSettingsOpt = None,
    checkpoint: CheckpointOpt = None,
    batch_size: BatchSizeOpt = None,
    store: StoreOpt = None,
) -> ValidationSpec:
    """Return the ValidationSpec of the command-line options (see :func:`submit.load_spec`).

    The options and their meaning are those of ``definet validate``; ``engine_settings``
    (JSON/YAML text or file) is merged with ``force_field``, ``fmax`` and ``max_steps``.

    Raises
    ------
    definet_flows.submit.SubmissionError
        Invalid options or spec, with a one-line message.
    """
    from definet_flows.submit import SubmissionError, load_spec, parse_mapping

    try:
        counts = parse_counts(defect_count)
    except ValueError as exc:
        raise SubmissionError(str(exc)) from None
    settings = parse_mapping(engine_settings, "engine-settings") or {}
    shortcuts = {"force_field": force_field, "fmax": fmax, "max_steps": max_steps}
    settings |= {k: v for k, v in shortcuts.items() if v is not None}
    options: dict[str, Any] = {
        "host": host,
        "supercell": supercell,
        "min_length": min_length,
        "n": n,
        "vacancies": vacancies,
        "dopants": dopant or None,
        "defect_counts": counts,
        "seed": seed,
        "engine": engine,
        "engine_settings": settings or None,
        "checkpoint": checkpoint,
        "batch_size": batch_size,
        "store": store,
    }
    return load_spec(spec, **options)


def with_spec_options(command: Callable[..., R]) -> Callable[..., R]:
    """Give a typer command the options of :func:`spec_from_options`, first in its help.

    The command declares ``spec: ValidationSpec`` and its own options; it is called with the
    spec the options describe (built before the command runs, so a bad option fails first).
    """
    own = inspect.signature(command)
    if "spec" not in own.parameters:
        raise TypeError(f"{command.__name__} must take the built spec as `spec`")
    spec_params = _evaluated_parameters(spec_from_options)
    own_params = _evaluated_parameters(command, drop="spec")
    spec_names = [p.name for p in spec_params]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> R:
        options = {name: kwargs.pop(name) for name in spec_names}
        return command(spec=spec_from_options(**options), **kwargs)

    parameters = spec_params + own_params
    wrapper.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    # evaluated: the command's own string annotations name types imported only for checking
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # typer must read the signature above, not the command's
    return wrapper


def _evaluated_parameters(func: Callable, drop: str | None = None) -> list[inspect.Parameter]:
    """``func``'s parameters but ``drop``, string annotations evaluated as typer needs them."""
    return [
        p.replace(annotation=eval(p.annotation, func.__globals__))  # noqa: S307 - own source
        if isinstance(p.annotation, str)
        else p
        for p in inspect.signature(func).parameters.values()
        if p.name != drop
    ]
