"""Query the results store: ValidationDocs (one row per defect) or the builder's summaries.

The query is a plain MongoDB filter, so it runs unchanged on the embedded ``MontyStore``,
on ``MemoryStore`` (mongomock) and on MongoDB; rows are flat dicts ready for a rich table,
JSON or CSV.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maggma.core import Store
    from rich.table import Table

__all__ = [
    "DOC_COLUMNS",
    "SUMMARY_COLUMNS",
    "ResultsQuery",
    "doc_rows",
    "parse_range",
    "query_docs",
    "query_summaries",
    "build_summaries",
    "docs_table",
    "checkpoint_sha256",
    "summary_rows",
    "summary_table",
    "write_rows",
]

#: (column, path in the ValidationDoc) of a results row
DOC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("defect_id", "defect_id"),
    ("host", "host"),
    ("defects", "defect_names"),
    ("engine", "engine"),
    ("status", "status"),
    ("steps_unrelaxed", "from_unrelaxed.n_ionic_steps"),
    ("steps_predicted", "from_predicted.n_ionic_steps"),
    ("steps_saved", "steps_saved"),
    ("converged_unrelaxed", "from_unrelaxed.converged"),
    ("converged_predicted", "from_predicted.converged"),
    ("energy_difference", "energy_difference"),
    ("same_minimum", "same_minimum"),
    ("definet_mae", "definet_mae"),
    ("baseline_mae", "baseline_mae"),
    ("out_of_distribution", "out_of_distribution"),
    ("checkpoint", "checkpoint_sha256"),
    ("key", "key"),
)
#: (column, path in the ValidationSummaryDoc) of a summary row
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("group_by", "group_by"),
    ("group", "group"),
    ("engine", "engine"),
    ("count", "count"),
    ("n_failed", "n_failed"),
    ("n_out_of_distribution", "n_out_of_distribution"),
    ("median_steps_unrelaxed", "steps_unrelaxed.median"),
    ("median_steps_predicted", "steps_predicted.median"),
    ("share_converged_unrelaxed", "share_converged_unrelaxed"),
    ("share_converged_predicted", "share_converged_predicted"),
    ("share_within_3_predicted", "share_within_3_predicted"),
    ("share_same_minimum", "share_same_minimum"),
    ("mean_energy_difference", "mean_energy_difference"),
    ("mean_definet_mae", "mean_definet_mae"),
    ("mean_baseline_mae", "mean_baseline_mae"),
    ("checkpoint", "checkpoint_sha256"),
    ("settings_hash", "settings_hash"),
)
_STARTS = ("unrelaxed", "predicted")
_SHA = re.compile(r"[0-9a-f]{1,64}")


def parse_range(text: str | None) -> tuple[int | None, int | None] | None:
    """Parse an inclusive integer range ``"MIN:MAX"``, ``"MIN:"``, ``":MAX"`` or ``"N"``.

    Raises
    ------
    ValueError
        If ``text`` is not of that form or MIN > MAX.
    """
    if text is None or text.strip() == "":
        return None
    parts = text.split(":")
    try:
        if len(parts) == 1:
            lo = hi = int(parts[0])
        elif len(parts) == 2:
            lo = int(parts[0]) if parts[0].strip() else None
            hi = int(parts[1]) if parts[1].strip() else None
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"bad step range {text!r}; use MIN:MAX, MIN:, :MAX or N") from None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"bad step range {text!r}: {lo} > {hi}")
    return lo, hi


def checkpoint_sha256(value: str | None) -> str | None:
    """Return a sha256 prefix: the hex string itself, or the sha256 of a checkpoint file or
    of shipped weights named as in ``definet predict --checkpoint`` (``"shipped"`` stands for
    the default weights).

    Raises
    ------
    ValueError
        If ``value`` is neither a hex prefix, nor an existing file, nor a shipped name.
    """
    if value is None:
        return None
    from definet.checkpoint import file_sha256
    from definet.predict import resolve_checkpoint

    if _SHA.fullmatch(value.lower()) and not Path(value).is_file():
        return value.lower()
    try:
        return file_sha256(resolve_checkpoint(None if value == "shipped" else value))
    except FileNotFoundError as exc:
        raise ValueError(
            f"--checkpoint {value!r} is neither a sha256 (prefix) nor a checkpoint file nor "
            f"shipped weights ({exc})"
        ) from None


def _in(values: Sequence[str] | None) -> dict | str | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else {"$in": list(values)}


@dataclass
class ResultsQuery:
    """Filters on ValidationDocs; every field left at its default matches everything.

    Parameters
    ----------
    hosts
        Host names (any of).
    defect_types
        Defect types (``vacancy``, ``substitution``, ``interstitial``); a document
        matches when it contains any of them.
    engines
        Relaxation engines (any of).
    converged
        ``True``: both relaxations converged; ``False``: at least one did not.
    same_minimum
        Whether both starts reached the same minimum.
    status
        ``"completed"`` or ``"failed"``.
    steps_unrelaxed, steps_predicted
        Inclusive ranges ``(min, max)`` (either may be None) of ionic steps from each start.
    checkpoint
        sha256 (or a prefix of it) of the DefiNet weights.
    """

    hosts: Sequence[str] = field(default_factory=list)
    defect_types: Sequence[str] = field(default_factory=list)
    engines: Sequence[str] = field(default_factory=list)
    converged: bool | None = None
    same_minimum: bool | None = None
    status: str | None = None
    steps_unrelaxed: tuple[int | None, int | None] | None = None
    steps_predicted: tuple[int | None, int | None] | None = None
    checkpoint: str | None = None

    def criteria(self) -> dict[str, Any]:
        """Return the MongoDB filter on ValidationDocs."""
        crit: dict[str, Any] = {}
        for key, values in (
            ("host", self.hosts),
            ("defect_types", self.defect_types),
            ("engine", self.engines),
        ):
            if (cond := _in(values)) is not None:
                crit[key] = cond
        if self.converged is True:
            crit.update({f"from_{s}.converged": True for s in _STARTS})
        elif self.converged is False:
            crit["$or"] = [{f"from_{s}.converged": False} for s in _STARTS]
        if self.same_minimum is not None:
            crit["same_minimum"] = self.same_minimum
        if self.status is not None:
            crit["status"] = self.status
        for start, rng in (
            ("unrelaxed", self.steps_unrelaxed),
            ("predicted", self.steps_predicted),
        ):
            if rng is None or rng == (None, None):
                continue
            cond = {}
            if rng[0] is not None:
                cond["$gte"] = rng[0]
            if rng[1] is not None:
                cond["$lte"] = rng[1]
            crit[f"from_{start}.n_ionic_steps"] = cond
        crit.update(self._checkpoint())
        return crit

    def summary_criteria(self) -> dict[str, Any]:
        """Return the filter on ValidationSummaryDocs (host and defect type select groups).

        Step, convergence, minimum and status filters apply to single documents only and
        are rejected here.
        """
        if any(
            v is not None
            for v in (
                self.converged,
                self.same_minimum,
                self.status,
                self.steps_unrelaxed,
                self.steps_predicted,
            )
        ):
            raise ValueError(
                "--summary takes only --host, --defect-type, --engine and --checkpoint filters"
            )
        crit: dict[str, Any] = {}
        if (cond := _in(self.engines)) is not None:
            crit["engine"] = cond
        groups = [
            {"group_by": g, "group": c}
            for g, values in (("host", self.hosts), ("defect_type", self.defect_types))
            if (c := _in(values)) is not None
        ]
        if len(groups) == 1:
            crit.update(groups[0])
        elif groups:
            crit["$or"] = groups
        crit.update(self._checkpoint())
        return crit

    def _checkpoint(self) -> dict[str, Any]:
        if not self.checkpoint:
            return {}
        if len(self.checkpoint) == 64:
            return {"checkpoint_sha256": self.checkpoint}
        return {"checkpoint_sha256": {"$regex": f"^{re.escape(self.checkpoint)}"}}


def _get(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _properties(columns: Iterable[tuple[str, str]]) -> list[str]:
    return sorted({path for _, path in columns})


def _rows(docs: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> list[dict]:
    return [{name: _get(doc, path) for name, path in columns} for doc in docs]


def doc_rows(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flatten ValidationDoc dicts into result rows (:data:`DOC_COLUMNS`)."""
    return _rows(docs, DOC_COLUMNS)


