"""benchmarks/chgnet_input.py: CHGNet features of real graphs, and a trainer that feeds them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

import definet.inference as inference
import definet.train as train
from definet.data.markers import VACANCY
from definet.nn import DefiNet, DefiNetConfig
from definet.train_config import TrainConfig
from tests.repo_scripts import load_benchmark

from .conftest import SMALL_GRAPH, defect_graphs

SMALL_MODEL = DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0)


def test_chgnet_features_cover_real_atoms_and_leave_vacancies_zero() -> None:
    from definet.forcefield_loss import load_force_field

    bench = load_benchmark("chgnet_input")
    graphs = defect_graphs(2)
    features = bench.chgnet_node_features(graphs, load_force_field("CHGNet"))
    for g, f in zip(graphs, features, strict=True):
        vacancy = g.marker == VACANCY
        assert vacancy.any()
        assert f.shape == (len(g.z), bench.FEATURES)
        assert torch.all(f[vacancy] == 0)
        assert torch.all(f[~vacancy].abs().sum(dim=1) > 0)
        assert torch.all(f[:, -1] >= 0)  # |magnetic moment|
    mean, std = bench.real_atom_mean_std(graphs, features)
    bench.attach_standardised(graphs, features, mean, std)
    rows = torch.cat([g.node_input[g.marker != VACANCY] for g in graphs])
    varying = std > 1e-6
    assert torch.allclose(rows.mean(0), torch.zeros(bench.FEATURES), atol=1e-4)
    assert torch.allclose(rows[:, varying].std(0), torch.ones(int(varying.sum())), atol=1e-4)
    assert all(torch.all(g.node_input[g.marker == VACANCY] == 0) for g in graphs)


def test_zero_initialised_input_predicts_what_plain_definet_does() -> None:
    bench = load_benchmark("chgnet_input")
    graphs = defect_graphs(2)
    for g in graphs:
        g.node_input = torch.randn(len(g.z), bench.FEATURES)
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    plain = DefiNet(SMALL_MODEL)
    torch.manual_seed(0)
    fed = bench.DefiNetWithInput(SMALL_MODEL)
    for layer in fed.layers:  # non-zero coordinate steps, so the embedding matters
        torch.nn.init.normal_(layer.to_step.linear.weight, std=0.05)
    plain.load_state_dict(
        {
            k.replace("embed_z.embed_z", "embed_z"): v
            for k, v in fed.state_dict().items()
            if "project" not in k
        }
    )
    with bench.trainer_feeds_node_inputs():
        before = train.predict_batch(fed, batch)
        torch.nn.init.normal_(fed.embed_z.project.weight, std=0.5)
        after = train.predict_batch(fed, batch)
    assert torch.allclose(before, inference.predict_batch(plain, batch), atol=1e-6)
    assert not torch.allclose(after, before, atol=1e-4)  # the inputs do reach the coordinates
    with pytest.raises(ValueError, match="node inputs not set"):
        bench.DefiNetWithInput(SMALL_MODEL)(
            batch.z, batch.marker, batch.pos, batch.edge_index, torch.zeros(batch.num_edges, 3)
        )


def test_trainer_trains_the_fed_model_and_is_restored_after(tmp_path: Path) -> None:
    bench = load_benchmark("chgnet_input")
    graphs = defect_graphs(3)
    for g in graphs:
        g.node_input = torch.randn(len(g.z), bench.FEATURES)
    config = TrainConfig(
        out_dir=str(tmp_path),
        graph=SMALL_GRAPH,
        model=SMALL_MODEL,
        batch_size=2,
        epochs=2,
        threads=1,
        early_stop_patience=100,
    )
    originals = (train.DefiNet, train.predict_batch, inference.predict_batch)
    with bench.trainer_feeds_node_inputs():
        trainer = train.Trainer(config, graphs[:2], graphs[2:], progress=False)
        assert isinstance(trainer.model, bench.DefiNetWithInput)
        best = trainer.fit()
    assert best.exists()
    assert trainer.model.embed_z.project.weight.abs().sum() > 0  # trained, not left at zero
    assert (train.DefiNet, train.predict_batch, inference.predict_batch) == originals
