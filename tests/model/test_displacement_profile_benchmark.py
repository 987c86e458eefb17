"""benchmarks/displacement_profile.py: bins and shares against hand-made displacements, defect-count
bins against hand-made errors, nearest-defect names on a hand-made cell; a real run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from definet.data.augment import site_keys
from definet.metrics import LOCAL_RADII, StructureErrors, nearest_defects
from tests.repo_scripts import load_benchmark

from .conftest import tiny_checkpoint


def test_profile_bins_shares_and_captured_move() -> None:
    bench = load_benchmark("displacement_profile")
    true = np.array([[0.01, 0, 0], [0.3, 0, 0], [0, 0.4, 0], [2.0, 0, 0]])
    moved = np.array([[0.01, 0, 0], [0.15, 0, 0], [0, 0.2, 0], [0.0, 0, 0]])
    rows = {tuple(r["bin"]): r for r in bench.profile(true, moved)}
    small, mid, large = rows[(0.0, 0.05)], rows[(0.2, 0.5)], rows[(1.0, None)]
    assert small["n_atoms"] == 1 and small["mean_error"] == 0 and small["move_captured"] == 1
    assert mid["n_atoms"] == 2 and mid["move_captured"] == pytest.approx(0.5)
    assert mid["mean_error"] == pytest.approx((0.15 + 0.2) / 3 / 2)
    assert large["move_captured"] == 0 and large["mean_error"] == pytest.approx(2 / 3)
    assert sum(r["share_of_atoms"] for r in rows.values()) == pytest.approx(1)
    assert sum(r["share_of_error"] for r in rows.values()) == pytest.approx(1)
    assert rows[(0.05, 0.1)]["n_atoms"] == 0 and rows[(0.05, 0.1)]["mean_error"] is None


def test_force_alignment_finds_a_force_that_explains_the_miss() -> None:
    bench = load_benchmark("displacement_profile")
    true = np.array([[0.3, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 0.1]])
    moved = true / 2
    explains = bench.force_alignment(true, moved, force=2 * (true - moved))
    assert explains["cos_force_miss"] == pytest.approx(1)
    assert explains["best_scale"] == pytest.approx(0.5)
    assert explains["error_left"] == pytest.approx(0, abs=1e-12)
    sideways = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    useless = bench.force_alignment(true, moved, force=sideways)
    assert useless["cos_force_miss"] == pytest.approx(0)
    assert useless["error_left"] == pytest.approx(1)


def errors(host: str, mae: float, dummy: float) -> StructureErrors:
    zero = {r: 0.0 for r in LOCAL_RADII}
    return StructureErrors(host, "id", 10, mae, dummy, mae, zero, {r: 0 for r in LOCAL_RADII})


def test_defect_count_bins_of_three_with_ratio_and_correlation() -> None:
    bench = load_benchmark("displacement_profile")
    rows = [
        (1, errors("A", 0.01, 0.10)),
        (3, errors("A", 0.03, 0.10)),
        (4, errors("A", 0.06, 0.10)),
        (9, errors("A", 0.09, 0.10)),
        (2, errors("B", 0.05, 0.10)),
    ]
    result = bench.by_defect_count(rows)
    bins = result["A"]["bins"]
    assert [b["defects"] for b in bins] == [[1, 3], [4, 6], [7, 9]]
    assert [b["n"] for b in bins] == [2, 1, 1]
    assert bins[0]["ratio"] == pytest.approx(0.2)
    assert bins[2]["mae"] == pytest.approx(0.09)
    assert result["A"]["correlation"] > 0.9  # more defects, worse ratio
    assert result["B"]["correlation"] is None  # one structure: no correlation


def test_nearest_defects_wrap_around_the_cell() -> None:
    cell = np.eye(3) * 10.0
    pos = np.array([[0.5, 0, 0], [9.5, 0, 0], [5.0, 0, 0], [3.0, 0, 0]])
    distance, index = nearest_defects(pos, np.array([0, 2, 0, 1]), cell)
    assert distance == pytest.approx([1.0, 0.0, 2.0, 0.0])  # atom 0 sees atom 1 across the edge
    assert index.tolist() == [1, 1, 3, 3]
    distance, index = nearest_defects(pos, np.zeros(4, dtype=int), cell)
    assert np.isinf(distance).all() and (index == -1).all()


def test_atoms_are_named_by_their_nearest_defect() -> None:
    """A Mo vacancy and W on a Mo site, S atoms near each and one far from both."""
    bench = load_benchmark("displacement_profile")
    pos = torch.tensor(
        [[1.0, 1, 1], [3.0, 1, 1], [9.0, 1, 1], [11.0, 1, 1], [15.0, 1, 1]], dtype=torch.float64
    )
    graph = Data(
        z=torch.tensor([42, 16, 74, 16, 16]),  # the vacancy node keeps its site's element
        marker=torch.tensor([2, 0, 1, 0, 0]),
        pos=pos,
        cell=torch.eye(3, dtype=torch.float64).unsqueeze(0) * 20.0,
    )
    keys = site_keys(graph)
    sites = {keys[0]: 42, keys[1]: 16, keys[3]: 16, keys[4]: 16}  # W's site unknown
    assert bench.defect_names(graph, sites) == ["v_Mo", "", "W_?", "", ""]
    sites[keys[2]] = 42
    names = bench.nearest_defect_names(graph, sites)
    assert names.tolist() == ["v_Mo", "W_Mo", "W_Mo", "far"]  # real atoms only


def test_nearest_defect_rows_share_and_ratio() -> None:
    bench = load_benchmark("displacement_profile")
    true = np.array([[0.2, 0, 0], [0.2, 0, 0], [0.1, 0, 0], [0.0, 0.1, 0]])
    moved = np.array([[0.1, 0, 0], [0.2, 0, 0], [0.1, 0, 0], [0.0, 0.0, 0]])
    names = np.array(["v_Mo", "v_Mo", "far", "far"], dtype=object)
    rows = {r["nearest_defect"]: r for r in bench.by_nearest_defect(true, moved, names)}
    assert rows["v_Mo"]["ratio"] == pytest.approx(0.1 / 0.4)
    assert rows["far"]["ratio"] == pytest.approx(0.1 / 0.2)
    assert rows["v_Mo"]["share_of_error"] == pytest.approx(0.5)
    assert rows["far"]["share_of_atoms"] == pytest.approx(0.5)


def test_runs_on_a_dataset_and_writes_json(tiny_dataset, tmp_path, monkeypatch) -> None:
    """With --start-forces: the real CHGNet at the unrelaxed structures of the tiny dataset."""
    monkeypatch.setenv("DEFINET_CACHE_DIR", str(tmp_path / "cache"))
    bench = load_benchmark("displacement_profile")
    out = tmp_path / "profile.json"
    checkpoint = tiny_checkpoint(tmp_path / "m.pt")
    args = ["--checkpoint", str(checkpoint), "--data-root", str(tiny_dataset), "--json", str(out)]
    assert bench.main([*args, "--start-forces"]) == 0
    result = json.loads(out.read_text())
    rows = result["hosts"]["MoS2_500"]
    assert result["split"] == "val"
    assert sum(r["n_atoms"] for r in rows) > 0
    assert sum(r["share_of_error"] for r in rows) == pytest.approx(1)
    bins = result["by_defect_count"]["MoS2_500"]["bins"]
    assert sum(b["n"] for b in bins) > 0
    assert all(b["defects"][0] >= 1 and b["dummy_mae"] > 0 for b in bins)
    near = result["by_nearest_defect"]["MoS2_500"]
    assert sum(r["share_of_error"] for r in near) == pytest.approx(1)
    assert sum(r["n_atoms"] for r in near) == sum(r["n_atoms"] for r in rows)
    assert {r["nearest_defect"] for r in near} <= {"far", "v_Mo", "v_S", "W_Mo", "Se_S"}
    forces = result["start_forces"]["MoS2_500"]
    assert -1 <= forces["cos_force_miss"] <= 1 and -1 <= forces["cos_force_move"] <= 1
    assert np.isfinite(forces["best_scale"]) and forces["error_left"] > 0


def test_missing_dataset_is_named(tmp_path, capsys) -> None:
    bench = load_benchmark("displacement_profile")
    with pytest.raises(SystemExit) as stop:
        bench.main(["--data-root", str(tmp_path / "none")])
    assert stop.value.code == 2
    assert "none: not found (the DefiNet dataset)" in capsys.readouterr().err
