"""Reader for the official DefiNet dataset layout, with an on-disk graph cache.

Layout (a directory, or the ``.tar.gz`` archives of it)::

    <density>/                       e.g. high_density_defects/, low_density_defects/
      MoS2.cif ...                   host unit cells
      <host folder>/                 e.g. MoS2_500/, hBN_spin_500/, MoS2/
        train.csv val.csv test.csv   a column atoms_id (the official files have only it)
        CIF/ or CIF_POSCAR/          <atoms_id>_unrelaxed.cif, <atoms_id>_relaxed.cif

Parsed graphs are cached, keyed by the bytes of every file of the split and the graph settings,
so no epoch or later run parses a CIF twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing
import os
import tarfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Data

from definet.checkpoint import save_atomic
from definet.data.graphs import GraphSettings, structure_to_graph
from definet.data.hosts import host_formula
from definet.data.markers import VACANCY, mark_defects, pristine_supercell

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
STRUCTURE_DIRS = ("CIF", "CIF_POSCAR")


class DatasetError(ValueError):
    """A file of the dataset is missing, unreadable or inconsistent."""


class SkippedPairWarning(UserWarning):
    """A pair was skipped (``skip_bad``): the message names the file and the reason."""


class FarMoveWarning(UserWarning):
    """An atom moves further between a pair's two files than any DFT relaxation of the DefiNet
    set moved one: often two files that list the atoms in different orders."""


#: Largest move (A) of an atom between a pair's files that passes without a FarMoveWarning:
#: above the largest DFT move in the DefiNet training data (4.14 A, high-density set).
FAR_MOVE = 5.0


def default_cache_dir() -> Path:
    """``$DEFINET_CACHE_DIR``, else ``~/.cache/definet``."""
    return Path(os.environ.get("DEFINET_CACHE_DIR", Path.home() / ".cache" / "definet"))


@dataclass(frozen=True)
class HostFolder:
    """One host folder of the dataset: its split files, structure dir and unit cell."""

    path: Path
    unit_cell: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def structure_dir(self) -> Path:
        for name in STRUCTURE_DIRS:
            if (self.path / name).is_dir():
                return self.path / name
        raise DatasetError(f"{self.path}: no {' or '.join(STRUCTURE_DIRS)} directory")

    def ids(self, split: str) -> list[str]:
        csv_path = self.path / f"{split}.csv"
        if not csv_path.is_file():
            raise DatasetError(f"{csv_path}: split file not found")
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
        header = [name.strip() for name in rows[0]] if rows else []
        if "atoms_id" not in header:
            raise DatasetError(f"{csv_path}: expected a header with 'atoms_id', got {rows[:1]}")
        column = header.index("atoms_id")
        ids = [row[column].strip() for row in rows[1:] if len(row) > column and row[column].strip()]
        if not ids:
            raise DatasetError(f"{csv_path}: the split file lists no atoms_id")
        return ids

    def pair_paths(self, atoms_id: str) -> tuple[Path, Path]:
        folder = self.structure_dir
        return folder / f"{atoms_id}_unrelaxed.cif", folder / f"{atoms_id}_relaxed.cif"


def extract_archive(archive: Path, cache_dir: Path | None = None) -> Path:
    """Extract a dataset ``.tar.gz`` once into the cache; return the extracted directory.

    Keyed by the archive's bytes, so a copy or a new timestamp (a fresh mount) reuses it.
    """
    try:
        with open(archive, "rb") as handle:
            key = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise DatasetError(f"{archive}: cannot read archive ({exc})") from exc
    target = (cache_dir or default_cache_dir()) / "extracted" / f"{archive.name}-{key[:12]}"
    done = target / ".complete"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise DatasetError(f"{archive}: cannot extract ({exc})") from exc
        done.touch()
    return target


def _resolve_unit_cell(host_path: Path) -> Path:
    stem = host_formula(host_path.name)
    candidate = host_path.parent / f"{stem}.cif"
    if candidate.is_file():
        return candidate
    raise DatasetError(
        f"{host_path}: no host unit cell {candidate.name} beside it "
        f"(found {sorted(p.name for p in host_path.parent.glob('*.cif'))})"
    )


def find_host_folders(
    root: str | Path, split: str, cache_dir: Path | None = None
) -> list[HostFolder]:
    """All host folders under ``root`` (dirs or ``.tar.gz`` archives) that have ``<split>.csv``."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset root not found")
    archives = [root] if root.is_file() else sorted(root.glob("*.tar.gz"))
    roots = [extract_archive(a, cache_dir) for a in archives] + ([root] if root.is_dir() else [])
    folders: dict[str, HostFolder] = {}
    for base in roots:
        for csv_path in sorted(base.rglob(f"{split}.csv")):
            path = csv_path.parent
            if not any((path / d).is_dir() for d in STRUCTURE_DIRS):
                continue
            folders.setdefault(
                str(path.relative_to(base)), HostFolder(path, _resolve_unit_cell(path))
            )
    if not folders:
        raise DatasetError(f"{root}: no host folder with {split}.csv and a CIF directory")
    return list(folders.values())


