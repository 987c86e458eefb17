"""Training: the loss falls on a handful of structures; checkpoints round-trip; resume is exact."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch

from definet.checkpoint import (
    CheckpointError,
    load_model,
    model_payload,
    read_checkpoint,
    save_atomic,
)
from definet.data.markers import VACANCY
from definet.inference import evaluate_graphs, predict_batch, predict_layer_positions
from definet.losses import bond_loss, coordinate_loss, host_loss_weights, training_loss
from definet.nn import DefiNetConfig
from definet.train import Trainer, denoising_start, noisy_start, path_start
from definet.train_config import TrainConfig

from .conftest import SMALL_GRAPH, defect_graphs


def config(out_dir: Path, **overrides) -> TrainConfig:
    base = dict(
        out_dir=str(out_dir),
        graph=SMALL_GRAPH,
        batch_size=2,
        lr=3e-3,
        epochs=4,
        checkpoint_every=3,
        early_stop_patience=100,
        ema_decay=0.9,
        threads=1,
        model=DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0),
    )
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.slow
def test_overfits_a_handful_of_structures(tmp_path: Path) -> None:
    data = defect_graphs(2)
    cfg = config(
        tmp_path,
        epochs=800,
        batch_size=2,
        lr=5e-3,
        ema_decay=0.0,
        plateau_patience=40,
        early_stop_patience=10_000,
        model=DefiNetConfig(hidden=32, num_layers=3, num_rbf=16, cutoff=4.0),
    )
    trainer = Trainer(cfg, data, data, progress=False)
    before = evaluate_graphs(trainer.model, data)["overall"]["mae"]
    trainer.fit()
    after = evaluate_graphs(trainer.model, data)["overall"]["mae"]
    assert after < before / 10, (before, after)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    data = defect_graphs(3)
    best = Trainer(config(tmp_path, epochs=1), data[:2], data[2:], progress=False).fit()
    model, settings, meta = load_model(best)
    assert settings == SMALL_GRAPH
    assert meta["hosts"] == ["MoS2_test"] and meta["n_train"] == 2
    # what a prediction checks its inputs against: defect_graphs hold S vacancies and W on Mo
    assert meta["host_kinds"] == ["Mo-S layer"] and meta["markers"] == [0, 1, 2]
    again = Trainer(config(tmp_path / "x", epochs=1), data[:2], data[2:], progress=False)
    again.model.load_state_dict(model.state_dict())
    r1 = evaluate_graphs(model, data[2:])["overall"]["mae"]
    r2 = evaluate_graphs(again.model, data[2:])["overall"]["mae"]
    assert r1 == pytest.approx(r2, abs=1e-12)


def test_bad_checkpoints_fail_clearly(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_model(junk)
    data = defect_graphs(2)
    best = Trainer(config(tmp_path / "r", epochs=1), data[:1], data[1:], progress=False).fit()
    payload = read_checkpoint(best)
    payload["model_config"]["hidden"] = 8
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(tmp_path / "mismatch.pt")
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(tmp_path / "future.pt")


def _train_in_process(out_dir: str, max_steps: int | None) -> None:
    data = defect_graphs(6)
    Trainer(config(Path(out_dir), max_steps=max_steps), data[:5], data[5:], progress=False).fit()


def test_resume_after_kill_matches_uninterrupted(tmp_path: Path) -> None:
    data = defect_graphs(6)
    straight = Trainer(config(tmp_path / "a"), data[:5], data[5:], progress=False)
    straight.fit()
    # a run killed mid-epoch (SIGKILL after its step-3 checkpoint), then restarted
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_train_in_process, args=(str(tmp_path / "b"), None))
    proc.start()
    last = tmp_path / "b" / "last.pt"
    while proc.is_alive() and not last.exists():
        proc.join(0.05)
    proc.kill()
    proc.join()
    assert last.exists()
    killed_at = read_checkpoint(last)["step"]
    resumed = Trainer(config(tmp_path / "b"), data[:5], data[5:], progress=False)
    resumed.fit()
    assert killed_at < resumed.step == straight.step
    for (name, p1), p2 in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p1, p2), name
    for p1, p2 in zip(
        straight.ema.module.state_dict().values(),
        resumed.ema.module.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(p1, p2)


def test_resume_with_dropout_is_exact_and_refuses_other_settings(tmp_path: Path) -> None:
    data = defect_graphs(6)
    model = DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0, dropout=0.1)
    straight = Trainer(config(tmp_path / "a", model=model, max_steps=6), data[:5], data[5:], False)
    straight.fit()
    first = Trainer(config(tmp_path / "b", model=model, max_steps=3), data[:5], data[5:], False)
    first.fit()  # stops after epoch 0 (3 batches); a longer max_steps may resume it
    resumed = Trainer(config(tmp_path / "b", model=model, max_steps=6), data[:5], data[5:], False)
    resumed.fit()
    assert resumed.step == straight.step == 6
    for (name, p1), p2 in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p1, p2), name  # the same dropout masks after the resume
    other = Trainer(config(tmp_path / "b", model=model, lr=1e-2), data[:5], data[5:], False)
    with pytest.raises(ValueError, match=r"last\.pt: this run was started with other settings"):
        other.fit()


def test_config_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 4\n")
    with pytest.raises(ValueError, match="bad.yaml.*batch_sise"):
        TrainConfig.from_yaml(bad)


def test_config_extends_another_and_overrides_its_keys(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "out_dir: runs/base\nseed: 0\nbatch_size: 4\nmodel: {hidden: 32, num_layers: 3}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "extends: base.yaml\nout_dir: runs/child\nseed: 1\nmodel: {num_layers: 6}\n"
    )
    config = TrainConfig.from_yaml(tmp_path / "child.yaml")
    assert (config.out_dir, config.seed, config.batch_size) == ("runs/child", 1, 4)
    assert (config.model.hidden, config.model.num_layers) == (32, 6)


def test_config_extends_loop_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ValueError, match="a.yaml.*loops back"):
        TrainConfig.from_yaml(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[2] / "workflows/train").rglob("*.yaml"))
)
def test_shipped_training_configs_parse(path: Path) -> None:
    """Every config in workflows/train parses; a tracked init_from checkpoint is a real one."""
    config = TrainConfig.from_yaml(path)
    if config.init_from and config.init_from.startswith(("checkpoints/", "model/")):
        root = Path(__file__).resolve().parents[2]
        model, _, _ = load_model(root / config.init_from)
        assert model.config.hidden == config.model.hidden


def test_bond_loss_sees_separations_not_translations() -> None:
    graph = defect_graphs(1)[0]
    target = graph.y.float()
    shifted = target + torch.tensor([0.3, -0.2, 0.1])
    assert coordinate_loss(shifted, graph) > 0.1
    assert bond_loss(shifted, graph) < 1e-5  # a rigid shift changes no separation
    real = torch.nonzero(graph.marker != VACANCY).flatten()
    stretched = target.clone()
    stretched[real[0]] += torch.tensor([0.2, 0.0, 0.0])
    assert bond_loss(stretched, graph) > 0
    assert training_loss(stretched, graph, 0.0) == coordinate_loss(stretched, graph)
    assert training_loss(stretched, graph, 2.0) > coordinate_loss(stretched, graph)


def _one_atom_missed(*misses: list[float]) -> tuple:
    """A defect graph, its target coordinates, its number of real atoms, and one copy of the
    target per miss with the first real atom displaced by it."""
    graph = defect_graphs(1)[0]
    target = graph.y.float()
    real = torch.nonzero(graph.marker != VACANCY).flatten()
    copies = []
    for miss in misses:
        copy = target.clone()
        copy[real[0]] += torch.tensor(miss)
        copies.append(copy)
    return graph, target, len(real), copies


def test_euclidean_loss_is_each_atoms_distance_whatever_the_orientation() -> None:
    turned = 0.3 / 3**0.5  # the same miss along the cube diagonal
    graph, target, n, (along_x, diagonal) = _one_atom_missed([0.3, 0.0, 0.0], [turned] * 3)
    for miss in (along_x, diagonal):
        loss = coordinate_loss(miss, graph, kind="euclidean")
        assert loss.item() == pytest.approx(0.3 / n, rel=1e-4)
        assert training_loss(miss, graph, kind="euclidean") == loss
    # the per-component L1 loss sees the turned miss as larger
    assert coordinate_loss(diagonal, graph).item() == pytest.approx(
        3**0.5 * coordinate_loss(along_x, graph).item(), rel=1e-4
    )
    assert coordinate_loss(target, graph, kind="euclidean").item() < 1e-5
    with pytest.raises(ValueError, match="coordinate loss must be one of"):
        coordinate_loss(target, graph, kind="l2")


def test_mse_loss_weighs_an_error_by_its_size() -> None:
    graph, _, n, (small, large) = _one_atom_missed([0.1, 0.0, 0.0], [0.3, 0.0, 0.0])
    components = 3 * n
    assert coordinate_loss(small, graph, kind="mse").item() == pytest.approx(
        0.01 / components, rel=1e-4
    )
    # three times the miss costs nine times as much (three times under L1)
    assert coordinate_loss(large, graph, kind="mse").item() == pytest.approx(
        9 * coordinate_loss(small, graph, kind="mse").item(), rel=1e-4
    )
    assert coordinate_loss(large, graph).item() == pytest.approx(
        3 * coordinate_loss(small, graph).item(), rel=1e-4
    )
    assert training_loss(large, graph, kind="mse") == coordinate_loss(large, graph, kind="mse")


def test_config_names_an_unknown_coordinate_loss() -> None:
    with pytest.raises(ValueError, match="coordinate_loss must be one of"):
        TrainConfig.from_dict({"coordinate_loss": "huber"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"checkpoint_every": 0}, "checkpoint_every must be >= 1, got 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"model": {"cutoff": 5.0}, "graph": {"cutoff": 6.0}}, "model cutoff 5.0 A is shorter"),
        (
            {"model": {"cutoff": 5.0}, "graph": {"cutoff": 5.0, "defect_cutoff": 9.0}},
            r"shorter than the graph's edges \(9.0 A\)",
        ),
        (
            {"teacher": "t.pt", "model": {"cutoff": 9.0}, "graph": {"defect_cutoff": 9.0}},
            "not with graph.defect_cutoff",
        ),
    ],
)
def test_config_refuses_settings_that_would_train_wrongly(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(settings)


def test_bond_loss_ignores_vacancy_nodes() -> None:
    graph = defect_graphs(1)[0]
    vacancies = graph.marker == VACANCY
    assert vacancies.any()
    moved = graph.y.float().clone()
    moved[vacancies] += 5.0  # a vacancy node has no target: where it goes must not count
    assert bond_loss(moved, graph) < 1e-5


def test_training_with_bond_loss_runs(tmp_path: Path) -> None:
    data = defect_graphs(3)
    cfg = config(tmp_path, epochs=2, bond_loss_weight=1.0)
    best = Trainer(cfg, data[:2], data[2:], progress=False).fit()
    assert best.exists()
    assert TrainConfig.from_dict({"bond_loss_weight": 0.5}).bond_loss_weight == 0.5
    with pytest.raises(ValueError, match="bond_loss_weight must be >= 0"):
        TrainConfig.from_dict({"bond_loss_weight": -1.0})


def test_denoising_start_moves_chosen_structures_near_their_relaxed_coordinates(
    tmp_path: Path,
) -> None:
    from torch_geometric.data import Batch

    data = defect_graphs(4)
    batch = Batch.from_data_list(data)
    real = batch.marker != VACANCY
    assert torch.equal(denoising_start(batch, 0.0, 0.1), batch.pos)
    torch.manual_seed(0)
    start = denoising_start(batch, 1.0, 0.05)
    assert torch.equal(start[~real], batch.pos[~real])  # vacancy nodes stay at their sites
    off = (start[real] - batch.y[real]).abs()
    assert 0.03 < off.mean() < 0.05  # sigma * sqrt(2 / pi) = 0.04 around the relaxed atoms
    torch.manual_seed(1)
    half = denoising_start(batch, 0.5, 0.05)
    kept = [torch.equal(half[batch.batch == i], batch.pos[batch.batch == i]) for i in range(4)]
    assert 0 < sum(kept) < 4, kept  # some structures start unrelaxed, some from the relaxed
    cfg = config(tmp_path, epochs=1, denoise_fraction=0.5)
    assert Trainer(cfg, data[:2], data[2:], progress=False).fit().exists()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="denoise_fraction must be"):
            TrainConfig.from_dict({"denoise_fraction": bad})


def test_path_start_puts_chosen_structures_on_their_relaxation_path(tmp_path: Path) -> None:
    from torch_geometric.data import Batch

    data = defect_graphs(4)
    batch = Batch.from_data_list(data)
    real = batch.marker != VACANCY
    assert torch.equal(path_start(batch, 0.0), batch.pos)
    torch.manual_seed(0)
    start = path_start(batch, 1.0)
    assert torch.equal(start[~real], batch.pos[~real])  # vacancy nodes stay at their sites
    for i in range(4):
        atoms = (batch.batch == i) & real
        move, done = batch.y[atoms] - batch.pos[atoms], start[atoms] - batch.pos[atoms]
        t = (done * move).sum() / (move * move).sum()  # one fraction of the path per structure
        assert 0 < t < 1 and torch.allclose(done, t * move, atol=1e-6)
    torch.manual_seed(1)
    half = path_start(batch, 0.5)
    kept = [torch.equal(half[batch.batch == i], batch.pos[batch.batch == i]) for i in range(4)]
    assert 0 < sum(kept) < 4, kept
    cfg = config(tmp_path, epochs=1, path_fraction=0.5)
    assert Trainer(cfg, data[:2], data[2:], progress=False).fit().exists()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="path_fraction must be"):
            TrainConfig.from_dict({"path_fraction": bad})


def test_sharpness_aware_gradient_is_taken_up_the_gradient(tmp_path: Path) -> None:
    """SAM: the gradient is the one at w + rho g / |g|, and the weights come back to w."""
    import copy

    from torch_geometric.data import Batch

    data = defect_graphs(3)
    trainer = Trainer(config(tmp_path, sam_rho=0.05), data[:2], data[2:], progress=False)
    for p in trainer.model.parameters():  # away from the zero-step start, so every weight matters
        p.data.add_(0.05 * torch.randn_like(p))
    batch = Batch.from_data_list(data[:2])
    trainer.batch_loss(batch)[0].backward()
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    grads = [p.grad.clone() for p in trainer.model.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))

    shifted = copy.deepcopy(trainer.model)
    with torch.no_grad():
        for p, g in zip(shifted.parameters(), grads, strict=True):
            p.add_(0.05 * g / norm)
    training_loss(predict_batch(shifted, batch), batch).backward()  # the objective, at the shift

    trainer.sharpness_aware_gradient(batch)
    changed = False
    pairs = zip(trainer.model.parameters(), weights, shifted.parameters(), grads, strict=True)
    for p, w, q, g in pairs:
        assert torch.allclose(p, w, rtol=0, atol=1e-7)  # weights restored
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-8)  # gradient at the shift
        changed |= not torch.allclose(p.grad, g)
    assert changed  # not the plain gradient
    fit = Trainer(
        config(tmp_path / "fit", epochs=1, sam_rho=0.05), data[:2], data[2:], progress=False
    )
    assert fit.fit().exists()
    with pytest.raises(ValueError, match="sam_rho must be >= 0"):
        TrainConfig.from_dict({"sam_rho": -0.1})


def test_layer_loss_adds_every_inner_layers_coordinate_loss(tmp_path: Path) -> None:
    """Deep supervision: the objective is the last layer's loss plus the weighted mean of the
    others', and forward's coordinates are the last layer's."""
    from torch_geometric.data import Batch

    data = defect_graphs(3)
    trainer = Trainer(config(tmp_path, layer_loss_weight=0.5), data[:2], data[2:], progress=False)
    for p in trainer.model.parameters():  # away from the zero-step start, so layers differ
        p.data.add_(0.05 * torch.randn_like(p))
    batch = Batch.from_data_list(data[:2])
    positions = predict_layer_positions(trainer.model, batch)
    assert len(positions) == trainer.model.config.num_layers
    assert torch.allclose(positions[-1], predict_batch(trainer.model, batch))
    losses = [training_loss(x, batch) for x in positions]
    assert len({round(v.item(), 6) for v in losses}) == len(losses)  # the layers do differ
    expected = losses[-1] + 0.5 * sum(losses[:-1]) / (len(losses) - 1)
    assert torch.allclose(trainer.batch_loss(batch)[0], expected)
    plain = Trainer(config(tmp_path / "plain"), data[:2], data[2:], progress=False)
    plain.model.load_state_dict(trainer.model.state_dict())
    assert torch.allclose(plain.batch_loss(batch)[0], losses[-1])
    with pytest.raises(ValueError, match="layer_loss_weight must be >= 0"):
        TrainConfig.from_dict({"layer_loss_weight": -0.1})


