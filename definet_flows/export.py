"""Write relaxed pairs in the official DefiNet dataset layout, which ``definet train`` reads.

::

    <out>/<Host>.cif                          host unit cell (BN.cif for hBN, P.cif for BP)
    <out>/<Host>/train.csv val.csv test.csv   one column: atoms_id
    <out>/<Host>/CIF/<atoms_id>_unrelaxed.cif <atoms_id>_relaxed.cif

Pairs come from the pipeline's ``relaxed_pairs`` collection (:mod:`definet_flows.generate`),
from its ValidationDocs (the relaxation from the unrelaxed start) or from any atomate2 task
documents (input structure -> relaxed output). A pair's split is a hash of its id, so it
never changes when more pairs are exported later: the test set stays unseen. Relaxed
structures are written in the unrelaxed frame (rigid drift removed, see
:func:`in_unrelaxed_frame`).
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter

from definet.data.markers import MARKER_KEY, strip_vacancies

__all__ = [
    "SPLITS",
    "RelaxedPair",
    "assign_split",
    "export_pairs",
    "pairs_from_store",
    "pairs_from_task_docs",
]

SPLITS = ("train", "val", "test")
#: unit-cell file stem the dataset reader expects for a host folder name
UNIT_CELL_STEMS = {"hBN": "BN", "BP": "P"}


@dataclass(frozen=True)
class RelaxedPair:
    """One fixed-cell relaxation: same atoms, same order, same cell."""

    atoms_id: str
    host: str
    unit_cell: Structure
    unrelaxed: Structure
    relaxed: Structure


def assign_split(atoms_id: str, fractions: Mapping[str, float], seed: int = 0) -> str:
    """The split of ``atoms_id``: a stable hash in [0, 1) against cumulative ``fractions``."""
    total = sum(fractions.values())
    if total <= 0 or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be >= 0 and sum to > 0, got {dict(fractions)}")
    digest = hashlib.sha256(f"{seed}:{atoms_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, fraction in fractions.items():
        edge += fraction / total
        if u < edge:
            return name
    return list(fractions)[-1]


def _plain(structure: Structure) -> Structure:
    s = strip_vacancies(structure)
    for key in list(s.site_properties):
        s.remove_site_property(key)
    return s


def pairs_from_store(
    store: Any, criteria: dict | None = None, converged_only: bool = True
) -> Iterable[RelaxedPair]:
    """Completed pairs of a connected store of RelaxedPairDocs or ValidationDocs.

    Relaxations that hit the step cap end away from a minimum: they are left out unless
    ``converged_only`` is False.

    A ValidationDoc gives its unrelaxed structure and the relaxation from it (stored only
    with ``store_structures=True``). The host unit cell is the one stored with a
    RelaxedPairDoc, else the built-in host of that name.

    A defect gives one pair: the same relaxation met again (validation documents of several
    checkpoints) is skipped; relaxations of one defect with different engine settings raise
    ValueError, naming them (choose one with ``criteria={"settings_hash": ...}``).
    """
    from definet_flows.hosts import load_host

    cells: dict[str, Structure] = {}
    seen: dict[str, tuple[str, str]] = {}  # defect id -> (engine, settings hash)
    exported: set[str] = set()
    query = {"status": "completed", **(criteria or {})}
    for doc in store.query(criteria=query):
        how = (doc.get("engine", "?"), doc.get("settings_hash", "?"))
        first = seen.setdefault(doc["defect_id"], how)
        if first != how:
            raise ValueError(
                f"defect {doc['defect_id']} was relaxed with two engine settings ({first[0]} "
                f"{first[1][:12]}, {how[0]} {how[1][:12]}); export one of them "
                "(definet export --settings-hash PREFIX)"
            )
        if doc["defect_id"] in exported:
            continue
        if "relaxed_structure" in doc:  # RelaxedPairDoc
            unrelaxed = doc["entry"]["structure"]
            relaxed = doc["relaxed_structure"]
            converged = doc["relaxation"]["converged"]
        else:  # ValidationDoc
            unrelaxed, relaxed = doc.get("unrelaxed_structure"), doc.get("final_from_unrelaxed")
            converged = doc["from_unrelaxed"]["converged"]
        if converged_only and not converged:
            continue
        if unrelaxed is None or relaxed is None:
            continue
        host = doc["host"]
        if doc.get("host_unit_cell"):
            cells.setdefault(host, Structure.from_dict(doc["host_unit_cell"]))
        if host not in cells:
            try:
                cells[host] = load_host(host).structure
            except ValueError as exc:
                raise ValueError(f"document {doc['key']}: no unit cell for host ({exc})") from None
        exported.add(doc["defect_id"])
        yield RelaxedPair(
            atoms_id=doc["defect_id"],
            host=host,
            unit_cell=cells[host],
            unrelaxed=_plain(Structure.from_dict(unrelaxed)),
            relaxed=_plain(Structure.from_dict(relaxed)),
        )


def pairs_from_task_docs(
    docs: Iterable[Any], host: str | Path | Structure, id_field: str = "uuid"
) -> Iterable[RelaxedPair]:
    """Pairs from atomate2 task documents (force-field, VASP, CP2K): input -> output structure.

    Parameters
    ----------
    docs
        Task documents (models or dicts, e.g. from a jobflow store).
    host
        The host of every document (built-in name, unit-cell file or Structure).
    id_field
        Document field used as the atoms_id (falls back to a hash of the input structure).
    """
    from definet_flows.hosts import load_host

    unit_cell = load_host(host).structure
    host_name = (
        host if isinstance(host, str) and not Path(host).suffix else unit_cell.reduced_formula
    )
    for i, doc in enumerate(docs):
        d = doc if isinstance(doc, dict) else doc.model_dump()
        start, final = _structure(d, "input"), _structure(d, "output")
        if start is None or final is None:
            raise ValueError(
                f"task document {i}: expected input.structure and output.structure (VASP, "
                "CP2K) or input/output.mol_or_struct (force fields)"
            )
        atoms_id = str(d.get(id_field) or hashlib.sha256(start.to_json().encode()).hexdigest()[:16])
        yield RelaxedPair(atoms_id, str(host_name), unit_cell, _plain(start), _plain(final))


def _structure(doc: dict, part: str) -> Structure | None:
    """``doc[part]``'s structure: ``structure`` (emmet, CP2K) or ``mol_or_struct`` (ASE)."""
    section = doc.get(part)
    if not isinstance(section, dict):
        return None
    value = section.get("structure") or section.get("mol_or_struct")
    if isinstance(value, dict):
        value = Structure.from_dict(value)
    return value if isinstance(value, Structure) else None


