"""Host kinds: the chemical system of a structure's host sites, as a layer or bulk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from definet.data.graphs import GraphSettings, structure_to_graph
from definet.data.hosts import graph_host_kind, structure_host_kind, systems_from_folder_names
from definet.data.markers import host_sites, mark_defects, pristine_supercell

from .conftest import make_defect_pair, mos2_unit_cell


def silicon() -> Structure:
    return Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])


def test_substituted_sites_are_not_the_host_and_vacancy_nodes_are() -> None:
    unrelaxed, _ = make_defect_pair(n=3, seed=0)  # one S vacancy, one W on Mo
    ideal = pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice)
    marked = mark_defects(unrelaxed, ideal)
    assert structure_host_kind(marked) == "Mo-S layer"
    # unmarked, the W counts as the host's
    assert structure_host_kind(unrelaxed) == "Mo-S-W layer"
    assert graph_host_kind(structure_to_graph(marked, GraphSettings(4.0, 12))) == "Mo-S layer"
    # with the Mo removed only S is left on host sites (and the S vacancy node)
    only_s = marked.copy()
    only_s.remove_species(["Mo", "W"])
    assert structure_host_kind(only_s) == "S layer"
    # no pristine or vacant site at all: no host to name
    all_substituted = mark_defects(unrelaxed, ideal)
    all_substituted.add_site_property("defect_marker", [1] * len(all_substituted))
    assert structure_host_kind(all_substituted) is None
    graph = structure_to_graph(all_substituted, GraphSettings(4.0, 12))
    assert graph_host_kind(graph) is None


@pytest.mark.parametrize("c", [3.2, 6.0])
def test_a_cell_without_a_vacuum_gap_is_bulk(c: float) -> None:
    unit = mos2_unit_cell()
    squeezed = Structure(
        Lattice.hexagonal(unit.lattice.a, c),
        unit.species,
        unit.cart_coords,
        coords_are_cartesian=True,
    )
    assert structure_host_kind(squeezed) == "Mo-S bulk"
    assert structure_host_kind(mos2_unit_cell()) == "Mo-S layer"
    si = silicon() * (2, 2, 2)
    assert structure_host_kind(si) == "Si bulk"
    graph = structure_to_graph(mark_defects(si, si), GraphSettings(4.0, 12))
    assert graph_host_kind(graph) == "Si bulk"


def test_folder_names_give_the_host_formula() -> None:
    names = ["BP_spin_500", "hBN_spin_500", "MoS2_500", "WSe2", "GaN", "not a formula!"]
    assert systems_from_folder_names(names) == {"P", "B-N", "Mo-S", "Se-W", "Ga-N"}


def test_symbols_match_pymatgen() -> None:
    from pymatgen.core import Element

    from definet.data.hosts import SYMBOLS

    assert SYMBOLS[1:] == [Element.from_Z(z).symbol for z in range(1, 119)]


def test_scope_checks_system_and_layer_or_bulk() -> None:
    from definet.scope import TrainingScope

    scope = TrainingScope.from_metadata(
        {"elements": [14, 31, 7], "host_kinds": ["Si bulk", "Ga-N bulk"], "hosts": ["hBN"]}
    )
    assert not scope.unseen_host("Si bulk")
    assert scope.unseen_host("Si layer")  # a silicene-like layer: only bulk Si was seen
    assert scope.unseen_host("B-N layer")  # recorded kinds decide, not folder names
    assert not scope.unseen_host(None)  # a structure without host sites names no host
    # a checkpoint from before host kinds: its folder names give chemical systems only
    by_name = TrainingScope.from_metadata({"hosts": ["hBN_spin_500", "not a formula!"]})
    assert not by_name.unseen_host("B-N layer") and not by_name.unseen_host("B-N bulk")
    assert by_name.unseen_host("Ga-N bulk")
    assert by_name.hosts_note(["Ga-N bulk"]) == " (its hosts: B-N)"
    # members that share no host: an ensemble of them has seen none for sure
    assert TrainingScope.from_metadata({"host_kinds": []}).unseen_host("Mo-S layer")
    assert scope.unseen([14, 12], [0, 3], "Mg-Si bulk") == [
        "element(s) ['Mg']",
        "defect kind(s) ['interstitial']",
        "host Mg-Si bulk",
    ]
    assert scope.unseen([14], [0, 1, 2], "Si bulk") == []
    assert scope.hosts_note(["Si bulk"]) == ""
    assert scope.hosts_note(["Si layer"]) == " (its hosts: Ga-N bulk, Si bulk)"
    # a checkpoint that recorded nothing checks nothing but interstitials
    empty = TrainingScope.from_metadata({})
    assert empty.unseen([92], [0, 2], "U bulk") == []
    assert empty.unseen([92], [3], "U bulk") == ["defect kind(s) ['interstitial']"]


def test_host_sites_are_pristine_and_vacant_ones_in_numpy_and_torch() -> None:
    markers = [0, 1, 2, 3, 0]  # pristine, substitution, vacancy, interstitial, pristine
    expected = [True, False, True, False, True]
    assert host_sites(np.array(markers)).tolist() == expected
    mask = host_sites(torch.tensor(markers))
    assert isinstance(mask, torch.Tensor) and mask.tolist() == expected
