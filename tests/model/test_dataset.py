"""Dataset reader: official layout, archives, checks with clear errors, cache reuse."""

from __future__ import annotations

import os
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter
from pymatgen.util.coord import pbc_diff

import definet.data.dataset as dataset
from definet.data.dataset import (
    DatasetError,
    FarMoveWarning,
    SkippedPairWarning,
    find_host_folders,
    load_split,
)
from definet.data.graphs import GraphSettings

SETTINGS = GraphSettings(cutoff=4.0, max_neighbors=12)


def test_reads_layout_marks_and_unwraps(tiny_dataset: Path, tmp_path: Path) -> None:
    graphs = load_split(
        tiny_dataset, "train", SETTINGS, cache_dir=tmp_path / "c", workers=1, progress=False
    )
    assert len(graphs) == 4
    for g in graphs:
        assert g.host == "MoS2_500"
        counts = np.bincount(g.marker.numpy(), minlength=4)
        assert counts.tolist() == [len(g.z) - 2, 1, 1, 0]  # one W_Mo, one V_S node
        assert g.z[-1] == 16  # the vacancy node (appended last) is the missing S
        disp = (g.y - g.pos).norm(dim=1)
        assert disp.max() < 1.0  # targets unwrapped to the image nearest the unrelaxed atom
        assert disp.max() > 0.01


