"""The long-range exchange through the reciprocal lattice (``reciprocal_cutoff``): which modes,
what they reach, and how a model with it is built, grown and served."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from definet.data.graphs import GraphSettings, edge_shifts, structure_to_graph
from definet.data.markers import PRISTINE, mark_defects, pristine_supercell
from definet.inference import model_inputs
from definet.nn import DefiNet, DefiNetConfig, DensityRoutedDefiNet
from definet.nn.capped import NeighbourCapped
from definet.nn.definet import load_pretrained
from definet.nn.ensemble import EnsembleDefiNet
from definet.nn.reciprocal import reciprocal_modes

from .conftest import make_defect_pair, mos2_unit_cell, nontrivial_definet

SETTINGS = GraphSettings(cutoff=4.0, max_neighbors=12)
LONG_RANGE = 1.2  # 1/A: several modes of a 3x3 MoS2 supercell


@pytest.fixture(scope="module")
def marked() -> Structure:
    unrelaxed, _ = make_defect_pair(n=3, seed=3)
    return mark_defects(unrelaxed, pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice))


def predict(model, graph, cell=None) -> np.ndarray:
    with torch.no_grad():
        out = model(
            graph.z, graph.marker, graph.pos, graph.edge_index, edge_shifts(graph), cell=cell
        )
    return out.numpy()


def _used_modes(cell: np.ndarray, cutoff: float) -> np.ndarray:
    k, weight = reciprocal_modes(torch.tensor(cell).unsqueeze(0), cutoff)
    used = k[0][weight[0] > 0].numpy()
    used *= np.where(used[:, :1] < -1e-9, -1.0, 1.0)  # one sign per pair, to compare sets
    return used[np.lexsort(np.round(used, 6).T)]


def test_modes_are_the_lattice_vectors_below_the_cutoff_whatever_the_basis() -> None:
    """The reciprocal lattice vectors 0 < |k| <= cutoff, one of each +-k pair, the same set for
    another basis of the same lattice (a + b, b, c)."""
    lattice = Lattice.hexagonal(9.57, 20.0).matrix
    other = np.array([lattice[0] + lattice[1], lattice[1], lattice[2]])
    modes = _used_modes(lattice, 1.2)
    size = np.linalg.norm(modes, axis=1)
    assert len(modes) > 6 and size.min() > 0 and size.max() <= 1.2
    # every lattice vector 2 pi n . inv(A)^T of that size is there, once
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    n = np.stack(np.meshgrid(*[np.arange(-5, 6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    all_k = n @ recip
    expected = np.sum((np.linalg.norm(all_k, axis=1) <= 1.2) & (np.abs(n).sum(1) > 0)) // 2
    assert len(modes) == expected
    np.testing.assert_allclose(_used_modes(other, 1.2), modes, atol=1e-9)


def test_prediction_does_not_depend_on_the_lattice_basis(marked) -> None:
    model = nontrivial_definet(reciprocal_cutoff=LONG_RANGE)
    g = structure_to_graph(marked, SETTINGS)
    a, b, c = g.cell[0]
    other = torch.stack([a + b, b, c]).unsqueeze(0)
    np.testing.assert_allclose(predict(model, g, other), predict(model, g, g.cell), atol=1e-10)


def test_long_range_exchange_reaches_atoms_beyond_the_graph() -> None:
    """One layer with 4 A edges: turning one atom into a vacancy node changes the atoms more than
    4 A away only through the global node without the exchange (the same change for every
    atom of a sublattice), and by where they sit with it."""
    ideal = pristine_supercell(mos2_unit_cell(c=20.0), lattice=Lattice.hexagonal(3.19 * 6, 20.0))
    ideal.add_site_property("defect_marker", [PRISTINE] * len(ideal))
    offset = (ideal.frac_coords - ideal.frac_coords[0] + 0.5) % 1 - 0.5
    far = np.linalg.norm(ideal.lattice.get_cartesian_coords(offset), axis=1) > SETTINGS.cutoff
    sublattice = [(site.specie.symbol, round(site.coords[2], 2)) for site in ideal]
    spread = {}
    for cutoff in (0.0, LONG_RANGE):
        model = nontrivial_definet(num_layers=1, reciprocal_cutoff=cutoff)
        g = structure_to_graph(ideal, SETTINGS)
        before = predict(model, g, g.cell)
        g.marker[0] = 2  # a vacancy node: its messages change
        change = predict(model, g, g.cell) - before
        spread[cutoff] = max(
            np.ptp(change[far & np.array([s == key for s in sublattice])], axis=0).max()
            for key in set(sublattice)
        )
    assert far.sum() > 50
    assert spread[0.0] < 1e-10  # rounding
    assert spread[LONG_RANGE] > 1e-6, spread


def test_an_added_exchange_starts_silent_then_moves_atoms(marked) -> None:
    """Grown from a trained model (``init_from``), a model with the exchange predicts what that
    model did until its output weights move; a trained exchange cannot be dropped or resized."""
    plain = nontrivial_definet()
    config = DefiNetConfig(**{**plain.config.as_dict(), "reciprocal_cutoff": LONG_RANGE})
    grown = DefiNet(config).double().eval()
    assert load_pretrained(grown, plain) == 0
    g = structure_to_graph(marked, SETTINGS)
    np.testing.assert_array_equal(predict(grown, g, g.cell), predict(plain, g))
    for layer in grown.layers:
        torch.nn.init.normal_(layer.reciprocal.out_v.weight, std=0.3)
    assert np.abs(predict(grown, g, g.cell) - predict(plain, g)).max() > 1e-6
    for change in ({"reciprocal_cutoff": 0.0}, {"reciprocal_channels": 8}):
        smaller = DefiNet(DefiNetConfig(**{**config.as_dict(), **change})).double()
        with pytest.raises(ValueError, match="reciprocal_c"):
            load_pretrained(smaller, grown)


def test_a_model_with_the_exchange_needs_the_cell(marked) -> None:
    model = nontrivial_definet(reciprocal_cutoff=LONG_RANGE)
    g = structure_to_graph(marked, SETTINGS)
    with pytest.raises(ValueError, match="needs each structure's cell"):
        predict(model, g)


@pytest.mark.parametrize("bad", [-0.5, "0.6", True])
def test_bad_reciprocal_cutoff_is_refused_naming_the_field(bad) -> None:
    with pytest.raises(ValueError, match=r"model\.reciprocal_cutoff: expected a number >= 0"):
        DefiNetConfig(reciprocal_cutoff=bad)


def test_wrappers_and_batches_pass_each_structure_its_own_cell(marked) -> None:
    """In a batch of two supercells of different size each structure gets its own modes: the
    batched prediction, an ensemble's, a capped model's and a routed one's equal those of each
    structure alone."""
    small = structure_to_graph(marked, SETTINGS)
    unrelaxed, _ = make_defect_pair(n=4, seed=1)
    large = mark_defects(unrelaxed, pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice))
    large = structure_to_graph(large, SETTINGS)
    batch = Batch.from_data_list([small, large])
    alone = [nontrivial_definet(reciprocal_cutoff=LONG_RANGE) for _ in range(2)]
    torch.manual_seed(1)
    for layer in alone[1].layers:
        torch.nn.init.normal_(layer.reciprocal.out_v.weight, std=0.3)
    each = [np.concatenate([predict(m, g, g.cell) for g in (small, large)]) for m in alone]
    with torch.no_grad():
        batched = alone[0](*model_inputs(batch)).numpy()
        ensemble = EnsembleDefiNet(alone)(*model_inputs(batch)).numpy()
        capped = NeighbourCapped(alone[0], SETTINGS.max_neighbors)(*model_inputs(batch)).numpy()
        # defect fractions 2/27 (small) and 2/48 (large): the large one goes to member 0
        routed = DensityRoutedDefiNet(alone, [0.05])(*model_inputs(batch)).numpy()
    np.testing.assert_allclose(batched, each[0], atol=1e-10)
    np.testing.assert_allclose(capped, each[0], atol=1e-10)
    np.testing.assert_allclose(ensemble, (each[0] + each[1]) / 2, atol=1e-10)
    n_small = small.num_nodes
    np.testing.assert_allclose(routed[:n_small], each[1][:n_small], atol=1e-10)
    np.testing.assert_allclose(routed[n_small:], each[0][n_small:], atol=1e-10)
    assert np.abs(each[0] - each[1]).max() > 1e-6
    assert (small.marker != PRISTINE).any()


def test_a_cell_too_small_for_any_mode_gets_no_exchange() -> None:
    """Every reciprocal lattice vector of a 2x2 MoS2 cell with c = 6 A is longer than 0.65 1/A:
    the model predicts exactly what it does without the exchange."""
    unrelaxed, _ = make_defect_pair(n=2, seed=2, c=6.0)
    marked = mark_defects(
        unrelaxed, pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice)
    )
    g = structure_to_graph(marked, SETTINGS)
    k, weight = reciprocal_modes(g.cell, 0.65)
    assert not (weight > 0).any()
    plain = nontrivial_definet()
    grown = DefiNet(DefiNetConfig(**{**plain.config.as_dict(), "reciprocal_cutoff": 0.65}))
    grown = grown.double().eval()
    load_pretrained(grown, plain)
    for layer in grown.layers:
        torch.nn.init.normal_(layer.reciprocal.out_v.weight, std=0.3)
        torch.nn.init.normal_(layer.reciprocal.filter.bias, std=0.3)
    np.testing.assert_allclose(predict(grown, g, g.cell), predict(plain, g), atol=1e-12)