def read_structure(path: Path) -> Structure:
    """Read a CIF, naming the file in any error."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(path)
    except Exception as exc:  # pymatgen raises many types for bad CIFs
        raise DatasetError(f"{path}: unreadable CIF ({type(exc).__name__}: {exc})") from exc
    if not structure.is_ordered:
        raise DatasetError(f"{path}: partial occupancies; one element per site expected")
    return structure


def check_pair(unrelaxed: Structure, relaxed: Structure, name: str) -> None:
    """Same atom count, species order and cell, or a DatasetError naming the pair."""
    if len(unrelaxed) != len(relaxed):
        raise DatasetError(f"{name}: {len(unrelaxed)} unrelaxed atoms but {len(relaxed)} relaxed")
    if [s.symbol for s in unrelaxed.species] != [s.symbol for s in relaxed.species]:
        raise DatasetError(f"{name}: unrelaxed and relaxed species order differ")
    if not np.allclose(unrelaxed.lattice.matrix, relaxed.lattice.matrix, atol=1e-3):
        raise DatasetError(
            f"{name}: unrelaxed and relaxed cells differ (fixed-cell pairs expected)"
        )


def load_pair_graph(folder: HostFolder, atoms_id: str, settings: GraphSettings) -> Data:
    """Parse, check and mark one pair; return its graph with relaxed targets."""
    unrelaxed_path, relaxed_path = folder.pair_paths(atoms_id)
    unrelaxed = read_structure(unrelaxed_path)
    relaxed = read_structure(relaxed_path)
    check_pair(unrelaxed, relaxed, f"{folder.structure_dir}/{atoms_id}")
    unit = read_structure(folder.unit_cell)
    try:
        pristine = pristine_supercell(unit, lattice=unrelaxed.lattice)
        marked = mark_defects(unrelaxed, pristine)
    except ValueError as exc:
        raise DatasetError(f"{unrelaxed_path}: {exc}") from exc
    data = structure_to_graph(marked, settings, relaxed=relaxed)
    data.host = folder.name
    data.atoms_id = atoms_id
    return data


def _load_safe(args: tuple[HostFolder, str, GraphSettings]) -> dict | str:
    """Worker: the graph as plain numpy arrays (tensors would travel as file descriptors)."""
    try:
        return _graph_to_plain(load_pair_graph(*args))
    except DatasetError as exc:
        return str(exc)
    except Exception as exc:  # anything else in one pair still names the pair
        folder, atoms_id, _ = args
        return f"{folder.structure_dir}/{atoms_id}: {type(exc).__name__}: {exc}"


def _split_key(folder: HostFolder, split: str, ids: Sequence[str], settings: GraphSettings) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_FORMAT, settings.as_dict(), split]).encode())
    digest.update(folder.unit_cell.read_bytes())
    for atoms_id in ids:
        for path in folder.pair_paths(atoms_id):
            digest.update(path.name.encode())
            digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()[:16]


_TENSOR_KEYS = ("z", "marker", "pos", "cell", "edge_index", "edge_image", "y")


def _graph_to_plain(graph: Data) -> dict:
    return {k: graph[k].numpy() for k in _TENSOR_KEYS} | {
        "host": graph.host,
        "atoms_id": graph.atoms_id,
    }


def _graph_from_plain(plain: dict) -> Data:
    return Data(
        **{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in plain.items()}
    )


def _save_graphs(graphs: list[Data], path: Path) -> None:
    payload = {
        "format": CACHE_FORMAT,
        "graphs": [
            {k: g[k] for k in _TENSOR_KEYS} | {"host": g.host, "atoms_id": g.atoms_id}
            for g in graphs
        ],
    }
    save_atomic(payload, path)  # two trainings may build the same cache entry at once


def _load_graphs(path: Path) -> list[Data]:
    payload = torch.load(path, weights_only=True)
    return [Data(**g) for g in payload["graphs"]]


def _parse_all(jobs: list, workers: int, desc: str, progress: bool) -> list[dict | str]:
    """Parse pairs in worker processes (spawned: forking after torch ran threads can hang)."""
    from definet.progress import progress_bar

    if workers <= 1 or len(jobs) < 64:
        return [_load_safe(job) for job in progress_bar(jobs, enabled=progress, desc=desc)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(
            progress_bar(
                pool.map(_load_safe, jobs, chunksize=16),
                enabled=progress,
                total=len(jobs),
                desc=desc,
            )
        )


def load_split(
    root: str | Path,
    split: str,
    settings: GraphSettings | None = None,
    hosts: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    skip_bad: bool = False,
    workers: int = 2,
    progress: bool = True,
) -> list[Data]:
    """Graphs of every pair in ``split`` under ``root``, from the cache where possible.

    Parameters
    ----------
    root
        Dataset root: a directory in the official layout, a density directory, or a directory
        holding the ``.tar.gz`` archives.
    split
        ``train``, ``val`` or ``test``.
    hosts
        Host folder names to keep (e.g. ``["MoS2_500", "hBN_spin_500"]``); all when omitted.
    skip_bad
        Report and skip unreadable or inconsistent pairs instead of raising.
    """
    settings = settings or GraphSettings()
    cache_dir = cache_dir or default_cache_dir()
    folders = find_host_folders(root, split, cache_dir)
    if hosts is not None:
        unknown = set(hosts) - {f.name for f in folders}
        if unknown:
            raise DatasetError(
                f"{root}: no host folder named {sorted(unknown)} for split {split!r} "
                f"(found {sorted(f.name for f in folders)})"
            )
        folders = [f for f in folders if f.name in hosts]
    graphs: list[Data] = []
    for folder in folders:
        ids = folder.ids(split)
        cache_file = (
            cache_dir
            / "graphs"
            / f"{folder.name}-{split}-{_split_key(folder, split, ids, settings)}.pt"
        )
        if cache_file.exists():
            graphs.extend(_load_graphs(cache_file))
            continue
        jobs = [(folder, atoms_id, settings) for atoms_id in ids]
        results = _parse_all(jobs, workers, f"parse {folder.name}/{split}", progress)
        bad = [r for r in results if isinstance(r, str)]
        if bad and not skip_bad:
            raise DatasetError(bad[0] + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
        for message in bad:
            warnings.warn(f"skipped: {message}", SkippedPairWarning, stacklevel=2)
        good = [_graph_from_plain(r) for r in results if not isinstance(r, str)]
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        if not bad:  # only complete splits are cached, so a fixed file is picked up next time
            _save_graphs(good, cache_file)
        graphs.extend(good)
    warn_far_moves(graphs)
    return graphs


def warn_far_moves(graphs: Sequence[Data], limit: float = FAR_MOVE) -> None:
    """One FarMoveWarning per pair in which a real atom moves more than ``limit`` A."""
    for graph in graphs:
        real = graph.marker != VACANCY
        moves = (graph.y[real] - graph.pos[real]).norm(dim=-1)  # targets are unwrapped
        if len(moves) and float(moves.max()) > limit:
            warnings.warn(
                f"{graph.host}/{graph.atoms_id}: an atom moves {float(moves.max()):.1f} A "
                f"between the unrelaxed and relaxed files (more than {limit} A, further than "
                "any DFT relaxation of the DefiNet set moved one): check that both list the "
                "atoms in the same order",
                FarMoveWarning,
                stacklevel=2,
            )
