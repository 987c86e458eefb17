"""The shipped file on real DFT structures: it is the routed mean of the members its model card
names, each on its own graphs, and it beats doing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from definet.checkpoint import load_model
from definet.data.dataset import load_split
from definet.data.markers import VACANCY
from definet.inference import predict_batch
from definet.predict import DEFAULT_CHECKPOINT

ROOT = Path(__file__).resolve().parents[2]
HOST = "hBN_spin_500"  # high density: served by member 2, the ensemble


def _val_graphs(shared_data: Path, settings, cache: Path) -> list:
    graphs = load_split(
        shared_data / "definet-dataset",
        "val",
        settings,
        hosts=[HOST],
        cache_dir=cache,
        progress=False,
    )
    return sorted(graphs, key=lambda g: g.atoms_id)[:4]


def _predict(model, graphs) -> torch.Tensor:
    with torch.no_grad():
        return predict_batch(model, Batch.from_data_list(graphs)).double()


@pytest.mark.needs_data
def test_shipped_file_is_the_mean_of_its_card_members(
    shared_data: Path, session_cache: Path
) -> None:
    shipped, served, _ = load_model(DEFAULT_CHECKPOINT)
    card = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    members = [m["checkpoint"] for m in card["members"][1]["ensemble"]]
    assert len(members) >= 2

    graphs_on = {served: _val_graphs(shared_data, served, session_cache)}
    graphs = graphs_on[served]
    predicted = _predict(shipped, graphs)
    own = []
    for path in members:
        model, settings, _ = load_model(ROOT / path)
        if settings not in graphs_on:
            graphs_on[settings] = _val_graphs(shared_data, settings, session_cache)
        own.append(_predict(model, graphs_on[settings]))
    assert torch.allclose(predicted, torch.stack(own).mean(0), atol=1e-4)

    batch = Batch.from_data_list(graphs)
    real = batch.marker != VACANCY
    target = batch.y.double()[real]
    model_mae = (predicted[real] - target).abs().mean()
    nothing_mae = (batch.pos.double()[real] - target).abs().mean()
    assert model_mae < 0.9 * nothing_mae
