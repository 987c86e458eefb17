"""Ensemble checkpoints: the mean of several DefiNets, alone or as a routed member."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from definet.checkpoint import (
    CheckpointError,
    ensemble_payload,
    load_model,
    model_payload,
    routed_payload,
    save_atomic,
)
from definet.data.graphs import GraphSettings
from definet.nn import DefiNet, DefiNetConfig, DensityRoutedDefiNet, EnsembleDefiNet
from definet.predict import Predictor
from definet_flows.cli import app

from .conftest import SMALL_GRAPH as SETTINGS
from .conftest import member, run


def test_ensemble_predicts_the_mean_of_its_members(structures) -> None:
    a, b, c = member(1), member(2), member(3)
    ensemble = EnsembleDefiNet([a, b, c]).eval()
    alone = [run(m, structures) for m in (a, b, c)]
    for k, got in enumerate(run(ensemble, structures)):
        mean = np.mean([alone[m][k] for m in range(3)], axis=0)
        np.testing.assert_allclose(got, mean, atol=1e-5)
        # the members disagree, so the mean is none of them
        assert min(np.abs(alone[m][k] - got).max() for m in range(3)) > 1e-4


def test_routed_ensemble_checkpoint_round_trip(tmp_path: Path, structures) -> None:
    low, high_a, high_b = member(0), member(1), member(2)
    path = save_atomic(
        routed_payload(
            [
                model_payload(low, SETTINGS),
                ensemble_payload(
                    [model_payload(high_a, SETTINGS), model_payload(high_b, SETTINGS)]
                ),
            ],
            [0.03],
        ),
        tmp_path / "routed-ensemble.pt",
    )
    model, settings, _ = load_model(path)  # torch.load(weights_only=True) inside
    assert isinstance(model, DensityRoutedDefiNet) and settings == SETTINGS
    assert isinstance(model.members[1], EnsembleDefiNet)
    in_memory = DensityRoutedDefiNet([low, EnsembleDefiNet([high_a, high_b])], [0.03]).eval()
    for got, expected in zip(run(model, structures), run(in_memory, structures), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-6)
    # the dense structure (3x3) went to the ensemble, not to either of its members alone
    assert np.abs(run(high_a, structures[1:2])[0] - run(model, structures[1:2])[0]).max() > 1e-4
    predicted = Predictor(path, device="cpu").predict(structures, batch_size=2)
    assert len(predicted) == len(structures)


def test_members_on_other_graphs_share_the_widest(tmp_path: Path, structures) -> None:
    """A member trained on whole shells joins members trained on the plain cap: the file is
    served whole-shell graphs, of which the others take their first 9 edges per atom."""
    low, plain, shells = member(0), member(1), member(2)
    capped = GraphSettings(cutoff=4.0, max_neighbors=9)  # cuts the 3.19 A shell of MoS2
    whole = GraphSettings(cutoff=4.0, max_neighbors=9, whole_shells=True)
    ensemble = ensemble_payload([model_payload(plain, capped), model_payload(shells, whole)])
    path = save_atomic(
        routed_payload([model_payload(low, capped), ensemble], [0.03]), tmp_path / "mixed.pt"
    )
    model, settings, _ = load_model(path)
    assert settings == whole
    # each member on its own graphs; the graphs differ enough to change every member's output
    alone = {"low": run(low, structures, capped), "plain": run(plain, structures, capped)}
    alone["shells"] = run(shells, structures, whole)
    assert np.abs(run(shells, structures, capped)[1] - alone["shells"][1]).max() > 1e-4
    assert np.abs(run(plain, structures, whole)[1] - alone["plain"][1]).max() > 1e-4
    assert np.abs(run(low, structures, whole)[0] - alone["low"][0]).max() > 1e-4
    got = run(model, structures, whole)
    for k in (0, 2):  # low density: the first member
        np.testing.assert_allclose(got[k], alone["low"][k], atol=1e-6)
    mean = (alone["plain"][1] + alone["shells"][1]) / 2
    np.testing.assert_allclose(got[1], mean, atol=1e-6)
    # a user's Predictor builds the whole-shell graphs the file names
    relaxed = Predictor(path, device="cpu").predict(structures[1:2])[0]
    np.testing.assert_allclose(relaxed.cart_coords, mean[: len(relaxed)], atol=1e-5)
    # members no single graph serves are refused
    with pytest.raises(CheckpointError, match="no one graph serves them all"):
        ensemble_payload(  # 12 neighbours are more than whole shells of 9 guarantee
            [model_payload(shells, whole), model_payload(plain, SETTINGS)]
        )


def test_a_member_on_defect_edges_joins_members_without(tmp_path: Path, structures) -> None:
    """A member trained with defect edges joins members trained without: the file is served
    graphs with defect edges, of which the others take the edges within their cutoff, first
    12 per atom."""
    low, plain, far = member(0), member(1), member(2)
    with_defects = GraphSettings(cutoff=4.0, max_neighbors=12, defect_cutoff=7.0)
    ensemble = ensemble_payload([model_payload(plain, SETTINGS), model_payload(far, with_defects)])
    path = save_atomic(
        routed_payload([model_payload(low, SETTINGS), ensemble], [0.03]), tmp_path / "far.pt"
    )
    model, settings, _ = load_model(path)
    assert settings == with_defects
    alone = {"low": run(low, structures), "plain": run(plain, structures)}
    alone["far"] = run(far, structures, with_defects)
    # the defect edges change what every member predicts, so the others must drop them
    assert np.abs(run(far, structures)[1] - alone["far"][1]).max() > 1e-4
    assert np.abs(run(plain, structures, with_defects)[1] - alone["plain"][1]).max() > 1e-4
    assert np.abs(run(low, structures, with_defects)[0] - alone["low"][0]).max() > 1e-4
    got = run(model, structures, with_defects)
    for k in (0, 2):
        np.testing.assert_allclose(got[k], alone["low"][k], atol=1e-6)
    np.testing.assert_allclose(got[1], (alone["plain"][1] + alone["far"][1]) / 2, atol=1e-6)
    # a member with defect edges cannot take them from graphs without
    with pytest.raises(CheckpointError, match="no one graph serves them all"):
        ensemble_payload(
            [
                model_payload(far, with_defects),
                model_payload(
                    plain, GraphSettings(cutoff=4.0, max_neighbors=12, defect_cutoff=6.0)
                ),
            ]
        )


def test_ensemble_refuses_bad_members(tmp_path: Path) -> None:
    a, b = member(1), member(2)
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleDefiNet([a])
    wider = DefiNet(DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0, max_z=40))
    with pytest.raises(ValueError, match="max_z, num_markers"):
        EnsembleDefiNet([a, wider])
    other = GraphSettings(cutoff=5.0, max_neighbors=12)
    with pytest.raises(CheckpointError, match="graph settings"):
        ensemble_payload([model_payload(a, SETTINGS), model_payload(b, other)])
    path = save_atomic(
        ensemble_payload([model_payload(a, SETTINGS), model_payload(b, SETTINGS)]),
        tmp_path / "ensemble.pt",
    )
    assert torch.equal(load_model(path)[0].members[0].embed_z.weight, a.embed_z.weight)


def test_cli_ensemble_averages_checkpoint_files(tmp_path: Path, structures) -> None:
    nets = [member(1), member(2)]
    seen = [[16, 42, 74], [16, 42]]  # the second member never saw W, nor bulk MoS2
    kinds = [["Mo-S bulk", "Mo-S layer"], ["Mo-S layer"]]
    markers = [[0, 1, 2, 3], [0, 1, 2]]  # the second never saw an interstitial
    files = [
        save_atomic(
            model_payload(
                net,
                SETTINGS,
                metadata={
                    "elements": els,
                    "hosts": [f"h{k}"],
                    "host_kinds": kinds[k],
                    "markers": markers[k],
                },
            ),
            tmp_path / f"m{k}.pt",
        )
        for k, (net, els) in enumerate(zip(nets, seen, strict=True))
    ]
    out = tmp_path / "ensemble.pt"
    result = CliRunner().invoke(app, ["ensemble", *map(str, files), "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, settings, metadata = load_model(out)
    assert isinstance(model, EnsembleDefiNet) and settings == SETTINGS
    expected = run(EnsembleDefiNet(nets).eval(), structures)
    for got, mean in zip(run(model, structures), expected, strict=True):
        np.testing.assert_allclose(got, mean, atol=1e-6)
    assert [m["checkpoint"] for m in metadata["members"]] == [str(f) for f in files]
    assert metadata["elements"] == [16, 42] and metadata["hosts"] == ["h0", "h1"]
    assert metadata["host_kinds"] == ["Mo-S layer"] and metadata["markers"] == [0, 1, 2]

    # what cannot be averaged is refused in one line naming the file
    refused = CliRunner().invoke(app, ["ensemble", str(out), str(files[0]), "--out", "x.pt"])
    assert refused.exit_code == 1
    assert f"{out}: combines several models" in refused.output
    single = CliRunner().invoke(app, ["ensemble", str(files[0]), "--out", "x.pt"])
    assert single.exit_code == 1 and "at least 2 members" in single.output
