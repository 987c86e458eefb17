"""Defect markers from nearest-site matching, on constructed and on real structures."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Structure

from definet.data.markers import (
    INTERSTITIAL,
    PRISTINE,
    SUBSTITUTION,
    VACANCY,
    HostMismatchError,
    detect_supercell,
    mark_defects,
    markers_of,
    parse_supercell,
    pristine_supercell,
    strip_vacancies,
)

from .conftest import mos2_unit_cell


def noisy(structure: Structure, sigma: float = 0.08, seed: int = 1) -> Structure:
    rng = np.random.default_rng(seed)
    cart = structure.cart_coords + rng.normal(0, sigma, (len(structure), 3))
    return Structure(structure.lattice, structure.species, cart, coords_are_cartesian=True)


@pytest.fixture
def ideal() -> Structure:
    return pristine_supercell(mos2_unit_cell(), "4x4x1")


def test_vacancy_substitution_interstitial_with_noise(ideal: Structure) -> None:
    defect = ideal.copy()
    defect.replace(0, "W")  # Mo -> W
    missing = [5, 17]
    missing_species = [defect[i].specie.symbol for i in missing]
    defect.remove_sites(missing)
    defect.append("S", [0.5, 0.5, 0.25])  # middle of the Mo plane: off every ideal site
    marked = mark_defects(noisy(defect), ideal)
    markers = markers_of(marked)
    n_real = len(defect)
    assert markers[0] == SUBSTITUTION
    assert markers[n_real - 1] == INTERSTITIAL
    assert (markers[1 : n_real - 1] == PRISTINE).all()
    assert list(markers[n_real:]) == [VACANCY, VACANCY]
    assert sorted(s.specie.symbol for s in marked[n_real:]) == sorted(missing_species)
    vac_pos = {tuple(np.round(s.frac_coords % 1, 4)) for s in marked[n_real:]}
    assert vac_pos == {tuple(np.round(ideal[i].frac_coords % 1, 4)) for i in missing}
    assert len(strip_vacancies(marked)) == n_real


def test_atoms_wrapped_and_translated_still_match(ideal: Structure) -> None:
    defect = ideal.copy()
    defect.remove_sites([3])
    defect.translate_sites(list(range(len(defect))), [0.013, -0.02, 0.0], to_unit_cell=False)
    defect.translate_sites([0, 1], [1.0, -1.0, 0.0], to_unit_cell=False)  # other images
    markers = markers_of(mark_defects(defect, ideal))
    assert np.bincount(markers, minlength=4).tolist() == [len(ideal) - 1, 0, 1, 0]


def test_wrong_host_is_rejected(ideal: Structure) -> None:
    other = Structure(
        ideal.lattice,
        ["Cu"] * 4,
        [[0.1, 0.1, 0.6], [0.3, 0.3, 0.7], [0.6, 0.2, 0.8], [0.2, 0.7, 0.9]],
    )
    with pytest.raises(HostMismatchError, match="wrong host"):
        mark_defects(other, ideal)


def test_supercell_parsing_and_detection() -> None:
    assert parse_supercell("8x8").tolist() == np.diag([8, 8, 1]).tolist()
    assert parse_supercell((6, 6, 1)).tolist() == np.diag([6, 6, 1]).tolist()
    with pytest.raises(ValueError, match="singular"):
        parse_supercell([[1, 0, 0], [2, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="expected"):
        parse_supercell("eightxeight")
    unit = mos2_unit_cell()
    big = unit * (6, 6, 1)
    assert detect_supercell(unit, big.lattice).tolist() == np.diag([6, 6, 1]).tolist()


def test_bulk_supercells_are_detected_whole() -> None:
    from pymatgen.core import Lattice, Structure

    from definet.data.markers import HostMismatchError

    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    prim = si.get_primitive_structure()
    matrix = [[2, 1, 0], [0, 3, 0], [1, 0, 2]]  # not diagonal, repeats along c
    big = prim.copy()
    big.make_supercell(matrix)
    assert detect_supercell(prim, big.lattice).tolist() == matrix
    ideal = pristine_supercell(prim, lattice=big.lattice)
    assert len(ideal) == len(big) == 2 * 12  # det = 12
    with pytest.raises(HostMismatchError, match="bulk host"):
        detect_supercell(prim, Lattice.cubic(7.0))
    # a 2D host whose c was reset (vacuum) is still repeated in the plane only
    unit = mos2_unit_cell(c=14.879)
    reset = Lattice.hexagonal(unit.lattice.a * 4, 29.758)  # c = 2x the unit cell's
    assert detect_supercell(unit, reset).tolist() == np.diag([4, 4, 1]).tolist()


def test_c_reset_keeps_cartesian_coordinates() -> None:
    unit = mos2_unit_cell(c=14.879)
    ideal20 = pristine_supercell(unit * (1, 1, 1), "3x3x1")
    from pymatgen.core import Lattice

    lattice20 = Lattice.hexagonal(ideal20.lattice.a, 20.0)
    reset = pristine_supercell(unit, lattice=lattice20)
    assert reset.lattice.c == pytest.approx(20.0)
    assert np.allclose(np.sort(reset.cart_coords[:, 2]), np.sort(ideal20.cart_coords[:, 2]))


@pytest.mark.needs_data
def test_markers_on_shared_dataset(shared_data, session_cache) -> None:
    """Real pairs: defect counts from markers agree with the formula in the atoms_id."""
    from definet.data.dataset import find_host_folders, read_structure

    folders = {
        f.name: f
        for f in find_host_folders(shared_data / "definet-dataset", "val", cache_dir=session_cache)
    }
    assert {"MoS2_500", "hBN_spin_500", "BP_spin_500", "MoS2", "WSe2"} <= set(folders)
    for name in ("MoS2_500", "BP_spin_500", "hBN_spin_500", "InSe_spin_500"):
        folder = folders[name]
        unit = read_structure(folder.unit_cell)
        for atoms_id in folder.ids("val")[:10]:
            unrelaxed = read_structure(folder.pair_paths(atoms_id)[0])
            # the id names the composition: <host>_<formula>_<uuid>
            assert Composition(atoms_id.split("_")[1]) == unrelaxed.composition, atoms_id
            ideal = pristine_supercell(unit, lattice=unrelaxed.lattice)
            marked = mark_defects(unrelaxed, ideal)
            counts = np.bincount(markers_of(marked), minlength=4)
            assert counts[INTERSTITIAL] == 0, atoms_id
            assert counts[VACANCY] == len(ideal) - len(unrelaxed), atoms_id
            # 2DMD substitutes foreign elements only: one substitution per foreign atom
            host_elements = {s.symbol for s in ideal.species}
            n_foreign = sum(1 for s in unrelaxed.species if s.symbol not in host_elements)
            assert counts[SUBSTITUTION] == n_foreign > 0, atoms_id


def test_a_pristine_cell_of_another_size_is_refused() -> None:
    from pymatgen.core import Lattice

    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    bulk = si * (2, 2, 2)
    bulk.remove_sites([0])
    with pytest.raises(HostMismatchError, match="cell of lengths"):
        pristine_supercell(si, "2x2x1", lattice=bulk.lattice)  # bulk: c counts too
    ideal = pristine_supercell(si, "2x2x2", lattice=bulk.lattice)
    assert np.bincount(markers_of(mark_defects(bulk, ideal)), minlength=4)[VACANCY] == 1
    with pytest.raises(HostMismatchError, match="the pristine structure has cell"):
        mark_defects(bulk, si * (2, 2, 1))

    unit = mos2_unit_cell()
    four = unit * (4, 4, 1)
    four.remove_sites([0])
    with pytest.raises(HostMismatchError, match="in-plane vectors"):
        mark_defects(four, unit * (5, 5, 1))  # no silent interstitials or extra vacancies
    with pytest.raises(HostMismatchError, match="in-plane vectors"):
        pristine_supercell(unit, "5x5", lattice=four.lattice)
