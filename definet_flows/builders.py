"""maggma builder: ValidationDocs -> per-host and per-defect-type summaries.

Groups are always split by engine, engine settings and DefiNet checkpoint, so figures of
different engines or weights never mix. A document with several defect types counts in each
of their groups. The builder is incremental: a group is rebuilt only when its set of source
keys changed or one of its documents is newer than its summary; summaries of groups that
no longer exist are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from maggma.core import Builder
from monty.json import jsanitize

from definet_flows.schemas import StepStats, ValidationSummaryDoc

if TYPE_CHECKING:
    from maggma.core import Store

__all__ = ["GROUPINGS", "ValidationSummaryBuilder", "group_values", "summarize"]

#: supported groupings; "all" is the whole set of one engine/settings/checkpoint
GROUPINGS = ("all", "host", "defect_type")
PARTITION = ("engine", "settings_hash", "checkpoint_sha256")
#: fields the summaries need (no structures)
SUMMARY_FIELDS = [
    "key",
    "status",
    "host",
    "defect_types",
    "n_defects",
    "n_sites",
    *PARTITION,
    "from_unrelaxed",
    "from_predicted",
    "energy_difference",
    "same_minimum",
    "definet_mae",
    "baseline_mae",
    "out_of_distribution",
    "last_updated",
]
FAST_STEPS = 3


def group_values(doc: Mapping[str, Any], group_by: str) -> list[str]:
    """Return the groups of ``doc`` under ``group_by`` (several for multi-type defects)."""
    if group_by == "all":
        return ["all"]
    if group_by == "host":
        return [doc["host"]]
    if group_by == "defect_type":
        return sorted(set(doc["defect_types"]))
    raise ValueError(f"Unknown grouping {group_by!r}; use one of {GROUPINGS}")


def _steps(values: Sequence[float]) -> StepStats:
    if not values:
        return StepStats()
    arr = np.asarray(values, dtype=float)
    return StepStats(
        median=float(np.median(arr)), mean=float(arr.mean()), p90=float(np.percentile(arr, 90))
    )


def _share(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarize(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Statistics of a list of ValidationDoc dicts (the ValidationSummaryDoc figures).

    Steps: median, mean and 90th percentile (numpy, linear) from each start, over the
    relaxations that ran (a failed one has no step count); shares of converged relaxations
    and of those converged within 3 ionic steps, over all documents (a failed relaxation
    counts as not converged); mean energy difference (predicted minus unrelaxed start, eV);
    share reaching the same minimum; number of failed documents and of defects outside what
    the model saw in training.
    """
    out: dict[str, Any] = {
        "count": len(docs),
        "n_failed": sum(d.get("status") == "failed" for d in docs),
        "n_out_of_distribution": sum(bool(d.get("out_of_distribution")) for d in docs),
    }
    for start in ("unrelaxed", "predicted"):
        runs = [d[f"from_{start}"] for d in docs]
        out[f"steps_{start}"] = _steps(
            [r["n_ionic_steps"] for r in runs if r.get("n_ionic_steps") is not None]
        )
        out[f"share_converged_{start}"] = _share([bool(r["converged"]) for r in runs])
        out[f"share_within_3_{start}"] = _share(
            [bool(r["converged"]) and (r.get("n_ionic_steps") or 0) <= FAST_STEPS for r in runs]
        )
    out["mean_energy_difference"] = _mean([d["energy_difference"] for d in docs])
    out["share_same_minimum"] = _share([bool(d["same_minimum"]) for d in docs])
    out["mean_definet_mae"] = _mean([d.get("definet_mae") for d in docs])
    out["mean_baseline_mae"] = _mean([d.get("baseline_mae") for d in docs])
    return out


