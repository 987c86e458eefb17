"""benchmarks/defect_count.py: bins, ratios and correlation on hand-made errors; a real run."""

from __future__ import annotations

import json

import pytest

from definet.metrics import LOCAL_RADII, StructureErrors
from tests.flows.conftest import load_benchmark

from .conftest import tiny_checkpoint


def errors(host: str, mae: float, dummy: float) -> StructureErrors:
    zero = {r: 0.0 for r in LOCAL_RADII}
    return StructureErrors(host, "id", 10, mae, dummy, mae, zero, {r: 0 for r in LOCAL_RADII})


def test_bins_of_three_with_ratio_and_correlation() -> None:
    bench = load_benchmark("defect_count")
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


def test_runs_on_a_dataset_and_writes_json(tiny_dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEFINET_CACHE_DIR", str(tmp_path / "cache"))
    bench = load_benchmark("defect_count")
    out = tmp_path / "count.json"
    checkpoint = tiny_checkpoint(tmp_path / "m.pt")
    args = ["--checkpoint", str(checkpoint), "--data-root", str(tiny_dataset), "--json", str(out)]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    bins = result["hosts"]["MoS2_500"]["bins"]
    assert result["split"] == "val"
    assert sum(b["n"] for b in bins) > 0
    assert all(b["defects"][0] >= 1 and b["dummy_mae"] > 0 for b in bins)


def test_missing_dataset_is_named(tmp_path, capsys) -> None:
    bench = load_benchmark("defect_count")
    with pytest.raises(SystemExit):
        bench.main(["--data-root", str(tmp_path / "none")])
    assert "--data-root" in capsys.readouterr().err