def test_position_noise_moves_real_atoms_only(tmp_path: Path) -> None:
    from torch_geometric.data import Batch

    data = defect_graphs(3)
    original = data[0].pos.clone()
    batch = Batch.from_data_list(data[:2])
    torch.manual_seed(0)
    noisy = noisy_start(batch, 0.1)
    vacancies = batch.marker == VACANCY
    assert vacancies.any()
    assert torch.equal(noisy[vacancies], batch.pos[vacancies])
    moved = (noisy[~vacancies] - batch.pos[~vacancies]).abs()
    assert moved.min() > 0 and 0.05 < moved.mean() < 0.11  # sigma * sqrt(2 / pi) = 0.08
    assert torch.equal(data[0].pos, original)  # the dataset's graphs are never changed

    plain = Trainer(config(tmp_path / "plain", epochs=1), data[:2], data[2:], progress=False)
    plain.fit()
    cfg = config(tmp_path / "noisy", epochs=1, position_noise=0.05)
    noisy_run = Trainer(cfg, data[:2], data[2:], progress=False)
    noisy_run.fit()
    pairs = zip(plain.model.parameters(), noisy_run.model.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)  # the noise reached the gradients
    with pytest.raises(ValueError, match="position_noise must be >= 0"):
        TrainConfig.from_dict({"position_noise": -0.1})


