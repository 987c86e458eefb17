"""DefiNet is E(3)-equivariant, permutation-equivariant and blind to periodic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Structure
from pymatgen.core.operations import SymmOp
from pymatgen.util.coord import pbc_diff
from scipy.spatial.transform import Rotation

from definet.data.graphs import GraphSettings, edge_shifts, structure_to_graph
from definet.data.markers import VACANCY, mark_defects, pristine_supercell
from definet.nn import DefiNet, DefiNetConfig
from definet.nn.definet import ChannelDropout

from .conftest import make_defect_pair, mos2_unit_cell, nontrivial_definet

SETTINGS = GraphSettings(cutoff=4.0, max_neighbors=12)
#: Reciprocal cutoff (1/A) of the long-range exchange in these tests: several modes of the test
#: supercell lie below it.
LONG_RANGE = 1.2


@pytest.fixture(
    scope="module",
    params=[(False, 0, 0.0), (True, 0, 0.0), (True, 8, 0.0), (True, 0, LONG_RANGE)],
    ids=["plain", "feature_norm", "tensor_channels", "long_range"],
)
def model(request) -> DefiNet:
    feature_norm, tensor_channels, reciprocal_cutoff = request.param
    return nontrivial_definet(
        feature_norm=feature_norm,
        tensor_channels=tensor_channels,
        reciprocal_cutoff=reciprocal_cutoff,
    )


@pytest.fixture(scope="module")
def marked() -> Structure:
    unrelaxed, _ = make_defect_pair(n=3, seed=3)
    return mark_defects(unrelaxed, pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice))


def run(model: DefiNet, structure: Structure) -> np.ndarray:
    g = structure_to_graph(structure, SETTINGS)
    with torch.no_grad():
        return model(g.z, g.marker, g.pos, g.edge_index, edge_shifts(g), cell=g.cell).numpy()


def moved(structure: Structure, rot: np.ndarray, shift: np.ndarray | None = None) -> Structure:
    """``structure`` (lattice and atoms) rotated by ``rot``, then its atoms shifted by ``shift``."""
    op = SymmOp.from_rotation_and_translation(rot, np.zeros(3) if shift is None else shift)
    return structure.copy().apply_operation(op)


def largest_periodic_difference(
    got: np.ndarray, expected: np.ndarray, structure: Structure
) -> float:
    """Largest Cartesian difference of two coordinate sets modulo ``structure``'s lattice (the
    atoms of a moved structure may sit in other images)."""
    lattice = structure.lattice
    frac = pbc_diff(lattice.get_fractional_coords(got), lattice.get_fractional_coords(expected))
    return np.abs(lattice.get_cartesian_coords(frac)).max()


def test_moves_atoms(model, marked) -> None:
    out = run(model, marked)
    assert np.abs(out - marked.cart_coords).max() > 1e-3


def test_rotation_and_translation(model, marked) -> None:
    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    shift = np.array([0.7, -2.1, 3.3])
    moved_marked = moved(marked, rot, shift)
    expected = run(model, marked) @ rot.T + shift
    got = run(model, moved_marked)
    assert largest_periodic_difference(got, expected, moved_marked) < 1e-6


def test_permutation(model, marked) -> None:
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(marked))
    permuted = Structure.from_sites([marked[i] for i in perm])
    assert np.abs(run(model, permuted) - run(model, marked)[perm]).max() < 1e-6


def test_periodic_images_change_nothing(model, marked) -> None:
    wrapped = marked.copy()
    wrapped.translate_sites([0, 4, 7], [1, -1, 0], frac_coords=True, to_unit_cell=False)
    a, b = run(model, marked), run(model, wrapped)
    lattice_shift = np.zeros_like(a)
    lattice_shift[[0, 4, 7]] = np.array([1, -1, 0]) @ marked.lattice.matrix
    assert np.abs(b - (a + lattice_shift)).max() < 1e-6


def test_vacancy_nodes_do_not_move(model, marked) -> None:
    out = run(model, marked)
    vac = np.asarray(marked.site_properties["defect_marker"]) == 2
    assert vac.any()
    assert np.allclose(out[vac], marked.cart_coords[vac])


def test_markers_change_the_prediction(model, marked) -> None:
    unmarked = marked.copy()
    unmarked.add_site_property("defect_marker", [0] * len(marked))
    assert np.abs(run(model, unmarked) - run(model, marked)).max() > 1e-6


def test_electron_parity_starts_neutral_and_splits_odd_from_even(model, marked) -> None:
    """With ``electron_parity`` the global node starts from the parity of the electron count:
    zero-initialised it changes nothing; trained, odd and even structures are told apart."""
    with_parity = DefiNet(DefiNetConfig(**{**model.config.as_dict(), "electron_parity": True}))
    with_parity = with_parity.double().eval()
    with_parity.load_state_dict(model.state_dict(), strict=False)
    assert np.array_equal(run(with_parity, marked), run(model, marked))

    torch.nn.init.normal_(with_parity.embed_parity.weight, std=0.5)
    g = structure_to_graph(marked, SETTINGS)
    real = g.marker != VACANCY
    assert int(g.z[real].sum()) % 2 == 0  # S, Mo and the test's substituents: even
    with torch.no_grad():
        even = with_parity(g.z, g.marker, g.pos, g.edge_index, edge_shifts(g), cell=g.cell)
        with_parity.embed_parity.weight[1] = with_parity.embed_parity.weight[0]
        same = with_parity(g.z, g.marker, g.pos, g.edge_index, edge_shifts(g), cell=g.cell)
        with_parity.embed_parity.weight[0].normal_(std=0.5)
        changed = with_parity(g.z, g.marker, g.pos, g.edge_index, edge_shifts(g), cell=g.cell)
    assert torch.equal(even, same)  # the odd entry is unused by an even structure
    assert (changed - even).abs().max() > 1e-6
    assert not np.array_equal(even.numpy(), run(model, marked))


def test_displacement_guard_puts_far_atoms_back(model, marked) -> None:
    """Atoms the network throws further than ``max_displacement`` stay at their start, with a
    warning; every other atom keeps its prediction; no guard, no change."""
    from definet.nn.definet import OutOfDistributionWarning

    free = run(model, marked)
    moves = np.linalg.norm(free - marked.cart_coords, axis=1)
    limit = float(np.median(moves[moves > 0]))  # half the moving atoms go past it
    model.config.max_displacement = limit
    try:
        with pytest.warns(OutOfDistributionWarning, match=r"more than .* left at their start"):
            guarded = run(model, marked)
    finally:
        model.config.max_displacement = None
    far = moves > limit
    assert far.any() and (~far & (moves > 0)).any()
    np.testing.assert_allclose(guarded[far], marked.cart_coords[far], atol=1e-12)
    np.testing.assert_allclose(guarded[~far], free[~far], atol=1e-12)
    np.testing.assert_allclose(run(model, marked), free, atol=1e-12)


def test_vector_norm_bounds_features() -> None:
    """VectorNorm leaves every node's vectors with unit RMS channel norm, however large."""
    from definet.nn.definet import VectorNorm

    v = (
        torch.randn(5, 3, 8, dtype=torch.float64)
        * torch.tensor([1e-1, 1.0, 1e2, 1e4, 1e6]).view(5, 1, 1).double()
    )
    out = VectorNorm(8).double()(v)
    rms = torch.sqrt((out**2).sum(dim=1).mean(dim=-1))
    assert torch.allclose(rms, torch.ones(5, dtype=torch.float64), atol=1e-4)