def summary_rows(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flatten ValidationSummaryDoc dicts into summary rows (:data:`SUMMARY_COLUMNS`)."""
    return _rows(docs, SUMMARY_COLUMNS)


def query_docs(
    store: Store, query: ResultsQuery | None = None, limit: int = 0, sort: str | None = None
) -> list[dict[str, Any]]:
    """Return the result rows of the ValidationDocs in ``store`` matching ``query``.

    Parameters
    ----------
    store
        Connected results store.
    query
        Filters (default: everything).
    limit
        At most this many rows (0: all).
    sort
        A column of :data:`DOC_COLUMNS`, ``-`` in front for descending order
        (default: by host, then defect id).
    """
    return doc_rows(
        store.query(
            criteria=(query or ResultsQuery()).criteria(),
            properties=_properties(DOC_COLUMNS),
            sort=_sort(sort, DOC_COLUMNS, ("host", "defect_id")),
            limit=limit,
        )
    )


def query_summaries(
    store: Store, query: ResultsQuery | None = None, limit: int = 0
) -> list[dict[str, Any]]:
    """Return the summary rows of the ValidationSummaryDocs in ``store`` matching ``query``."""
    return summary_rows(
        store.query(
            criteria=(query or ResultsQuery()).summary_criteria(),
            properties=_properties(SUMMARY_COLUMNS),
            sort={"group_by": 1, "group": 1, "engine": 1},
            limit=limit,
        )
    )


def _sort(
    sort: str | None, columns: Sequence[tuple[str, str]], default: Sequence[str]
) -> dict[str, int]:
    paths = dict(columns)
    if sort is None:
        return {paths[c]: 1 for c in default}
    name = sort.lstrip("-")
    if name not in paths:
        raise ValueError(f"cannot sort by {name!r}; use one of {', '.join(paths)}")
    return {paths[name]: -1 if sort.startswith("-") else 1}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _pair(a: Any, b: Any, fmt=None) -> str:
    fmt = fmt or _cell
    return f"{fmt(a)} -> {fmt(b)}"


def _varying(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    return len({str(r.get(column)) for r in rows}) > 1


def _table(rows, title, columns) -> Table:
    """``columns``: (header, justify, cell function, shown) for each candidate column."""
    from rich.table import Table

    table = Table(title=title)
    shown = [c for c in columns if c[3]]
    for header, justify, _, _ in shown:
        table.add_column(header, justify=justify)
    for r in rows:
        table.add_row(*(cell(r) for _, _, cell, _ in shown))
    return table


def docs_table(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """A compact rich table of result rows (engine, status and weights shown when they vary).

    Steps and convergence read "from the unrelaxed start -> from the DefiNet start"; JSON
    and CSV carry every column.
    """
    return _table(
        rows,
        title,
        [
            ("defect", "left", lambda r: (r["defect_id"] or "")[:8], True),
            ("host", "left", lambda r: _cell(r["host"]), True),
            ("defects", "left", lambda r: _cell(r["defects"]), True),
            ("engine", "left", lambda r: _cell(r["engine"]), _varying(rows, "engine")),
            ("status", "left", lambda r: _cell(r["status"]), _varying(rows, "status")),
            ("steps", "right", lambda r: _pair(r["steps_unrelaxed"], r["steps_predicted"]), True),
            (
                "converged",
                "right",
                lambda r: _pair(r["converged_unrelaxed"], r["converged_predicted"]),
                True,
            ),
            ("dE/eV", "right", lambda r: _cell(r["energy_difference"]), True),
            ("same min.", "right", lambda r: _cell(r["same_minimum"]), True),
            (
                "weights",
                "left",
                lambda r: (r["checkpoint"] or "-")[:8],
                _varying(rows, "checkpoint"),
            ),
        ],
    )


def summary_table(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """A compact rich table of summary rows (engine and weights shown when they vary).

    Median steps and shares converged read "unrelaxed start -> DefiNet start".
    """

    def group(r):
        prefix = {"all": "", "host": "host=", "defect_type": "type="}.get(r["group_by"], "")
        return f"{prefix}{r['group']}"

    return _table(
        rows,
        title,
        [
            ("group", "left", group, True),
            ("engine", "left", lambda r: _cell(r["engine"]), _varying(rows, "engine")),
            ("n", "right", lambda r: _cell(r["count"]), True),
            ("failed", "right", lambda r: _cell(r["n_failed"]), True),
            (
                "median steps",
                "right",
                lambda r: _pair(r["median_steps_unrelaxed"], r["median_steps_predicted"]),
                True,
            ),
            (
                "converged",
                "right",
                lambda r: _pair(
                    r["share_converged_unrelaxed"], r["share_converged_predicted"], _share
                ),
                True,
            ),
            ("<=3 steps", "right", lambda r: _share(r["share_within_3_predicted"]), True),
            ("same min.", "right", lambda r: _share(r["share_same_minimum"]), True),
            ("mean dE/eV", "right", lambda r: _cell(r["mean_energy_difference"]), True),
            (
                "weights",
                "left",
                lambda r: (r["checkpoint"] or "-")[:8],
                _varying(rows, "checkpoint"),
            ),
        ],
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def build_summaries(store: Store, summaries: Store) -> int:
    """Run the summary builder over ``store`` into ``summaries``; return groups rebuilt.

    The serial loop of maggma's ``Builder.run`` without its logging set-up.
    """
    from definet_flows.builders import ValidationSummaryBuilder

    builder = ValidationSummaryBuilder(store, summaries)
    builder.connect()
    items = [builder.process_item(item) for item in builder.get_items()]
    builder.update_targets(items)
    builder.finalize()
    return len(items)


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ";".join(map(str, value))
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | Path, fmt: str) -> str | None:
    """Write ``rows`` as ``"json"`` or ``"csv"`` to ``path`` (``"-"``: return the text).

    Returns
    -------
    str or None
        The text when ``path`` is ``"-"``.
    """
    if fmt == "json":
        text = json.dumps(list(rows), indent=2, default=str)
    elif fmt == "csv":
        buf = io.StringIO()
        fields = list(rows[0]) if rows else [c for c, _ in DOC_COLUMNS]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _plain(v) for k, v in row.items()} for row in rows)
        text = buf.getvalue()
    else:
        raise ValueError(f"unknown format {fmt!r}; use json or csv")
    if str(path) == "-":
        return text
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return None