@pytest.mark.parametrize("electron_parity", [False, True])
def test_init_from_grows_depth_without_changing_predictions(
    tmp_path: Path, electron_parity: bool
) -> None:
    """A deeper model (optionally adding electron_parity) started from a trained one predicts
    what it did, then trains on."""
    data = defect_graphs(3)
    best = Trainer(config(tmp_path / "base", epochs=2), data[:2], data[2:], progress=False).fit()
    base, _, _ = load_model(best)
    deeper = DefiNetConfig(
        hidden=16, num_layers=4, num_rbf=8, cutoff=4.0, electron_parity=electron_parity
    )
    grown = Trainer(
        config(tmp_path / "grown", epochs=1, model=deeper, init_from=str(best)),
        data[:2],
        data[2:],
        progress=False,
    )
    assert len(grown.model.layers) == 4
    before = evaluate_graphs(base, data[2:])["overall"]["mae"]
    assert evaluate_graphs(grown.model, data[2:])["overall"]["mae"] == pytest.approx(
        before, abs=1e-12
    )
    grown.fit()
    after = evaluate_graphs(grown.model, data[2:])["overall"]["mae"]
    assert after != pytest.approx(before, abs=1e-9)  # the new layers train


def test_fine_tuning_keeps_what_the_base_model_saw(tmp_path: Path) -> None:
    data = defect_graphs(3)
    best = Trainer(config(tmp_path / "base", epochs=1), data[:2], data[2:], progress=False).fit()
    base, settings, meta = load_model(best)
    tuned = Trainer(
        config(tmp_path / "tuned", epochs=1, init_from=str(best)),
        data[:2],
        data[2:],
        progress=False,
    )
    assert tuned.metadata()["host_kinds"] == ["Mo-S layer"] == meta["host_kinds"]
    # a base model from before host kinds were recorded, trained on WSe2: its hosts are known
    # by folder name only, so the fine-tuned one records no kinds (names for both, no false
    # warning on the base model's layers)
    old = save_atomic(
        model_payload(base, settings, metadata={"hosts": ["WSe2_500"], "elements": [34, 74]}),
        tmp_path / "old.pt",
    )
    tuned = Trainer(
        config(tmp_path / "tuned-old", epochs=1, init_from=str(old)),
        data[:2],
        data[2:],
        progress=False,
    )
    recorded = tuned.metadata()
    assert "host_kinds" not in recorded
    assert recorded["hosts"] == ["MoS2_test", "WSe2_500"] and recorded["markers"] == [0, 1, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden": 8}, "hidden: 16 -> 8"),
        ({"num_layers": 1}, "num_layers: 2 -> 1 \\(fewer\\)"),
        ({"feature_norm": True}, "feature_norm: False -> True"),
        ({"tensor_channels": 4}, "tensor_channels: 0 -> 4"),
    ],
)
def test_init_from_refuses_models_that_do_not_fit(tmp_path: Path, change, message) -> None:
    data = defect_graphs(2)
    best = Trainer(config(tmp_path / "base", epochs=1), data[:1], data[1:], progress=False).fit()
    model = DefiNetConfig(
        **{**DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0).as_dict(), **change}
    )
    with pytest.raises(ValueError, match=f"init_from: .*base.*{message}"):
        Trainer(
            config(tmp_path / "x", model=model, init_from=str(best)),
            data[:1],
            data[1:],
            progress=False,
        )