def in_unrelaxed_frame(unrelaxed: Structure, relaxed: Structure) -> Structure:
    """``relaxed`` rigidly translated so that the mean displacement of its atoms is zero.

    A rigid translation of a periodic crystal is the same structure, but an optimizer can
    drift a whole slab (measured: 11 of 214 CHGNet-relaxed h-BN supercells moved by up to
    3.4 A in the plane), and DefiNet learns absolute coordinates in the unrelaxed frame.
    """
    d = relaxed.frac_coords - unrelaxed.frac_coords
    d -= np.round(d)
    return Structure(
        relaxed.lattice,
        relaxed.species,
        relaxed.frac_coords - d.mean(axis=0),
        site_properties=relaxed.site_properties,
    )


def _write_cif(structure: Structure, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CifWriter(structure).write_file(path)


def export_pairs(
    pairs: Iterable[RelaxedPair],
    out_dir: str | Path,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, int]]:
    """Write ``pairs`` in the official layout; rerunning adds new pairs and keeps old ones,
    each in the split it was listed in (``fractions`` and ``seed`` place only new pairs).

    Parameters
    ----------
    pairs
        The relaxed pairs.
    out_dir
        Dataset root.
    fractions
        Split fractions, default ``{"train": 0.8, "val": 0.1, "test": 0.1}``.
    seed
        Seed of the split hash.

    Returns
    -------
    dict
        Host folder -> split -> number of pairs listed.

    Raises
    ------
    ValueError
        A pair whose two structures differ in atoms or cell (named by its id), or two
        different unit cells for one host.
    """
    fractions = dict(fractions or {"train": 0.8, "val": 0.1, "test": 0.1})
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; valid: {', '.join(SPLITS)}")
    out = Path(out_dir)
    listed: dict[str, dict[str, set[str]]] = defaultdict(lambda: {s: set() for s in SPLITS})
    for folder in out.glob("*/CIF"):
        for split in SPLITS:
            csv_path = folder.parent / f"{split}.csv"
            if csv_path.is_file():
                rows = list(csv.reader(csv_path.open()))[1:]
                listed[folder.parent.name][split].update(r[0] for r in rows if r)
    cells_written: dict[str, Structure] = {}
    for pair in pairs:
        _check(pair)
        folder = out / pair.host / "CIF"
        folder.mkdir(parents=True, exist_ok=True)
        if pair.host not in cells_written:
            cell_path = out / f"{UNIT_CELL_STEMS.get(pair.host, pair.host)}.cif"
            if cell_path.is_file():
                old = Structure.from_file(cell_path)
                same_cell = np.allclose(  # CIF keeps lengths and angles, not orientation
                    old.lattice.parameters, pair.unit_cell.lattice.parameters, atol=1e-4
                )
                if not same_cell or len(old) != len(pair.unit_cell):
                    raise ValueError(
                        f"{cell_path}: holds another unit cell of {pair.host}; export to "
                        "another directory"
                    )
            else:
                _write_cif(pair.unit_cell, cell_path)
            cells_written[pair.host] = pair.unit_cell
        relaxed = in_unrelaxed_frame(pair.unrelaxed, pair.relaxed)
        for kind, structure in (("unrelaxed", pair.unrelaxed), ("relaxed", relaxed)):
            path = folder / f"{pair.atoms_id}_{kind}.cif"
            if not path.is_file():
                _write_cif(structure, path)
        if not any(pair.atoms_id in ids for ids in listed[pair.host].values()):
            # a pair listed before keeps its split, whatever the fractions now
            listed[pair.host][assign_split(pair.atoms_id, fractions, seed)].add(pair.atoms_id)
    counts = {}
    for host, splits in listed.items():
        counts[host] = {}
        for split, ids in splits.items():
            if not ids:  # the reader refuses an empty split file
                continue
            with open(out / host / f"{split}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["atoms_id"])
                writer.writerows([i] for i in sorted(ids))
            counts[host][split] = len(ids)
    return counts


def _check(pair: RelaxedPair) -> None:
    a, b = pair.unrelaxed, pair.relaxed
    if len(a) != len(b) or [s.symbol for s in a.species] != [s.symbol for s in b.species]:
        raise ValueError(f"pair {pair.atoms_id}: unrelaxed and relaxed atoms differ")
    if not (a.lattice.matrix.round(4) == b.lattice.matrix.round(4)).all():
        raise ValueError(f"pair {pair.atoms_id}: the cell changed (fixed-cell pairs expected)")
    if MARKER_KEY in a.site_properties:
        raise ValueError(f"pair {pair.atoms_id}: markers must be stripped before export")
