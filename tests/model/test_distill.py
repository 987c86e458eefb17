"""Defect shuffling and teacher-labelled training structures."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from definet.data.augment import host_site_elements, shuffle_defects, site_keys
from definet.data.graphs import GraphSettings
from definet.data.markers import PRISTINE, SUBSTITUTION, VACANCY
from definet.distill import cached_teacher_labelled, load_teacher, teacher_labelled
from definet.inference import predict_batch
from definet.losses import coordinate_loss
from definet.train import Trainer

from .conftest import defect_graphs, tiny_checkpoint
from .test_train import config


def sublattice_contents(graph, sites) -> dict[int, collections.Counter]:
    """Per host element, the (species, marker) pairs on its sites."""
    out: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for key, z, m in zip(site_keys(graph), graph.z.tolist(), graph.marker.tolist(), strict=True):
        out[sites[key]][(z, m)] += 1
    return out


def test_shuffle_moves_defects_within_their_sublattice() -> None:
    data = defect_graphs(6)
    sites = host_site_elements(data)["MoS2_test"]
    assert sorted(collections.Counter(sites.values()).items()) == [(16, 18), (42, 9)]
    rng = np.random.default_rng(0)
    moved = 0
    for graph in data:
        copy = shuffle_defects(graph, sites, rng)
        assert sublattice_contents(copy, sites) == sublattice_contents(graph, sites)
        # same nodes and edges; only species and markers differ
        assert torch.equal(copy.pos, graph.pos) and torch.equal(copy.edge_index, graph.edge_index)
        assert "y" not in copy and copy.host == graph.host
        assert copy.atoms_id == f"{graph.atoms_id}~shuffled"
        defect = copy.marker != PRISTINE
        moved += int((copy.marker != graph.marker).sum())
        # a defect-free site holds its host element again
        for key, z, m in zip(site_keys(copy), copy.z.tolist(), copy.marker.tolist(), strict=True):
            assert m != PRISTINE or z == sites[key]
        assert int(defect.sum()) == int((graph.marker != PRISTINE).sum())
    assert moved > 0  # the defects did move


def test_site_map_names_conflicts_and_unknown_sites() -> None:
    first, second = defect_graphs(2)
    clash = second.clone()
    pristine = int(torch.nonzero(clash.marker == PRISTINE)[0])
    clash.z[pristine] = 74 if int(clash.z[pristine]) != 74 else 42
    with pytest.raises(ValueError, match="does not share|do not share"):
        host_site_elements([first, clash])
    # a site substituted in every structure given has no known host element
    only = defect_graphs(1)
    sub = int(torch.nonzero(only[0].marker == SUBSTITUTION)[0])
    sites = host_site_elements(only)["MoS2_test"]
    assert site_keys(only[0])[sub] not in sites
    with pytest.raises(KeyError, match="pristine in no structure"):
        shuffle_defects(only[0], sites, np.random.default_rng(0))


def test_teacher_labels_are_its_predictions(tmp_path: Path) -> None:
    data = defect_graphs(3)
    teacher = load_teacher(tiny_checkpoint(tmp_path / "t.pt"), GraphSettings(4.0, 12))
    labelled = teacher_labelled(teacher, data, copies=2, seed=1)
    assert len(labelled) == 6
    assert [g.atoms_id for g in labelled[:3]] == [f"{g.atoms_id}~shuffled0" for g in data]
    for graph in labelled:
        with torch.no_grad():
            expected = predict_batch(teacher, Batch.from_data_list([graph])).double()
        real = graph.marker != VACANCY
        assert torch.allclose(graph.y[real], expected[real], atol=1e-6)
        assert torch.equal(graph.y[~real], graph.pos[~real])
        assert not torch.allclose(graph.y[real], graph.pos[real])  # the teacher moves atoms


def test_teacher_of_several_checkpoints_is_their_mean(tmp_path: Path) -> None:
    paths = [tiny_checkpoint(tmp_path / f"t{i}.pt", seed=i) for i in range(2)]
    graph = Batch.from_data_list(defect_graphs(1))
    mean = load_teacher(paths, GraphSettings(4.0, 12))
    singles = [load_teacher(p, GraphSettings(4.0, 12)) for p in paths]
    with torch.no_grad():
        expected = sum(predict_batch(m, graph) for m in singles) / 2
        assert torch.allclose(predict_batch(mean, graph), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"t0\.pt: trained on graph settings"):
        load_teacher(paths, GraphSettings(5.0, 16))


def test_teacher_labels_are_cached_per_teacher_copies_and_seed(tmp_path, monkeypatch) -> None:
    import definet.distill as distill

    data = defect_graphs(2)
    teacher = tiny_checkpoint(tmp_path / "t.pt")
    calls = []
    real_load = distill.load_teacher
    monkeypatch.setattr(distill, "load_teacher", lambda *a: calls.append(a) or real_load(*a))
    cache = tmp_path / "run" / "teacher-labels.pt"
    settings = GraphSettings(4.0, 12)
    first = cached_teacher_labelled(cache, teacher, data, 2, settings, seed=0)
    again = cached_teacher_labelled(cache, teacher, data, 2, settings, seed=0)
    assert len(calls) == 1
    for made, read in zip(first, again, strict=True):
        assert made.atoms_id == read.atoms_id and made.host == read.host
        for key in ("z", "marker", "y", "pos", "cell", "edge_index", "edge_image"):
            assert torch.equal(made[key], read[key]), key
    source = {g.atoms_id: g for g in data}[again[0].atoms_id.rsplit("~", 1)[0]]
    assert again[0].edge_index is source.edge_index  # rebuilt on the source graph, not copied
    other = cached_teacher_labelled(cache, teacher, data, 3, settings, seed=0)
    assert len(calls) == 2 and len(other) == 6
    # labels of structures that are no longer among the training graphs are made again
    cached_teacher_labelled(cache, teacher, defect_graphs(2, offset=5), 3, settings, seed=0)
    assert len(calls) == 3


def test_teacher_weight_scales_only_teacher_labelled_graphs() -> None:
    dft, taught = defect_graphs(2)
    dft.target_weight, taught.target_weight = torch.tensor([1.0]), torch.tensor([0.25])
    batch = Batch.from_data_list([dft, taught])
    pred = batch.pos.float()
    real = batch.marker != VACANCY
    error = (pred - batch.y.float()).abs()
    in_dft = (batch.batch == 0) & real
    in_taught = (batch.batch == 1) & real
    expected = (error[in_dft].sum() + 0.25 * error[in_taught].sum()) / (3 * int(real.sum()))
    assert coordinate_loss(pred, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_with_a_teacher_joins_its_labels_and_resumes(tmp_path: Path) -> None:
    teacher = str(tiny_checkpoint(tmp_path / "t.pt"))
    data = defect_graphs(4)
    cfg = config(tmp_path / "run", epochs=1, teacher=teacher, teacher_copies=2)
    trainer = Trainer(cfg, data[:3], data[3:], progress=False)
    assert len(trainer.train_graphs) == 3 + 6
    weights = sorted(float(g.target_weight) for g in trainer.train_graphs)
    assert weights == [1.0] * 9
    assert trainer.metadata()["n_train"] == 3 and trainer.metadata()["n_teacher_labelled"] == 6
    best = trainer.fit()
    assert best.exists() and (tmp_path / "run" / "teacher-labels.pt").exists()
    assert trainer.step == 5  # ceil(9 / batch size 2): the teacher's graphs are trained on
    assert "target_weight" not in data[0]  # the caller's graphs are left as they were


def test_a_missing_teacher_is_named(tmp_path: Path) -> None:
    data = defect_graphs(3)
    cfg = config(tmp_path / "run", teacher=["gone/best.pt"])
    with pytest.raises(FileNotFoundError, match="teacher: no checkpoint at gone/best.pt"):
        Trainer(cfg, data[:2], data[2:], progress=False)
