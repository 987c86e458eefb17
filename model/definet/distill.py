"""Teacher-labelled training structures: a model's predictions as targets for new inputs.

An ensemble of DefiNets predicts better than any one of them but costs one forward per member.
A single student trained on the teacher's predictions for many more configurations than DFT
relaxed (:func:`definet.data.augment.shuffle_defects` of the training structures) learns the
teacher's map where the DFT data are sparse; training mixes these with the DFT-labelled
structures (``teacher`` in :class:`definet.train_config.TrainConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from definet.checkpoint import load_averaged, serve_on
from definet.data.augment import host_site_elements, shuffle_defects
from definet.data.graphs import GraphSettings
from definet.data.markers import VACANCY

#: Version of the :func:`save_teacher_labels` file layout.
LABELS_FORMAT = 1


def load_teacher(paths: str | Path | Sequence[str | Path], graph: GraphSettings) -> torch.nn.Module:
    """The teacher: one checkpoint, or the mean of several single-model ones
    (:func:`definet.checkpoint.load_averaged`).

    Raises
    ------
    ValueError
        When the teacher cannot run on the student's graphs (``graph``): it was trained on
        another cutoff or on more neighbours (:meth:`GraphSettings.cap_within`).
    """
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    model, settings, _ = load_averaged(paths)
    try:
        return serve_on(model, settings, graph)
    except ValueError as exc:
        others = f" (as are the other {len(paths) - 1} teacher files)" if len(paths) > 1 else ""
        raise ValueError(
            f"teacher {paths[0]}: trained on graph settings {settings.as_dict()}{others}, the "
            f"student on {graph.as_dict()}; the student's graphs must contain the teacher's"
        ) from exc


def teacher_labelled(
    teacher: torch.nn.Module,
    graphs: Sequence[Data],
    copies: int,
    seed: int = 0,
    batch_size: int = 16,
) -> list[Data]:
    """``copies`` defect-shuffled copies of every graph, their targets ``y`` predicted by
    ``teacher`` (vacancy nodes keep their sites, as in DFT-labelled graphs)."""
    from definet.inference import predicted_coordinates

    rng = np.random.default_rng(seed)
    sites = host_site_elements(graphs)
    shuffled = [
        shuffle_defects(graph, sites[graph.host], rng, tag=f"shuffled{k}")
        for k in range(copies)
        for graph in graphs
    ]
    for graph, y in zip(
        shuffled, predicted_coordinates(teacher, shuffled, batch_size), strict=True
    ):
        vacancy = graph.marker == VACANCY
        y[vacancy] = graph.pos[vacancy]
        graph.y = y
    return shuffled


def save_teacher_labels(labelled: Sequence[Data], path: Path, key: str) -> None:
    """Write what :func:`teacher_labelled` added to the source graphs (species, markers,
    targets), not the nodes and edges they share with them: ~6 kB instead of ~100 kB each."""
    from definet.checkpoint import save_atomic

    save_atomic(
        {
            "format": LABELS_FORMAT,
            "key": key,
            "labels": [
                {"host": g.host, "atoms_id": g.atoms_id, "z": g.z, "marker": g.marker, "y": g.y}
                for g in labelled
            ],
        },
        path,
    )


def load_teacher_labels(path: Path, key: str, graphs: Sequence[Data]) -> list[Data] | None:
    """The graphs :func:`save_teacher_labels` wrote, rebuilt on their source ``graphs``;
    ``None`` when the file was made from another teacher, copies or seed, in another format,
    or from graphs not among ``graphs``."""
    payload = torch.load(path, weights_only=True)
    if payload.get("format") != LABELS_FORMAT or payload.get("key") != key:
        return None
    sources = {(g.host, g.atoms_id): g for g in graphs}
    labelled = []
    for label in payload["labels"]:
        source = sources.get((label["host"], label["atoms_id"].rsplit("~", 1)[0]))
        if source is None:
            return None
        graph = Data(
            z=label["z"],
            marker=label["marker"],
            y=label["y"],
            pos=source.pos,
            cell=source.cell,
            edge_index=source.edge_index,
            edge_image=source.edge_image,
        )
        graph.host, graph.atoms_id = label["host"], label["atoms_id"]
        labelled.append(graph)
    return labelled


def teacher_key(paths: Sequence[str | Path], copies: int, seed: int) -> str:
    """What teacher-labelled graphs were made from: each teacher file's sha256, copies, seed."""
    from definet.checkpoint import file_sha256

    digests = ",".join(file_sha256(p) for p in paths)
    return f"teacher={digests};copies={copies};seed={seed}"


def cached_teacher_labelled(
    cache: Path,
    paths: str | Path | Sequence[str | Path],
    graphs: Sequence[Data],
    copies: int,
    graph: GraphSettings,
    seed: int = 0,
) -> list[Data]:
    """:func:`teacher_labelled` graphs, read from ``cache`` when it holds those of the same
    teacher files, copies and seed, else made and written there (so a resumed run trains on
    the same ones without predicting them again)."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"teacher: no checkpoint at {', '.join(missing)}")
    key = teacher_key(paths, copies, seed)
    if cache.exists():
        labelled = load_teacher_labels(cache, key, graphs)
        if labelled is not None:
            return labelled
    labelled = teacher_labelled(load_teacher(paths, graph), graphs, copies, seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_teacher_labels(labelled, cache, key)
    return labelled
