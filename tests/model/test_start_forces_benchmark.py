"""benchmarks/start_forces.py: figures against numpy, forces from a real CHGNet on real graphs."""

from __future__ import annotations

import numpy as np
import pytest

from definet.forcefield_loss import ForceFieldLoss
from tests.repo_scripts import load_benchmark

from .conftest import defect_graphs, tiny_checkpoint


def test_summary_shares_and_medians() -> None:
    bench = load_benchmark("start_forces")
    summary = bench.summarize({"A": [0.05, 0.12, 0.3], "B": [0.09]})
    assert summary["A"]["n"] == 3
    assert summary["A"]["median_max_force"] == pytest.approx(0.12)
    assert summary["A"]["share_below_0.1"] == pytest.approx(1 / 3)
    assert summary["A"]["share_below_0.15"] == pytest.approx(2 / 3)
    assert summary["all"]["n"] == 4
    assert summary["all"]["median_max_force"] == pytest.approx(np.median([0.05, 0.12, 0.3, 0.09]))


def test_forces_are_per_structure_real_atoms() -> None:
    from torch_geometric.data import Batch

    from definet.data.markers import VACANCY

    batch = Batch.from_data_list(defect_graphs(2))
    forces = ForceFieldLoss.named("CHGNet").forces(batch.y.float(), batch)
    assert [len(f) for f in forces] == [
        int(((batch.batch == i) & (batch.marker != VACANCY)).sum()) for i in range(2)
    ]
    assert all(f.shape[1] == 3 for f in forces)


def test_missing_dataset_is_named(tmp_path, capsys) -> None:
    bench = load_benchmark("start_forces")
    checkpoint = tiny_checkpoint(tmp_path / "m.pt")
    with pytest.raises(SystemExit) as stop:
        bench.main(["--checkpoint", str(checkpoint), "--data-root", str(tmp_path / "none")])
    assert stop.value.code == 2
    assert "none: no exported dataset (definet export)" in capsys.readouterr().err