def test_init_from_refuses_to_drop_electron_parity(tmp_path: Path) -> None:
    data = defect_graphs(2)
    with_parity = DefiNetConfig(
        hidden=16, num_layers=2, num_rbf=8, cutoff=4.0, electron_parity=True
    )
    best = Trainer(
        config(tmp_path / "base", epochs=1, model=with_parity), data[:1], data[1:], progress=False
    ).fit()
    without = DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0)
    with pytest.raises(ValueError, match="init_from: .*base.*electron_parity: True -> False"):
        Trainer(
            config(tmp_path / "x", model=without, init_from=str(best)),
            data[:1],
            data[1:],
            progress=False,
        )


def two_hosts(scale: float = 3.0):
    """Four graphs: two of host "A", then the same two as host "B" moving ``scale`` times as
    far."""
    first = defect_graphs(2)
    second = [g.clone() for g in first]
    for g in first:
        g.host = "A"
    for g in second:
        g.host = "B"
        g.y = g.pos + scale * (g.y - g.pos)
    return first + second


def test_host_balanced_loss_weighs_each_host_by_its_do_nothing_mae() -> None:
    from torch_geometric.data import Batch

    data = two_hosts(scale=3.0)
    weights = host_loss_weights(data)
    assert weights["A"] == pytest.approx(3.0 * weights["B"])
    batch = Batch.from_data_list(data)
    still = batch.pos.float()
    # doing nothing scores the overall do-nothing MAE with or without the weights
    assert training_loss(still, batch, host_weights=weights).item() == pytest.approx(
        coordinate_loss(still, batch).item(), rel=1e-5
    )
    # a miss on host A (small moves) now costs as much as one on host B (three times larger)
    miss_a = torch.where((batch.batch < 2).unsqueeze(-1), still, batch.y.float())
    miss_b = torch.where((batch.batch >= 2).unsqueeze(-1), still, batch.y.float())
    assert coordinate_loss(miss_b, batch).item() == pytest.approx(
        3.0 * coordinate_loss(miss_a, batch).item(), rel=1e-5
    )
    balanced_a = training_loss(miss_a, batch, host_weights=weights)
    balanced_b = training_loss(miss_b, batch, host_weights=weights)
    assert balanced_a.item() == pytest.approx(balanced_b.item(), rel=1e-5)


