"""Neighbour caps that keep whole shells, so a graph is as symmetric as its structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from definet.data.graphs import GraphSettings, edge_shifts, neighbor_edges, structure_to_graph
from definet.data.markers import mark_defects, pristine_supercell
from definet.nn.capped import first_edges_per_target

from .conftest import mos2_unit_cell, nontrivial_definet

# Within 3.5 A a Mo site of MoS2 has 6 S (2.42 A) and 6 Mo (3.19 A), an S site 3 Mo, 1 S
# (3.13 A) and 6 S (3.19 A): a cap of 9 falls inside the 3.19 A shell of both.
CAPPED = GraphSettings(cutoff=3.5, max_neighbors=9)
WHOLE = GraphSettings(cutoff=3.5, max_neighbors=9, whole_shells=True)


@pytest.fixture(scope="module")
def pristine() -> Structure:
    ideal = pristine_supercell(mos2_unit_cell(), [4, 4, 1])
    return mark_defects(ideal.copy(), ideal)


def neighbours_per_element(structure: Structure, settings: GraphSettings) -> dict[str, set[int]]:
    edge_index, _ = neighbor_edges(structure, settings)
    counts = np.bincount(edge_index[1], minlength=len(structure))
    found: dict[str, set[int]] = {}
    for site, n in zip(structure, counts, strict=True):
        found.setdefault(site.specie.symbol, set()).add(int(n))
    return found


def test_whole_shells_keep_the_shell_the_cap_falls_in(pristine) -> None:
    assert neighbours_per_element(pristine, CAPPED) == {"Mo": {9}, "S": {9}}
    assert neighbours_per_element(pristine, WHOLE) == {"Mo": {12}, "S": {10}}
    # a cap that falls between shells keeps exactly as many either way
    between = GraphSettings(cutoff=3.5, max_neighbors=6, whole_shells=True)
    assert neighbours_per_element(pristine, between)["Mo"] == {6}


def test_a_smaller_cap_is_the_first_edges_of_each_centre(pristine) -> None:
    """What lets a model trained on a smaller cap run on graphs that keep more."""
    wide = structure_to_graph(pristine, WHOLE)
    keep = first_edges_per_target(wide.edge_index[1], CAPPED.max_neighbors)
    capped = structure_to_graph(pristine, CAPPED)
    assert int(keep.sum()) < keep.numel()  # whole shells did keep more
    assert torch.equal(wide.edge_index[:, keep], capped.edge_index)
    assert torch.equal(wide.edge_image[keep], capped.edge_image)


@pytest.mark.parametrize(
    ("own", "served", "cap"),
    [
        (CAPPED, CAPPED, None),
        (WHOLE, WHOLE, None),
        (CAPPED, WHOLE, 9),
        (CAPPED, GraphSettings(cutoff=3.5, max_neighbors=20), 9),
    ],
)
def test_cap_within_wider_graphs(own: GraphSettings, served: GraphSettings, cap) -> None:
    assert own.cap_within(served) == cap


@pytest.mark.parametrize(
    ("own", "served"),
    [
        (WHOLE, CAPPED),  # whole shells need their own graphs
        (WHOLE, GraphSettings(cutoff=3.5, max_neighbors=20)),
        (CAPPED, GraphSettings(cutoff=4.0, max_neighbors=9)),  # another cutoff
        (GraphSettings(cutoff=3.5, max_neighbors=12), WHOLE),  # fewer neighbours served
    ],
)
def test_cap_within_refuses_graphs_that_lack_the_models(
    own: GraphSettings, served: GraphSettings
) -> None:
    with pytest.raises(ValueError, match="cannot take its edges from graphs built with"):
        own.cap_within(served)


def test_whole_shells_only_in_settings_when_on() -> None:
    """Cache keys and checkpoints written before the option existed still match."""
    assert GraphSettings(5.0, 16).as_dict() == {"cutoff": 5.0, "max_neighbors": 16}
    assert GraphSettings(**WHOLE.as_dict()) == WHOLE


@pytest.mark.parametrize(
    ("settings", "field"), [({"cutoff": 0.0}, "cutoff"), ({"max_neighbors": 0}, "max_neighbors")]
)
def test_settings_that_build_no_graph_are_refused(settings: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"graph {field} must be"):
        GraphSettings(**settings)


def in_plane_moves(structure: Structure, settings: GraphSettings) -> float:
    """Largest in-plane move a random DefiNet predicts for ``structure``."""
    model = nontrivial_definet(cutoff=settings.cutoff, num_layers=2)
    g = structure_to_graph(structure, settings)
    with torch.no_grad():
        out = model(g.z, g.marker, g.pos, g.edge_index, edge_shifts(g)).numpy()
    return float(np.abs(out - structure.cart_coords)[:, :2].max())


def test_pristine_lattice_keeps_its_symmetry_only_with_whole_shells(pristine) -> None:
    """Every site of pristine MoS2 sits on a threefold axis, so no equivariant model may move
    it in the plane. A cap that keeps part of a shell breaks that symmetry."""
    assert in_plane_moves(pristine, WHOLE) < 1e-9
    assert in_plane_moves(pristine, CAPPED) > 1e-4
