"""Neighbour caps that keep whole shells, so a graph is as symmetric as its structure, and
long edges from defect sites."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from definet.data.graphs import GraphSettings, edge_shifts, neighbor_edges, structure_to_graph
from definet.data.markers import PRISTINE, mark_defects, markers_of, pristine_supercell
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
        (CAPPED, GraphSettings(cutoff=3.5, max_neighbors=9, defect_cutoff=8.0), 9),
        (
            CAPPED,
            GraphSettings(cutoff=3.5, max_neighbors=9, whole_shells=True, defect_cutoff=8.0),
            9,
        ),
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
        (GraphSettings(cutoff=3.5, max_neighbors=9, defect_cutoff=8.0), CAPPED),  # defect edges
        (
            GraphSettings(cutoff=3.5, max_neighbors=9, defect_cutoff=8.0),
            GraphSettings(cutoff=3.5, max_neighbors=9, defect_cutoff=6.0),
        ),
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
    assert GraphSettings(5.0, 16, defect_cutoff=0.0).as_dict() == {
        "cutoff": 5.0,
        "max_neighbors": 16,
    }
    far = GraphSettings(5.0, 16, defect_cutoff=9.0)
    assert GraphSettings(**far.as_dict()) == far


@pytest.fixture(scope="module")
def defective() -> Structure:
    """4x4 MoS2 with a Mo vacancy and W on another Mo site (marked)."""
    ideal = pristine_supercell(mos2_unit_cell(), [4, 4, 1])
    structure = ideal.copy()
    mo_sites = [i for i, site in enumerate(structure) if site.specie.symbol == "Mo"]
    structure.replace(mo_sites[5], "W")
    structure.remove_sites([mo_sites[0]])
    return mark_defects(structure, ideal)


def edge_set(edge_index: np.ndarray, images: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(e) for e in np.concatenate([edge_index, images.T]).T.tolist()}


def test_defect_edges_join_defects_to_everything_within_their_reach(defective) -> None:
    settings = GraphSettings(cutoff=3.5, max_neighbors=9, defect_cutoff=7.0)
    edge_index, images = neighbor_edges(defective, settings)
    defect = markers_of(defective) != PRISTINE
    assert defect.sum() == 2
    # every short edge stays, and every pair within 7 A with a defect at an end joins them
    expected = edge_set(*neighbor_edges(defective, CAPPED))
    centers, neighbors, imgs, _ = defective.get_neighbor_list(7.0)
    for c, n, img in zip(centers, neighbors, np.round(imgs).astype(int), strict=True):
        if defect[c] or defect[n]:
            expected.add((int(n), int(c), *img.tolist()))
    assert edge_set(edge_index, images) == expected
    assert len(expected) == edge_index.shape[1]  # no edge twice
    # the edges beyond the short cutoff all touch a defect, and there are such edges
    rel = (
        defective.cart_coords[edge_index[0]]
        + images @ defective.lattice.matrix
        - defective.cart_coords[edge_index[1]]
    )
    long = np.linalg.norm(rel, axis=1) > 3.5 + 1e-9
    assert long.sum() > 100
    assert (defect[edge_index[0, long]] | defect[edge_index[1, long]]).all()


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