def test_host_balanced_training_scores_the_mean_host_ratio(tmp_path: Path) -> None:
    import json

    data = two_hosts()
    cfg = config(tmp_path, epochs=2, host_balanced_loss=True, val_every=1)
    trainer = Trainer(cfg, data[::2], data[1::2], progress=False)
    best = trainer.fit()
    assert best.exists()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    ratios = [
        sum(h["ratio"] for h in r["hosts"].values()) / len(r["hosts"])
        for r in records
        if r["event"] == "val"
    ]
    assert trainer.best_val == pytest.approx(min(ratios))
    logged = next(r for r in records if r["event"] == "host_weights")["weights"]
    assert logged == pytest.approx(host_loss_weights(data[::2]))
    still = defect_graphs(2)
    for g in still:
        g.y = g.pos.clone()
    with pytest.raises(ValueError, match=r"hosts \['MoS2_test'\] have no displacement"):
        host_loss_weights(still)


def test_the_same_payload_saves_to_the_same_bytes(tmp_path: Path) -> None:
    """A shipped file's sha256 names its content, not the temporary file it went through."""
    payload = {"weights": torch.arange(6.0).reshape(2, 3), "meta": {"name": "x"}}
    first = save_atomic(payload, tmp_path / "a" / "model.pt").read_bytes()
    second = save_atomic(payload, tmp_path / "b" / "model.pt").read_bytes()
    assert first == second
    assert torch.equal(
        torch.load(tmp_path / "a" / "model.pt", weights_only=True)["weights"], payload["weights"]
    )


