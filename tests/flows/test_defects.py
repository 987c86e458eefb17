"""Defect supercells: markers, provenance, reproducibility, duplicates, errors."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from pymatgen.core import Composition, Structure
from pymatgen.core.structure_matcher import StructureMatcher

from definet.data.markers import is_slab
from definet_flows.defects import (
    INTERSTITIAL,
    MARKER_KEY,
    PRISTINE,
    SUBSTITUTION,
    VACANCY,
    DefectEntry,
    DefectSupercellMaker,
    canonical_form,
    find_supercell,
    generate_defect_entries,
    parse_supercell,
    pristine_supercell,
    site_permutations,
)
from definet_flows.hosts import HOSTS, get_host

TYPE_MARKER = {"vacancy": VACANCY, "substitution": SUBSTITUTION, "interstitial": INTERSTITIAL}


def check_marked(entry: DefectEntry) -> None:
    """Assert the CONTRACTS.md layout of a marked structure against its provenance."""
    host = get_host(entry.host)
    pristine = pristine_supercell(host, np.array(entry.supercell_matrix))
    s = entry.structure
    markers = s.site_properties[MARKER_KEY]
    counts = Counter(markers)
    expected = Counter(TYPE_MARKER[d.type] for d in entry.defects)
    assert counts[VACANCY] == expected[VACANCY]
    assert counts[SUBSTITUTION] == expected[SUBSTITUTION]
    assert counts[INTERSTITIAL] == expected[INTERSTITIAL]
    assert counts[PRISTINE] == len(pristine) - expected[VACANCY] - expected[SUBSTITUTION]
    # vacancy nodes last, carrying the missing element at the ideal site
    n_vac = counts[VACANCY]
    assert all(m == VACANCY for m in markers[len(s) - n_vac :])
    assert all(m != VACANCY for m in markers[: len(s) - n_vac])
    vacancies = sorted(
        (d for d in entry.defects if d.type == "vacancy"), key=lambda d: d.site_index
    )
    for node, d in zip(s[len(s) - n_vac :], vacancies, strict=True):
        ideal = pristine[d.site_index]
        assert node.species_string == ideal.species_string == d.species
        assert node.distance(ideal) < 1e-6
    # real atoms: pristine order kept, minus vacated sites
    vacated = {d.site_index for d in vacancies}
    lattice_sites = [i for i in range(len(pristine)) if i not in vacated]
    real = [site for site in s if site.properties[MARKER_KEY] in (PRISTINE, SUBSTITUTION)]
    assert len(real) == len(lattice_sites)
    subs = {d.site_index: d.species for d in entry.defects if d.type == "substitution"}
    for site, i in zip(real, lattice_sites, strict=True):
        assert site.distance(pristine[i]) < 1e-6
        assert site.species_string == subs.get(i, pristine[i].species_string)
        assert site.properties[MARKER_KEY] == (SUBSTITUTION if i in subs else PRISTINE)
    assert entry.n_sites == len(s) - n_vac == len(entry.defect_structure)
    assert Composition(entry.formula) == entry.defect_structure.composition


@pytest.fixture(scope="module")
def mos2_singles() -> list[DefectEntry]:
    return generate_defect_entries(
        "MoS2",
        supercell="3x3",
        dopants={"Mo": ["W"], "S": ["Se"]},
        interstitials=["Li"],
    )


def test_single_defect_markers(mos2_singles):
    names = Counter(n for e in mos2_singles for n in e.defect_names)
    assert names["v_Mo"] == names["v_S"] == names["W_Mo"] == names["Se_S"] == 1
    assert names["Li_i"] >= 1
    for entry in mos2_singles:
        assert len(entry.defects) == 1
        check_marked(entry)
    assert len({e.defect_id for e in mos2_singles}) == len(mos2_singles)


def test_interstitials_stay_in_the_layer(mos2_singles):
    host = get_host("MoS2").structure
    z = host.cart_coords[:, 2]
    interstitials = [
        (entry, d) for entry in mos2_singles for d in entry.defects if d.type == "interstitial"
    ]
    assert interstitials
    for entry, d in interstitials:
        zi = entry.structure.lattice.get_cartesian_coords(d.frac_coords)[2]
        assert z.min() - 3.0 < zi < z.max() + 3.0


@pytest.mark.parametrize(
    ("host", "supercell", "counts"),
    [
        ("MoS2", "4x4", {"v_S": 2, "W_Mo": 1}),
        ("hBN", "4x4", {"v_N": 1, "C_B": 2}),
        ("BP", "3x2", {"v_P": 2}),
        ("GaN", "2x2x2", {"v_N": 1, "Mg_Ga": 1}),
    ],
)
def test_multi_defect_markers(host, supercell, counts):
    entries = generate_defect_entries(
        host, supercell=supercell, vacancies=False, defect_counts=counts, n_configs=5, seed=3
    )
    assert 1 <= len(entries) <= 5
    for entry in entries:
        check_marked(entry)
        assert Counter(entry.defect_names) == Counter(counts)
        assert entry.seed == 3
        assert entry.host == host


def test_density_resolves_to_counts():
    host = get_host("MoS2")
    n_s = 2 * 5 * 5
    entries = generate_defect_entries(
        host, supercell="5x5", vacancies=False, defect_density={"v_S": 0.1}, n_configs=2
    )
    assert all(e.defect_names.count("v_S") == round(0.1 * n_s) for e in entries)


def test_seeded_reproducibility():
    kwargs = {"supercell": "5x5", "vacancies": False, "defect_counts": {"v_S": 3}, "n_configs": 6}
    a = generate_defect_entries("MoS2", seed=7, **kwargs)
    b = generate_defect_entries("MoS2", seed=7, **kwargs)
    c = generate_defect_entries("MoS2", seed=8, **kwargs)
    assert [e.defect_id for e in a] == [e.defect_id for e in b]
    for ea, eb in zip(a, b, strict=True):
        assert np.allclose(ea.structure.frac_coords, eb.structure.frac_coords)
        assert ea.structure.site_properties == eb.structure.site_properties
    assert [e.defect_id for e in a] != [e.defect_id for e in c]


def test_single_s_vacancy_is_one_configuration():
    singles = generate_defect_entries("MoS2", supercell="4x4", vacancies=["S"])
    drawn = generate_defect_entries(
        "MoS2", supercell="4x4", vacancies=False, defect_counts={"v_S": 1}, n_configs=10
    )
    assert len(singles) == len(drawn) == 1
    assert singles[0].defect_id == drawn[0].defect_id  # symmetry-canonical id


def test_duplicates_match_structure_matcher():
    """Distinct divacancies of 3x3 MoS2 = StructureMatcher groups of all S-site pairs."""
    host = get_host("MoS2")
    matrix = parse_supercell("3x3", is_2d=True)
    pristine = pristine_supercell(host, matrix)
    s_sites = [i for i, site in enumerate(pristine) if site.species_string == "S"]
    pairs = list(itertools.combinations(s_sites, 2))
    structures = []
    for pair in pairs:
        s = pristine.copy()
        s.remove_sites(list(pair))
        structures.append(s)
    matcher = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False)
    n_groups = len(matcher.group_structures(structures))

    drawn = generate_defect_entries(
        host, supercell="3x3", vacancies=False, defect_counts={"v_S": 2}, n_configs=1000
    )
    assert len(drawn) == n_groups
    perms = site_permutations(pristine)
    forms = {canonical_form([(i, "v"), (j, "v")], perms) for i, j in pairs}
    assert len(forms) == n_groups


def test_supercell_parsing():
    assert parse_supercell("4x4", is_2d=True).tolist() == [[4, 0, 0], [0, 4, 0], [0, 0, 1]]
    assert parse_supercell(3, is_2d=False).tolist() == np.diag([3, 3, 3]).tolist()
    m = [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert parse_supercell(m, is_2d=True).tolist() == m
    for bad in ("4x4x2", [[2, 0, 0], [0, 2, 0], [0, 0, 2]], [[2, 0, 1], [0, 2, 0], [0, 0, 1]]):
        with pytest.raises(ValueError, match="2D"):
            parse_supercell(bad, is_2d=True)
    with pytest.raises(ValueError, match="integer"):
        parse_supercell([[2.5, 0, 0], [0, 2, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="singular"):
        parse_supercell([[1, 0, 0], [2, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="parse"):
        parse_supercell("four by four")
    with pytest.raises(ValueError, match="left-handed"):
        parse_supercell([[-2, 0, 0], [0, 2, 0], [0, 0, 1]])
    assert parse_supercell("3, 3, 3").tolist() == np.diag([3, 3, 3]).tolist()


@pytest.mark.parametrize("name", ["MoS2", "BP", "Si"])
def test_automatic_supercell(name):
    host = get_host(name)
    matrix = find_supercell(host, min_length=10.0)
    lattice = pristine_supercell(host, matrix).lattice
    if host.is_2d:
        assert matrix[2].tolist() == [0, 0, 1] and matrix[:, 2].tolist() == [0, 0, 1]
        assert math.isclose(lattice.c, host.structure.lattice.c)
        vecs = [
            i * lattice.matrix[0] + j * lattice.matrix[1]
            for i, j in [(1, 0), (0, 1), (1, -1), (1, 1)]
        ]
        assert min(np.linalg.norm(v) for v in vecs) >= 10.0 - 1e-6
        smaller = np.diag([max(1, matrix[0, 0] - 1), matrix[1, 1], 1])
        assert (smaller == matrix).all() or min(
            pristine_supercell(host, smaller).lattice.abc[:2]
        ) < 10.0
    else:
        assert min(lattice.abc) >= 10.0 - 1e-6


def test_hosts():
    for name in HOSTS:
        host = get_host(name)
        s = host.structure
        assert is_slab(s) == host.is_2d
        if host.is_2d:
            z = s.cart_coords[:, 2]
            assert 14.0 <= s.lattice.c - np.ptp(z) <= 20.0  # vacuum gap
        dists = s.distance_matrix[np.triu_indices(len(s), 1)]
        assert dists.min() > 1.2  # no overlapping atoms
    assert get_host("MoS2").structure.lattice.a == pytest.approx(3.19)
    assert get_host("wse2").structure.lattice.a == pytest.approx(3.32)
    assert get_host("hBN").structure.lattice.a == pytest.approx(2.50)
    assert len(get_host("InSe").structure) == len(get_host("GaSe").structure) == 4
    assert len(get_host("phosphorene").structure) == 4


def test_host_from_file(tmp_path):
    path = tmp_path / "myhost.cif"
    get_host("MoS2").structure.to(filename=str(path))
    entries = generate_defect_entries(path, supercell="2x2", vacancies=["S"])
    assert entries[0].host == "myhost" and entries[0].is_2d
    check_marked_file = entries[0].structure.site_properties[MARKER_KEY]
    assert check_marked_file[-1] == VACANCY


def test_errors():
    with pytest.raises(ValueError, match=r"Unknown host 'MoSe5'.*MoS2.*WSe2"):
        generate_defect_entries("MoSe5")
    with pytest.raises(ValueError, match="Xx"):
        generate_defect_entries("MoS2", supercell="2x2", dopants=["Xx"])
    with pytest.raises(ValueError, match="Xx"):
        generate_defect_entries("MoS2", supercell="2x2", vacancies=False, defect_counts={"Xx_S": 1})
    with pytest.raises(ValueError, match="only 9"):
        generate_defect_entries(
            "MoS2", supercell="3x3", vacancies=False, defect_counts={"v_Mo": 10}
        )
    with pytest.raises(ValueError, match="no Se sites"):
        generate_defect_entries("MoS2", supercell="3x3", vacancies=False, defect_counts={"v_Se": 1})
    with pytest.raises(ValueError, match="singular"):
        generate_defect_entries("MoS2", supercell=[[1, 0, 0], [1, 0, 0], [0, 0, 1]])


def test_maker_runs_in_jobflow():
    from jobflow import JobStore, run_locally
    from maggma.stores import MemoryStore

    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    maker = DefectSupercellMaker(supercell="3x3", defect_counts={"v_S": 2}, n_configs=3, seed=1)
    job = maker.make("MoS2")
    responses = run_locally(job, store=store, ensure_success=True)
    output = responses[job.uuid][1].output
    assert all(isinstance(e, DefectEntry) for e in output)
    assert {len(e.defects) for e in output} == {1, 2}
    assert isinstance(output[0].structure, Structure)
    assert store.additional_stores["data"].count() >= len(output)  # structures went to "data"
    loaded = store.get_output(job.uuid, load=True)
    assert len(loaded) == len(output)
    assert Structure.from_dict(loaded[0]["structure"]) == output[0].structure
