"""The force-field loss terms: zero excess energy at the target, positive off it, blind to vacancy
nodes, forces that grow with a stretched bond, and training runs scored on the same objective."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from definet.data.markers import VACANCY
from definet.forcefield_loss import ForceFieldLoss
from definet.train import Trainer
from definet.train_config import TrainConfig

from .conftest import defect_graphs
from .test_train import config


@pytest.fixture(scope="module")
def force_field() -> ForceFieldLoss:
    return ForceFieldLoss.named("CHGNet")


def _batch(n: int = 2) -> Batch:
    return Batch.from_data_list(defect_graphs(n))


def test_excess_energy_is_zero_at_the_target_and_grows_off_it(force_field) -> None:
    batch = _batch()
    target = batch.y.float()
    assert abs(force_field(target, batch).excess_energy.item()) < 1e-5
    real = torch.nonzero(batch.marker != VACANCY).flatten()
    shift = torch.zeros_like(target).index_fill(0, real[:1], 0.15)  # one atom, 0.26 A
    gradients = []
    for displacement in (torch.zeros_like(target), shift):
        pred = target.clone().requires_grad_(True)
        excess = force_field(pred + displacement, batch).excess_energy
        excess.backward()
        gradients.append(pred.grad)
    assert excess.item() > 1e-4  # eV/atom, with the atom moved
    assert (gradients[1][real[0]] - gradients[0][real[0]]).abs().sum() > 1e-3  # its force changed
    untouched = batch.batch != batch.batch[real[0]]
    assert torch.equal(gradients[0][untouched], gradients[1][untouched])  # structures independent


def test_excess_energy_ignores_vacancy_nodes(force_field) -> None:
    batch = _batch()
    vacancies = batch.marker == VACANCY
    assert vacancies.any()
    moved = batch.y.float().clone()
    moved[vacancies] += 3.0
    assert abs(force_field(moved, batch).excess_energy.item()) < 1e-5


def test_residual_force_grows_off_the_target_and_trains_the_coordinates(force_field) -> None:
    batch = _batch(1)
    target = batch.y.float()
    real = torch.nonzero(batch.marker != VACANCY).flatten()
    at_target = force_field(target.clone().requires_grad_(True), batch, forces=True)
    pred = target.clone().requires_grad_(True)
    moved = pred + torch.zeros_like(pred).index_fill(0, real[:1], 0.15)
    off_target = force_field(moved, batch, forces=True)
    assert off_target.residual_force > at_target.residual_force + 0.01  # eV/A
    off_target.residual_force.backward()  # second derivatives of the force field
    assert pred.grad[real[0]].abs().sum() > 0
    assert force_field(target, batch).residual_force is None  # only computed when asked


@pytest.mark.parametrize("weights", [{"energy_loss_weight": 5.0}, {"force_loss_weight": 0.05}])
def test_training_with_force_field_terms_scores_the_same_objective(
    tmp_path: Path, weights: dict
) -> None:
    data = defect_graphs(3)
    cfg = config(tmp_path, epochs=1, **weights)
    best = Trainer(cfg, data[:2], data[2:], progress=False).fit()
    assert best.exists()
    record = next(
        json.loads(line)
        for line in (tmp_path / "log.jsonl").read_text().splitlines()
        if '"val"' in line
    )
    expected = (
        record["val_mae"]
        + weights.get("energy_loss_weight", 0.0) * record["val_excess_energy"]
        + weights.get("force_loss_weight", 0.0) * record.get("val_residual_force", 0.0)
    )
    assert record["val_score"] == pytest.approx(expected)
    assert ("val_residual_force" in record) == ("force_loss_weight" in weights)


def test_force_field_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="energy_loss_weight must be >= 0"):
        TrainConfig.from_dict({"energy_loss_weight": -0.1})
    with pytest.raises(ValueError, match="force_loss_weight must be >= 0"):
        TrainConfig.from_dict({"force_loss_weight": -0.1})
    with pytest.raises(ValueError, match="loss_force_field must be one of"):
        TrainConfig.from_dict({"force_loss_weight": 1.0, "loss_force_field": "MACE"})
