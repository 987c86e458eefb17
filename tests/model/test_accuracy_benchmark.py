"""benchmarks/accuracy.py: DefiNet's end-to-end timing sees the same input as its scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from definet.data.graphs import GraphSettings, structure_to_graph
from definet.data.markers import mark_defects, pristine_supercell
from definet.inference import predict_batch
from definet.predict import Predictor
from tests.repo_scripts import load_benchmark

from .conftest import make_defect_pair, mos2_unit_cell, tiny_checkpoint

SETTINGS = GraphSettings(4.0, 12)


@pytest.fixture(scope="module")
def accuracy():
    return load_benchmark("accuracy")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return tiny_checkpoint(path, seed=1, metadata={"elements": [16, 42, 74]})


def dataset_graph(seed: int):
    unrelaxed, _ = make_defect_pair(n=3, seed=seed)
    ideal = pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice)
    return structure_to_graph(mark_defects(unrelaxed, ideal), SETTINGS)


def test_marked_structure_rebuilds_the_graph(accuracy) -> None:
    graph = dataset_graph(seed=3)
    rebuilt = structure_to_graph(accuracy.marked_structure(graph), SETTINGS)
    assert torch.equal(rebuilt.z, graph.z)
    assert torch.equal(rebuilt.marker, graph.marker)
    assert (graph.marker == 2).sum() == 1  # the vacancy node survives the round trip
    assert torch.allclose(rebuilt.pos, graph.pos)
    assert rebuilt.edge_index.shape == graph.edge_index.shape


def test_timed_predictions_match_the_scored_ones(accuracy, checkpoint: Path) -> None:
    graph = dataset_graph(seed=4)
    predictor = Predictor(checkpoint, device="cpu")
    (relaxed,) = predictor.predict([accuracy.marked_structure(graph)], batch_size=1)
    with torch.no_grad():
        scored = predict_batch(predictor.model, Batch.from_data_list([graph])).double().numpy()
    real = (graph.marker != 2).numpy()
    assert np.allclose(relaxed.cart_coords, scored[real], atol=1e-5)
    seconds = accuracy.definet_seconds(predictor, [graph, dataset_graph(seed=5)])
    assert 0 < seconds < 10


def test_timing_keeps_the_median_pass(accuracy, monkeypatch) -> None:
    """One untimed warm-up call, then ``passes`` timed passes over the structures; a pass slowed
    by a pause of the machine does not decide the figure."""
    calls = []

    class CountingPredictor:
        def predict(self, structures, batch_size):
            calls.append(len(structures))

    clock = iter([0.0, 1.0, 10.0, 110.0, 200.0, 202.0])  # passes of 1 s, 100 s, 2 s
    monkeypatch.setattr(accuracy.time, "perf_counter", lambda: next(clock))
    graphs = [dataset_graph(seed=4), dataset_graph(seed=5)]
    seconds = accuracy.definet_seconds(CountingPredictor(), graphs, passes=3)
    assert calls == [1] * (1 + 3 * len(graphs))
    assert seconds == 2.0 / len(graphs)


def test_a_corrupt_chgnet_cache_is_named_not_overwritten(accuracy, tmp_path: Path) -> None:
    cache = tmp_path / "chgnet-val.json"
    cache.write_text('{"MoS2/a": {"mae": 0.1')  # cut off mid-write
    with pytest.raises(SystemExit, match="chgnet-val.json: not a CHGNet cache"):
        accuracy._read_cache(cache)
    assert cache.read_text() == '{"MoS2/a": {"mae": 0.1'
    assert accuracy._read_cache(tmp_path / "absent.json") == {}


def test_chgnet_side_relaxes_once_and_reuses_its_cache(accuracy, tmp_path, monkeypatch) -> None:
    unrelaxed, relaxed = make_defect_pair(n=3, seed=4)
    ideal = pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice)
    graph = structure_to_graph(mark_defects(unrelaxed, ideal), SETTINGS, relaxed=relaxed)
    graph.host, graph.atoms_id = "MoS2_test", "s4"
    cache = tmp_path / "chgnet.json"
    first = accuracy.chgnet_side([graph], 1, cache)["MoS2_test"]  # a real CHGNet relaxation
    assert first["n"] == 1 and first["ids"] == ["s4"]
    assert 0 < first["mae"] < 1.0 and first["s_per_structure"] > 0
    monkeypatch.setattr(accuracy, "chgnet_relax", lambda *a, **k: pytest.fail("relaxed again"))
    again = accuracy.chgnet_side([graph], 1, cache)["MoS2_test"]
    assert again == first
