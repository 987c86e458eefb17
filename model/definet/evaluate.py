"""Evaluate a checkpoint on a dataset split: per-host and overall coordinate errors."""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

from definet.checkpoint import file_sha256, load_model
from definet.data.dataset import load_split
from definet.data.hosts import graph_host_kind
from definet.inference import evaluate_graphs
from definet.nn.definet import OutOfDistributionWarning
from definet.predict import resolve_checkpoint
from definet.scope import TrainingScope

TABLE_COLUMNS = ("n", "mae", "dummy_mae", "ratio", "local_mae_3A", "displacement_error")


def evaluate_checkpoint(
    data_root: str | Path,
    split: str = "test",
    checkpoint: str | Path | None = None,
    hosts: list[str] | None = None,
    skip_bad: bool = False,
    batch_size: int = 16,
    progress: bool = True,
) -> dict:
    """``{"hosts": {...}, "overall": {...}, "checkpoint": ..., "split": ...}`` for one split."""
    checkpoint = resolve_checkpoint(checkpoint)
    model, graph_settings, metadata = load_model(checkpoint)
    graphs = load_split(
        data_root, split, settings=graph_settings, hosts=hosts, skip_bad=skip_bad, progress=progress
    )
    warn_out_of_distribution(graphs, TrainingScope.from_metadata(metadata), checkpoint.name)
    result = evaluate_graphs(model, graphs, batch_size=batch_size)
    result["checkpoint"] = str(checkpoint)
    result["checkpoint_sha256"] = file_sha256(checkpoint)
    result["split"] = split
    return result


def warn_out_of_distribution(graphs: list, scope: TrainingScope, checkpoint_name: str) -> None:
    """One ``OutOfDistributionWarning`` per host folder holding something the checkpoint never
    saw in training (element, kind of defect site, host)."""
    by_host: dict[str, list] = defaultdict(list)
    for graph in graphs:
        by_host[graph.host].append(graph)
    for host, members in sorted(by_host.items()):
        z = {int(v) for g in members for v in g.z.unique()}
        markers = {int(v) for g in members for v in g.marker.unique()}
        kinds = sorted({graph_host_kind(g) for g in members} - {None})
        parts = list(dict.fromkeys(p for k in kinds for p in scope.unseen(z, markers, k)))
        if parts:
            warnings.warn(
                f"{host}: {'; '.join(parts)} never seen in training by {checkpoint_name}"
                f"{scope.hosts_note(kinds)}: its figures are out of distribution",
                OutOfDistributionWarning,
                stacklevel=2,
            )


def format_table(result: dict) -> str:
    """Plain-text per-host table of an evaluation result."""
    header = f"{'host':<16}" + "".join(f"{c:>20}" for c in TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    rows = list(result["hosts"].items()) + [("overall", result["overall"])]
    for name, row in rows:
        cells = "".join(f"{row[c]:>20d}" if c == "n" else f"{row[c]:>20.4f}" for c in TABLE_COLUMNS)
        lines.append(f"{name:<16}{cells}")
    return "\n".join(lines)
