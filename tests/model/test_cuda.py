"""The GPU path (``device="auto"``/``"cuda"``): the same predictions as on the CPU, and training
steps that run there. Skipped, with the reason, on machines without CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from definet.data.markers import pristine_supercell
from definet.nn import DefiNetConfig
from definet.predict import Predictor
from definet.train import Trainer
from definet.train_config import TrainConfig

from .conftest import SMALL_GRAPH, defect_graphs, make_defect_pair, mos2_unit_cell, tiny_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def test_cuda_predictions_match_the_cpu(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "m.pt")
    unrelaxed, _ = make_defect_pair(n=3, seed=1)
    ideal = pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice)
    cpu = Predictor(checkpoint, device="cpu").predict([unrelaxed], pristine=[ideal])[0]
    gpu = Predictor(checkpoint, device="cuda").predict([unrelaxed], pristine=[ideal])[0]
    assert np.allclose(cpu.cart_coords, gpu.cart_coords, atol=1e-4)


def test_training_runs_on_cuda(tmp_path: Path) -> None:
    data = defect_graphs(2)
    config = TrainConfig(
        out_dir=str(tmp_path / "run"),
        graph=SMALL_GRAPH,
        batch_size=2,
        max_steps=2,
        epochs=10,
        device="cuda",
        model=DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0),
    )
    trainer = Trainer(config, data, data, progress=False)
    assert next(trainer.model.parameters()).is_cuda
    trainer.fit()
    assert trainer.step == 2 and (tmp_path / "run" / "best.pt").is_file()