def _naive_ms(value: datetime | str) -> datetime:
    """UTC, naive, truncated to milliseconds (what MongoDB-like stores keep)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _summary_id(group_by: str, group: str, engine: str, settings: str, checkpoint: str) -> str:
    return f"{group_by}={group}|{engine}|{settings}|{checkpoint[:12]}"


class ValidationSummaryBuilder(Builder):
    """Summarise ValidationDocs per group into ValidationSummaryDocs.

    Parameters
    ----------
    validation
        Source store of ValidationDocs (key ``key``).
    summaries
        Target store of ValidationSummaryDocs (key ``summary_id``).
    group_by
        Groupings to build, from :data:`GROUPINGS`.
    query
        Optional filter on the source documents.
    delete_orphans
        Remove summaries of groups that have no source documents any more (only in a build
        without ``query``: a filtered build does not see the other groups' documents).
    """

    def __init__(
        self,
        validation: Store,
        summaries: Store,
        group_by: Sequence[str] = GROUPINGS,
        query: dict | None = None,
        delete_orphans: bool = True,
        **kwargs: Any,
    ) -> None:
        for g in group_by:
            if g not in GROUPINGS:
                raise ValueError(f"Unknown grouping {g!r}; use one of {GROUPINGS}")
        self.validation = validation
        self.summaries = summaries
        self.group_by = list(group_by)
        self.query = query or {}
        self.delete_orphans = delete_orphans
        self._orphans: list[str] = []
        super().__init__(sources=[validation], targets=[summaries], **kwargs)

    def ensure_indexes(self) -> None:
        """Index the summary key where the backend supports it."""
        with contextlib.suppress(NotImplementedError):  # montydb has no indexes
            self.summaries.ensure_index("summary_id", unique=True)

    def get_items(self) -> Iterator[dict[str, Any]]:
        """Yield ``{"meta": ..., "docs": [...]}`` for each group that needs rebuilding."""
        self.ensure_indexes()
        groups: dict[str, dict[str, Any]] = {}
        for doc in self.validation.query(criteria=self.query, properties=SUMMARY_FIELDS):
            part = [doc[p] for p in PARTITION]
            for group_by in self.group_by:
                for group in group_values(doc, group_by):
                    sid = _summary_id(group_by, group, *part)
                    meta = {"summary_id": sid, "group_by": group_by, "group": group}
                    groups.setdefault(
                        sid, {"meta": meta | dict(zip(PARTITION, part, strict=True)), "docs": []}
                    )
                    groups[sid]["docs"].append(doc)
        built = {
            d["summary_id"]: d
            for d in self.summaries.query(properties=["summary_id", "keys_hash", "last_updated"])
        }
        whole_store = self.delete_orphans and not self.query
        self._orphans = sorted(set(built) - set(groups)) if whole_store else []
        stale = []
        for sid, item in groups.items():
            keys = sorted(d["key"] for d in item["docs"])
            item["meta"]["keys_hash"] = hashlib.sha256("\n".join(keys).encode()).hexdigest()
            item["meta"]["last_updated"] = max(_naive_ms(d["last_updated"]) for d in item["docs"])
            old = built.get(sid)
            if (
                old is None
                or old.get("keys_hash") != item["meta"]["keys_hash"]
                or _naive_ms(old["last_updated"]) < item["meta"]["last_updated"]
            ):
                stale.append(item)
        self.total = len(stale)
        self.logger.info(f"{len(stale)} of {len(groups)} groups to (re)build")
        yield from stale

    def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """Return the summary document of one group."""
        doc = ValidationSummaryDoc(**item["meta"], **summarize(item["docs"]))
        return jsanitize(doc.model_dump(), strict=True, allow_bson=True)

    def update_targets(self, items: list[dict[str, Any]]) -> None:
        """Upsert summaries by ``summary_id``."""
        if items:
            self.summaries.update(items, key="summary_id")

    def finalize(self) -> None:
        """Remove orphaned summaries, then close the stores."""
        if self._orphans:
            self.summaries.remove_docs({"summary_id": {"$in": self._orphans}})
        super().finalize()
