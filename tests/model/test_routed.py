"""Routed checkpoints: each structure goes to the member for its defect density."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from definet.checkpoint import (
    CheckpointError,
    ensemble_payload,
    load_model,
    model_payload,
    routed_payload,
    save_atomic,
)
from definet.data.graphs import GraphSettings, edge_shifts, structure_to_graph
from definet.data.markers import strip_vacancies
from definet.nn import DensityRoutedDefiNet
from definet.predict import Predictor
from definet.train import Trainer, cosine_lr
from definet.train_config import TrainConfig

from .conftest import SMALL_GRAPH as SETTINGS
from .conftest import SMALL_NET as CONFIG
from .conftest import member, run


def test_each_structure_gets_its_members_prediction(structures) -> None:
    low, high = member(0), member(1)
    routed = DensityRoutedDefiNet([low, high], [0.03]).eval()
    got = run(routed, structures)
    for s, out in zip(structures, got, strict=True):
        alone = run(low if len(s) > 100 else high, [s])[0]
        np.testing.assert_allclose(out, alone, atol=1e-5)
    # the members disagree, so routing decides the answer
    assert np.abs(run(low, structures[1:2])[0] - got[1]).max() > 1e-3
    everything_low = DensityRoutedDefiNet([low, high], [0.5]).eval()
    np.testing.assert_allclose(
        run(everything_low, structures)[1], run(low, structures[1:2])[0], atol=1e-5
    )


def test_a_member_serves_only_its_hosts(tmp_path: Path, structures) -> None:
    low, high = member(0), member(1)
    sparse_wse2 = structures[0].copy()  # 1.9% defects, like the low-density MoS2 ones
    sparse_wse2.replace_species({"Mo": "W", "S": "Se"})
    batch = [*structures, sparse_wse2]
    routed = DensityRoutedDefiNet([low, high], [0.03], [[[16, 42]]]).eval()  # MoS2 only
    got = run(routed, batch)
    for s, out in zip(batch, got, strict=True):
        low_density_mos2 = len(s) > 100 and "Mo" in s.composition
        alone = run(low if low_density_mos2 else high, [s])[0]
        np.testing.assert_allclose(out, alone, atol=1e-5)
    assert np.abs(run(low, [sparse_wse2])[0] - got[-1]).max() > 1e-3  # routing decided it
    # substitutions do not change the host: W on a Mo site of MoS2 is still MoS2
    assert "W" in structures[0].composition
    # the hosts travel with the checkpoint
    path = save_atomic(
        routed_payload(
            [model_payload(low, SETTINGS), model_payload(high, SETTINGS)],
            [0.03],
            None,
            [[[42, 16]]],
        ),
        tmp_path / "routed-hosts.pt",
    )
    loaded = load_model(path)[0]
    assert loaded.member_hosts == [[[16, 42]]]
    for a, b in zip(run(loaded, batch), got, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="2 members need 1 host lists"):
        DensityRoutedDefiNet([low, high], [0.03], [None, None])
    for empty in ([[]], [[[]]]):  # a member that could never serve, or a host of no element
        with pytest.raises(ValueError, match="member hosts"):
            DensityRoutedDefiNet([low, high], [0.03], empty)


def test_routed_checkpoint_round_trip(tmp_path: Path, structures) -> None:
    low, high = member(0), member(1)
    path = save_atomic(
        routed_payload(
            [model_payload(low, SETTINGS), model_payload(high, SETTINGS)],
            [0.03],
            metadata={"elements": [16, 42, 74]},
        ),
        tmp_path / "routed.pt",
    )
    model, settings, meta = load_model(path)  # torch.load(weights_only=True) inside
    assert isinstance(model, DensityRoutedDefiNet) and settings == SETTINGS
    assert meta["elements"] == [16, 42, 74]
    expected = run(DensityRoutedDefiNet([low, high], [0.03]).eval(), structures)
    for a, b in zip(run(model, structures), expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    predicted = Predictor(path, device="cpu").predict(structures, batch_size=2)
    assert [len(p) for p in predicted] == [
        sum(m != 2 for m in s.site_properties["defect_marker"]) for s in structures
    ]


def test_routed_checkpoint_refuses_mismatched_members(tmp_path: Path) -> None:
    low, high = member(0), member(1)
    other = GraphSettings(cutoff=5.0, max_neighbors=12)
    with pytest.raises(CheckpointError, match="graph settings"):
        routed_payload([model_payload(low, SETTINGS), model_payload(high, other)], [0.03])
    with pytest.raises(ValueError, match="2 members need 1"):
        DensityRoutedDefiNet([low, high], [0.03, 0.05])
    with pytest.raises(ValueError, match="ascend"):
        DensityRoutedDefiNet([low, high, member(2)], [0.05, 0.03])


@pytest.mark.parametrize("combine", [lambda ms: routed_payload(ms, [0.03]), ensemble_payload])
def test_fine_tuning_from_a_combined_checkpoint_is_refused(
    tmp_path: Path, structures, combine
) -> None:
    """Fine-tuning starts from one model, not from a routed pair or an average of several."""
    path = save_atomic(
        combine([model_payload(member(0), SETTINGS), model_payload(member(1), SETTINGS)]),
        tmp_path / "combined.pt",
    )
    g = structure_to_graph(structures[0], SETTINGS, relaxed=strip_vacancies(structures[0]))
    g.host, g.atoms_id = "MoS2_test", "a"
    cfg = TrainConfig(
        out_dir=str(tmp_path / "ft"), model=CONFIG, graph=SETTINGS, init_from=str(path)
    )
    with pytest.raises(ValueError, match="combines several models"):
        Trainer(cfg, [g], [g], progress=False)


def test_cosine_schedule() -> None:
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, schedule="cosine", warmup_steps=10, max_steps=110)
    assert cosine_lr(0, cfg) == pytest.approx(1e-4)
    assert cosine_lr(10, cfg) == pytest.approx(1e-3)
    assert cosine_lr(60, cfg) == pytest.approx((1e-3 + 1e-5) / 2)
    assert cosine_lr(110, cfg) == pytest.approx(1e-5)
    assert cosine_lr(500, cfg) == pytest.approx(1e-5)
    lrs = [cosine_lr(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    with pytest.raises(ValueError, match="needs max_steps"):
        TrainConfig.from_dict({"schedule": "cosine"})
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig.from_dict({"schedule": "linear"})


def test_edge_shifts_are_routed_with_their_edges(structures) -> None:
    """A batch whose high-density structure comes first still routes edges correctly."""
    low, high = member(0), member(1)
    routed = DensityRoutedDefiNet([low, high], [0.03]).eval()
    order = [structures[1], structures[0]]
    batch = Batch.from_data_list([structure_to_graph(s, SETTINGS) for s in order])
    with torch.no_grad():
        out = routed(
            batch.z, batch.marker, batch.pos, batch.edge_index, edge_shifts(batch), batch.batch, 2
        )
    np.testing.assert_allclose(out[batch.batch == 0].numpy(), run(high, order[:1])[0], atol=1e-5)
    np.testing.assert_allclose(out[batch.batch == 1].numpy(), run(low, order[1:])[0], atol=1e-5)
