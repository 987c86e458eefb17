"""The excess force-field energy term: zero at the target, positive off it, blind to vacancy nodes,
and a training run that uses it scores its checkpoints on the same objective."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from definet.data.markers import VACANCY
from definet.energy_loss import ExcessEnergyLoss
from definet.train import TrainConfig, Trainer

from .test_train import config, graphs


@pytest.fixture(scope="module")
def excess_energy() -> ExcessEnergyLoss:
    return ExcessEnergyLoss.named("CHGNet")


def _batch(n: int = 2) -> Batch:
    return Batch.from_data_list(graphs(n))


def test_excess_energy_is_zero_at_the_target_and_grows_off_it(excess_energy) -> None:
    batch = _batch()
    target = batch.y.float()
    assert abs(excess_energy(target, batch).item()) < 1e-5
    real = torch.nonzero(batch.marker != VACANCY).flatten()
    shift = torch.zeros_like(target).index_fill(0, real[:1], 0.15)  # one atom, 0.26 A
    gradients = []
    for displacement in (torch.zeros_like(target), shift):
        pred = target.clone().requires_grad_(True)
        excess = excess_energy(pred + displacement, batch)
        excess.backward()
        gradients.append(pred.grad)
    assert excess.item() > 1e-4  # eV/atom, with the atom moved
    assert (gradients[1][real[0]] - gradients[0][real[0]]).abs().sum() > 1e-3  # its force changed
    untouched = batch.batch != batch.batch[real[0]]
    assert torch.equal(gradients[0][untouched], gradients[1][untouched])  # structures independent


def test_excess_energy_ignores_vacancy_nodes(excess_energy) -> None:
    batch = _batch()
    vacancies = batch.marker == VACANCY
    assert vacancies.any()
    moved = batch.y.float().clone()
    moved[vacancies] += 3.0
    assert abs(excess_energy(moved, batch).item()) < 1e-5


def test_training_with_energy_loss_scores_the_same_objective(tmp_path: Path) -> None:
    data = graphs(3)
    cfg = config(tmp_path, epochs=1, energy_loss_weight=5.0)
    best = Trainer(cfg, data[:2], data[2:], progress=False).fit()
    assert best.exists()
    record = next(
        json.loads(line)
        for line in (tmp_path / "log.jsonl").read_text().splitlines()
        if '"val"' in line
    )
    expected = record["val_mae"] + 5.0 * record["val_excess_energy"]
    assert record["val_score"] == pytest.approx(expected)


def test_energy_loss_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="energy_loss_weight must be >= 0"):
        TrainConfig.from_dict({"energy_loss_weight": -0.1})
    with pytest.raises(ValueError, match="energy_model must be one of"):
        TrainConfig.from_dict({"energy_loss_weight": 1.0, "energy_model": "MACE"})
