"""definet.inference: the one prediction path (eval mode, inference mode, float64 copies)."""

from __future__ import annotations

import pytest
import torch

from definet.inference import predicted_coordinates
from definet.nn import DefiNetConfig

from .conftest import defect_graphs


def test_prediction_switches_to_eval_mode_only_once(monkeypatch) -> None:
    """A model in training mode predicts in eval mode; one already in eval mode is not walked
    again on every call (``Module.eval`` recursed through every submodule of the shipped
    ensemble per predicted structure: 11 of 39 ms on a low-density structure)."""
    from definet.nn import DefiNet

    model = DefiNet(DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0)).train()
    batch = defect_graphs(2)
    first = predicted_coordinates(model, batch, batch_size=2)
    assert not model.training and not any(m.training for m in model.modules())

    calls = []
    real_train = torch.nn.Module.train
    monkeypatch.setattr(
        torch.nn.Module,
        "train",
        lambda self, mode=True: calls.append(mode) or real_train(self, mode),
    )
    again = predicted_coordinates(model, batch, batch_size=2)
    assert calls == []
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_predictions_are_ordinary_tensors() -> None:
    """Prediction runs in inference mode for speed, but hands out tensors that autograd may
    use afterwards (an inference tensor cannot be saved for a backward pass)."""
    from definet.nn import DefiNet

    model = DefiNet(DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0))
    (pred, *_) = predicted_coordinates(model, defect_graphs(2), batch_size=2)
    assert pred.dtype == torch.float64 and not torch.is_inference(pred)
    weight = torch.ones(1, dtype=torch.float64, requires_grad=True)
    (weight * pred).sum().backward()  # saves ``pred`` for the backward pass
    assert weight.grad.item() == pytest.approx(pred.sum().item())