def test_cache_is_reused_and_keyed_by_settings(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    cache = tmp_path / "c"
    first = load_split(tiny_dataset, "val", SETTINGS, cache_dir=cache, workers=1, progress=False)
    calls = []
    original = dataset.read_structure
    monkeypatch.setattr(dataset, "read_structure", lambda p: calls.append(p) or original(p))
    again = load_split(tiny_dataset, "val", SETTINGS, cache_dir=cache, workers=1, progress=False)
    assert calls == []  # no CIF parsed the second time
    assert all(
        np.array_equal(a.pos, b.pos) and np.array_equal(a.edge_index, b.edge_index)
        for a, b in zip(first, again, strict=True)
    )
    other = GraphSettings(cutoff=3.5, max_neighbors=6)
    monkeypatch.setattr(dataset, "read_structure", original)
    changed = load_split(tiny_dataset, "val", other, cache_dir=cache, workers=1, progress=False)
    assert changed[0].edge_index.shape[1] < first[0].edge_index.shape[1]
    assert len(list((cache / "graphs").glob("*.pt"))) == 2


def test_reads_tar_gz_archives(tiny_dataset: Path, tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    with tarfile.open(archives / "high_density_defects.tar.gz", "w:gz") as tar:
        tar.add(tiny_dataset / "high_density_defects", arcname="high_density_defects")
    graphs = load_split(
        archives, "test", SETTINGS, cache_dir=tmp_path / "c", workers=1, progress=False
    )
    assert [g.atoms_id for g in graphs] == ["MoS2_test_006", "MoS2_test_007"]
    # the same bytes under a new timestamp (a fresh mount of the data) are not extracted again
    os.utime(archives / "high_density_defects.tar.gz", (1, 1))
    again = load_split(archives, "test", SETTINGS, cache_dir=tmp_path / "c", progress=False)
    assert [g.atoms_id for g in again] == ["MoS2_test_006", "MoS2_test_007"]
    assert len(list((tmp_path / "c" / "extracted").iterdir())) == 1


def test_root_with_only_test_split(tiny_dataset: Path, tmp_path: Path) -> None:
    host = tiny_dataset / "high_density_defects" / "MoS2_500"
    (host / "train.csv").unlink()
    (host / "val.csv").unlink()
    assert [f.name for f in find_host_folders(tiny_dataset, "test", tmp_path)] == ["MoS2_500"]
    with pytest.raises(DatasetError, match="no host folder with train.csv"):
        find_host_folders(tiny_dataset, "train", tmp_path)


def test_mismatched_pair_names_the_file(tiny_dataset: Path, tmp_path: Path) -> None:
    folder = tiny_dataset / "high_density_defects" / "MoS2_500" / "CIF"
    relaxed = folder / "MoS2_test_004_relaxed.cif"
    other = folder / "MoS2_test_000_unrelaxed.cif"
    # an unrelaxed file of another structure with one atom more
    relaxed.write_text(other.read_text())
    text = (folder / "MoS2_test_005_unrelaxed.cif").read_text()
    (folder / "MoS2_test_005_relaxed.cif").write_text(
        text.replace("_cell_length_a", "_cell_length_a 9.9\n#", 1)
    )
    with pytest.raises(DatasetError, match="MoS2_test_00[45]"):
        load_split(
            tiny_dataset, "val", SETTINGS, cache_dir=tmp_path / "c", workers=1, progress=False
        )


def test_an_atom_moved_further_than_dft_ever_moved_one_is_named(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FarMoveWarning)
        load_split(
            tiny_dataset, "val", SETTINGS, cache_dir=tmp_path / "a", workers=1, progress=False
        )
    relaxed_path = (
        tiny_dataset / "high_density_defects" / "MoS2_500" / "CIF" / "MoS2_test_004_relaxed.cif"
    )
    relaxed = Structure.from_file(relaxed_path)
    relaxed.translate_sites([3], [0, 0, 6.0], frac_coords=False)  # as if another atom's place
    CifWriter(relaxed).write_file(relaxed_path)
    with pytest.warns(FarMoveWarning) as record:
        graphs = load_split(
            tiny_dataset, "val", SETTINGS, cache_dir=tmp_path / "b", workers=1, progress=False
        )
    assert len(graphs) == 2  # still read: a warning, not a refusal
    assert len(record) == 1
    assert str(record[0].message).startswith("MoS2_500/MoS2_test_004: an atom moves 6.0 A ")


def _not_a_cif(path: Path) -> None:
    path.write_text("this is not a CIF")


def _partly_occupied(path: Path) -> None:
    structure = Structure.from_file(path)
    structure.replace(0, {"Mo": 0.5, "W": 0.5})
    CifWriter(structure).write_file(path)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [(_not_a_cif, "unreadable"), (_partly_occupied, "partial occupancies")],
    ids=["not a CIF", "partial occupancies"],
)
def test_skip_bad_reports_and_continues(tiny_dataset: Path, tmp_path: Path, spoil, message) -> None:
    folder = tiny_dataset / "high_density_defects" / "MoS2_500" / "CIF"
    spoil(folder / "MoS2_test_004_unrelaxed.cif")
    with pytest.raises(DatasetError, match=f"MoS2_test_004_unrelaxed.cif.*{message}"):
        load_split(
            tiny_dataset, "val", SETTINGS, cache_dir=tmp_path / "c", workers=1, progress=False
        )
    with pytest.warns(SkippedPairWarning, match=f"MoS2_test_004_unrelaxed.cif.*{message}"):
        graphs = load_split(
            tiny_dataset,
            "val",
            SETTINGS,
            cache_dir=tmp_path / "c",
            workers=1,
            progress=False,
            skip_bad=True,
        )
    assert [g.atoms_id for g in graphs] == ["MoS2_test_005"]


def test_empty_split_file(tiny_dataset: Path, tmp_path: Path) -> None:
    (tiny_dataset / "high_density_defects" / "MoS2_500" / "test.csv").write_text("atoms_id\n")
    with pytest.raises(DatasetError, match="test.csv.*no atoms_id"):
        load_split(tiny_dataset, "test", SETTINGS, cache_dir=tmp_path / "c", progress=False)


def test_split_file_with_bom_crlf_and_extra_columns(tiny_dataset: Path, tmp_path: Path) -> None:
    """A split file saved by a spreadsheet (BOM, CRLF, more columns) reads by its header."""
    csv_path = tiny_dataset / "high_density_defects" / "MoS2_500" / "test.csv"
    ids = csv_path.read_text().split()[1:]
    rows = ["index,atoms_id,formula"] + [f"{i},{atoms_id},MoS2" for i, atoms_id in enumerate(ids)]
    csv_path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    graphs = load_split(tiny_dataset, "test", SETTINGS, cache_dir=tmp_path / "c", progress=False)
    assert [g.atoms_id for g in graphs] == ids


def test_split_file_without_atoms_id_column(tiny_dataset: Path, tmp_path: Path) -> None:
    (tiny_dataset / "high_density_defects" / "MoS2_500" / "test.csv").write_text("id\nMoS2_1\n")
    with pytest.raises(DatasetError, match="test.csv: expected a header with 'atoms_id'"):
        load_split(tiny_dataset, "test", SETTINGS, cache_dir=tmp_path / "c", progress=False)


def test_unknown_host_filter(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no host folder named.*Graphene"):
        load_split(tiny_dataset, "test", SETTINGS, hosts=["Graphene"], cache_dir=tmp_path)


@pytest.mark.needs_data
def test_shared_dataset_val_pairs(shared_data: Path, session_cache: Path) -> None:
    """A real host's val split parses, marks and matches the documented do-nothing MAE."""
    graphs = load_split(
        shared_data / "definet-dataset",
        "val",
        SETTINGS,
        hosts=["hBN_spin_500"],
        cache_dir=session_cache,
        progress=False,
    )
    assert len(graphs) == 50
    real = {g.atoms_id: (g.y - g.pos)[g.marker != 2].abs().mean().item() for g in graphs}
    # the same from the CIF files by pymatgen alone: minimum-image moves of every atom
    folder = shared_data / "definet-dataset" / "high_density_defects" / "hBN_spin_500"
    if not folder.is_dir():  # the archives, unpacked into the cache by the reader
        folder = next(f for f in session_cache.rglob("hBN_spin_500") if (f / "CIF").is_dir())
    for atoms_id in sorted(real)[:10]:
        unrelaxed = Structure.from_file(folder / "CIF" / f"{atoms_id}_unrelaxed.cif")
        relaxed = Structure.from_file(folder / "CIF" / f"{atoms_id}_relaxed.cif")
        moves = unrelaxed.lattice.get_cartesian_coords(
            pbc_diff(relaxed.frac_coords, unrelaxed.frac_coords)
        )
        assert real[atoms_id] == pytest.approx(np.abs(moves).mean(), rel=1e-5), atoms_id
    # README of the data: hBN's do-nothing MAE 0.037 A (all atoms of all splits); val's
    # structures average a little more
    assert 0.03 < np.mean(list(real.values())) < 0.05


def test_cache_entry_written_by_two_writers_at_once(tmp_path: Path, monkeypatch) -> None:
    """Two trainings building the same cache entry at once both succeed (no shared temp file)."""
    import torch
    from torch_geometric.data import Data

    graph = Data(
        z=torch.tensor([42, 16]),
        marker=torch.tensor([0, 2]),
        pos=torch.zeros(2, 3),
        y=torch.ones(2, 3),
        cell=torch.eye(3).unsqueeze(0),
        edge_index=torch.tensor([[0], [1]]),
        edge_image=torch.zeros(1, 3),
    )
    graph.host, graph.atoms_id = "MoS2", "a"
    path = tmp_path / "MoS2-train-x.pt"
    real_save = torch.save
    calls = []

    def save_while_another_writer_saves(obj, file, *args, **kwargs):
        calls.append(file)
        real_save(obj, file, *args, **kwargs)
        if len(calls) == 1:  # the other writer runs start to finish between save and rename
            dataset._save_graphs([graph], path)

    monkeypatch.setattr(dataset.torch, "save", save_while_another_writer_saves)
    dataset._save_graphs([graph], path)
    assert calls[0] != calls[1]
    loaded = dataset._load_graphs(path)
    assert loaded[0].atoms_id == "a" and torch.equal(loaded[0].y, graph.y)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