def test_tensor_features_stay_symmetric_traceless_and_bounded() -> None:
    """VectorNorm gives every node's rank-2 features unit RMS channel norm; the traceless square of a vector is
    symmetric and traceless (so rank-2 features stay in the l = 2 space)."""
    from definet.nn.definet import VectorNorm, _traceless_outer

    t = torch.randn(5, 3, 3, 4, dtype=torch.float64)
    t = t * torch.tensor([1e-1, 1.0, 1e2, 1e4, 1e6]).view(5, 1, 1, 1).double()
    out = VectorNorm(4).double()(t)
    rms = torch.sqrt((out**2).sum(dim=(1, 2)).mean(dim=-1))
    assert torch.allclose(rms, torch.ones(5, dtype=torch.float64), atol=1e-4)
    v = torch.randn(7, 3, 4, dtype=torch.float64)
    square = _traceless_outer(v, v)
    assert torch.allclose(square, square.transpose(1, 2))
    assert torch.allclose(torch.einsum("naaf->nf", square), torch.zeros(7, 4).double(), atol=1e-12)
    assert not torch.allclose(square, torch.zeros_like(square))


def test_tensor_channels_take_part_in_the_prediction(marked) -> None:
    """Silencing the rank-2 messages and updates changes where the atoms go."""
    model = nontrivial_definet(tensor_channels=8)
    with_tensors = run(model, marked)
    for layer in model.layers:
        for head in (layer.tensor_message.node[-1], layer.tensor_update.mix[-1]):
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)
    assert np.abs(run(model, marked) - with_tensors).max() > 1e-4


@pytest.mark.parametrize("bad", [-4, 2.5, "16", True])
def test_bad_tensor_channels_are_refused_naming_the_field(bad) -> None:
    with pytest.raises(ValueError, match=r"model\.tensor_channels: expected a whole number >= 0"):
        DefiNetConfig(tensor_channels=bad)


@pytest.mark.parametrize("shape", [(40, 8), (40, 3, 8), (40, 3, 3, 8)])
def test_channel_dropout_drops_whole_channels_in_training_only(shape) -> None:
    """Scalars, vectors and rank-2 tensors: a dropped channel loses all its components."""
    drop = ChannelDropout(0.5)
    x = torch.ones(*shape, dtype=torch.float64)
    assert torch.equal(drop.eval()(x), x)
    out = drop.train()(x)
    kept = out.reshape(40, -1, 8)[:, 0, :] != 0
    assert 0 < kept.float().mean() < 1  # some channels dropped, some kept (scaled by 2)
    expected = kept.double().reshape((40,) + (1,) * (len(shape) - 2) + (8,)) * 2.0
    assert torch.equal(out, expected.expand(shape))


def test_dropout_is_equivariant_in_training_and_silent_in_eval(marked) -> None:
    """In training the same dropout masks give the rotated prediction of a rotated input; in
    eval mode a model with dropout predicts exactly what the same weights without it do."""
    model = nontrivial_definet(dropout=0.3)
    plain = nontrivial_definet()
    assert np.array_equal(run(model, marked), run(plain, marked))
    rot = Rotation.from_euler("xyz", [0.4, 0.9, -1.3]).as_matrix()
    rotated = moved(marked, rot)
    model.train()
    torch.manual_seed(5)
    dropped = run(model, marked)
    torch.manual_seed(5)
    dropped_rotated = run(model, rotated)
    assert np.abs(dropped - run(plain, marked)).max() > 1e-4  # training did drop channels
    assert largest_periodic_difference(dropped_rotated, dropped @ rot.T, rotated) < 1e-6


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.1", True])
def test_bad_dropout_is_refused_naming_the_field(bad) -> None:
    with pytest.raises(ValueError, match=r"model\.dropout: expected a number in \[0, 1\)"):
        DefiNetConfig(dropout=bad)
