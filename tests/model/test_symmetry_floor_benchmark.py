"""benchmarks/symmetry_floor.py: symmetric moves are kept, symmetry-breaking ones removed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.repo_scripts import load_benchmark


def square_layer() -> tuple[np.ndarray, np.ndarray, list]:
    """A flat 3x3 square layer (2.5 A spacing, z = 5 in a 10 A cell), a substitution at (1, 1)."""
    cell = np.diag([7.5, 7.5, 10.0])
    pos = np.array([[2.5 * i, 2.5 * j, 5.0] for i in range(3) for j in range(3)])
    labels = [(6, 0)] * 9
    labels[4] = (7, 1)
    return pos, cell, labels


def test_symmetric_moves_are_kept_and_buckling_is_removed() -> None:
    bench = load_benchmark("symmetry_floor")
    pos, cell, labels = square_layer()
    operations = bench.symmetry_permutations(pos, cell, labels)
    assert len(operations) == 16  # 4/mmm about the substitution: 4-fold axis, mirrors, layer
    assert any(np.array_equal(perm, np.arange(9)) for _, perm in operations)
    breathing = np.zeros_like(pos)  # the four neighbours move 0.1 A towards the substitution
    for i in (1, 3, 5, 7):
        breathing[i] = 0.1 * (pos[4] - pos[i]) / np.linalg.norm(pos[4] - pos[i])
    assert np.allclose(bench.symmetric_part(breathing, operations), breathing)
    buckled = breathing.copy()
    buckled[4, 2] = (
        0.3  # the substitution leaves the flat layer: the mirror cannot tell up from down
    )
    kept = bench.symmetric_part(buckled, operations)
    assert np.allclose(kept, breathing)


def test_runs_on_a_dataset_and_writes_json(tiny_dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEFINET_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "floor.json"
    bench = load_benchmark("symmetry_floor")
    assert bench.main(["--data-root", str(tiny_dataset), "--json", str(out)]) == 0
    host = json.loads(out.read_text())["hosts"]["MoS2_500"]
    assert host["n"] == 2 and host["median_operations"] >= 1
    assert 0 <= host["floor_mae"] <= host["dummy_mae"]


def test_missing_dataset_is_named(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        load_benchmark("symmetry_floor").main(["--data-root", str(tmp_path / "none")])
    assert stop.value.code == 2
    assert "none: not found (the DefiNet dataset)" in capsys.readouterr().err