def test_cli_trains_a_yaml_config_with_overrides(tmp_path: Path, tiny_dataset: Path) -> None:
    """``definet train --config`` reads the YAML (rank-2 features included), and ``--out-dir``
    and ``--threads`` override what it says."""
    import json

    import yaml
    from typer.testing import CliRunner

    from definet_flows.cli import app

    settings = {
        "data_root": str(tiny_dataset),
        "out_dir": str(tmp_path / "ignored"),
        "model": {"hidden": 8, "num_layers": 2, "num_rbf": 4, "cutoff": 4.0, "tensor_channels": 4},
        "graph": {"cutoff": 4.0, "max_neighbors": 12},
        "batch_size": 2,
        "epochs": 1,
        "threads": 2,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    args = ["train", "--config", str(path), "--out-dir", str(out), "--threads", "1", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "ignored").exists()
    payload = read_checkpoint(out / "last.pt")
    assert json.loads(payload["train_config"])["threads"] == 1
    model, _, _ = load_model(out / "best.pt")
    assert model.config.tensor_channels == 4 and model.layers[0].tensor_message is not None


def test_progress_written_to_a_file_is_not_redrawn_every_step(tmp_path: Path, capsys) -> None:
    """Under nohup the bar goes to a file: its first and last state, not one per step."""
    data = defect_graphs(3)
    Trainer(config(tmp_path, max_steps=6, epochs=100), data[:2], data[2:], progress=True).fit()
    bar = capsys.readouterr().err
    assert "6/6" in bar
    assert bar.count("\r") <= 3, bar


def test_train_step_is_the_step_fit_takes(tmp_path: Path) -> None:
    """One ``train_step`` per batch, phases marked in order; ``fit`` takes the same steps
    (``benchmarks/model_speed.py`` times ``train_step``)."""
    import dataclasses

    data = defect_graphs(3)
    cfg = config(tmp_path / "fit", epochs=1, batch_size=1, schedule="cosine", max_steps=2)
    fitted = Trainer(cfg, data[:2], data[2:], progress=False)
    fitted.fit()

    stepped = Trainer(
        dataclasses.replace(cfg, out_dir=str(tmp_path / "step")), data[:2], data[2:], progress=False
    )
    marks: list[str] = []
    before = [p.detach().clone() for p in stepped.model.parameters()]
    stepped.model.train()
    for batch in stepped.epoch_loader(0):  # the batches fit took, in its order
        loss, terms = stepped.train_step(batch, mark=marks.append)
        assert torch.isfinite(loss) and terms is None
    assert marks == ["forward", "backward", "optimizer", "ema"] * 2
    assert stepped.step == fitted.step == 2
    moved = [not torch.equal(p, b) for p, b in zip(stepped.model.parameters(), before, strict=True)]
    assert any(moved)
    for p, q in zip(stepped.model.parameters(), fitted.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    for p, q in zip(stepped.ema.parameters(), fitted.ema.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
