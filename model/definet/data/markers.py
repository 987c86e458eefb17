"""Defect markers: which sites of a structure are pristine, substituted, vacant or interstitial.

Markers are assigned by PBC-aware nearest-site matching of the structure against its ideal
(pristine) supercell, with a distance tolerance. Vacancies become virtual nodes at the empty
ideal sites, appended after all real atoms, so real atoms keep their order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

if TYPE_CHECKING:  # pymatgen loads where structures are built, so the network does not need it
    from pymatgen.core import Lattice, Structure

PRISTINE, SUBSTITUTION, VACANCY, INTERSTITIAL = 0, 1, 2, 3
MARKER_KEY = "defect_marker"
MARKER_NAMES = {
    PRISTINE: "pristine",
    SUBSTITUTION: "substitution",
    VACANCY: "vacancy",
    INTERSTITIAL: "interstitial",
}
#: Markers of every checkpoint trained before checkpoints recorded theirs (the DefiNet set and the
#: pipeline's exports of it hold vacancies and substitutions only).
DATASET_MARKERS = (PRISTINE, SUBSTITUTION, VACANCY)
#: Vacuum (A) along c that makes a cell a layer (a 2D host): :func:`is_slab`'s default.
LAYER_MIN_GAP = 7.0


def host_sites(marker):
    """Mask of a structure's host sites, pristine atoms and vacancy nodes (not substituted or
    interstitial ones), from its markers: a numpy array or a torch tensor, the same kind out."""
    return (marker == PRISTINE) | (marker == VACANCY)


class HostMismatchError(ValueError):
    """The structure does not sit on the ideal lattice of its host within tolerance."""


def parse_supercell(spec: str | Sequence[int] | Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Turn ``"8x8x1"``, ``"4x4"``, ``(6, 6, 1)`` or a 3x3 matrix into an integer 3x3 matrix."""
    if isinstance(spec, str):
        parts = [p for p in re.split(r"[x*,\s]+", spec.strip().lower()) if p]
        try:
            diag = [int(p) for p in parts]
        except ValueError as exc:
            raise ValueError(
                f"cannot parse supercell {spec!r}: expected e.g. '8x8x1' or '4x4'"
            ) from exc
        if len(diag) == 2:
            diag.append(1)
        spec = diag
    matrix = np.asarray(spec, dtype=float)
    if matrix.shape == (3,):
        matrix = np.diag(matrix)
    if matrix.shape != (3, 3) or not np.allclose(matrix, np.round(matrix)):
        raise ValueError(f"supercell {spec!r}: expected 3 integers or an integer 3x3 matrix")
    matrix = np.round(matrix).astype(int)
    if round(abs(np.linalg.det(matrix))) < 1:
        raise ValueError(f"supercell {spec!r}: the matrix is singular")
    return matrix


def detect_supercell(unit_cell: Structure, lattice: Lattice) -> np.ndarray:
    """Integer matrix M with ``lattice ~ M @ unit_cell.lattice``.

    Bulk (3D) supercells are detected whole. For 2D hosts, whose supercells may reset c
    (the high-density DefiNet set uses c = 20 A), only the in-plane rows must be integer and
    c is kept 1x: this covers the DefiNet set (8x8x1, 6x6x1) and any supercell whose in-plane
    vectors are integer combinations of the unit cell's.
    """
    inv = np.linalg.inv(unit_cell.lattice.matrix)
    matrix = lattice.matrix @ inv
    rounded = np.round(matrix)
    if not is_slab(unit_cell):
        if np.abs(matrix - rounded).max() > 0.05 or round(abs(np.linalg.det(rounded))) < 1:
            raise HostMismatchError(
                f"cell {lattice.abc} is not an integer supercell of the bulk host cell "
                f"{unit_cell.lattice.abc}"
            )
        return rounded.astype(int)
    rounded[2] = [0, 0, 1]  # c is set separately (vacuum), never repeated
    if np.abs(matrix[:2] - rounded[:2]).max() > 0.05:
        raise HostMismatchError(
            f"cell {lattice.abc} is not an integer supercell of the host cell "
            f"{unit_cell.lattice.abc}"
        )
    return rounded.astype(int)


def is_slab(unit_cell: Structure, min_gap: float = LAYER_MIN_GAP) -> bool:
    """Whether the cell has a vacuum gap of at least ``min_gap`` A along c (a 2D host)."""
    return vacuum_gap(unit_cell.frac_coords[:, 2], unit_cell.lattice.c) >= min_gap


def vacuum_gap(frac_c: np.ndarray, c_length: float) -> float:
    """Widest empty stretch (A) along c between periodic images of fractional c coordinates."""
    z = np.sort(np.asarray(frac_c, dtype=float) % 1.0)
    return float((np.diff(np.concatenate([z, [z[0] + 1.0]])) * c_length).max())


def pristine_supercell(
    unit_cell: Structure,
    supercell: str | Sequence[int] | np.ndarray | None = None,
    lattice: Lattice | None = None,
) -> Structure:
    """Build the ideal supercell of a host.

    Parameters
    ----------
    unit_cell
        Host unit cell.
    supercell
        ``"8x8x1"``, 3 integers or a 3x3 matrix; detected from ``lattice`` when omitted.
    lattice
        The defect structure's lattice. When given, the result takes this exact lattice while
        keeping the Cartesian coordinates of the ideal sites (the high-density DefiNet set
        resets c to 20 A this way).
    """
    from pymatgen.core import Structure

    if supercell is None:
        if lattice is None:
            raise ValueError("give a supercell or the lattice of the defect structure")
        matrix = detect_supercell(unit_cell, lattice)
    else:
        matrix = parse_supercell(supercell)
    ideal = unit_cell.copy()
    ideal.make_supercell(matrix)
    if lattice is None:
        return ideal
    _check_same_cell(ideal, lattice, f"host supercell {matrix.tolist()}")
    return Structure(lattice, ideal.species, ideal.cart_coords, coords_are_cartesian=True)


def _check_same_cell(pristine: Structure, lattice: Lattice, what: str) -> None:
    """Raise HostMismatchError unless ``pristine``'s cell is ``lattice``: all three vectors for
    a bulk host, the in-plane two for a slab (whose c may be reset, keeping the Cartesian
    coordinates), within 0.05 A."""
    rows = 2 if is_slab(pristine) else 3
    if not np.allclose(pristine.lattice.matrix[:rows], lattice.matrix[:rows], atol=0.05):
        kind = "in-plane vectors" if rows == 2 else "cell"
        raise HostMismatchError(
            f"{what} has {kind} of lengths {np.round(pristine.lattice.abc[:rows], 3).tolist()} "
            f"A, the structure {np.round(lattice.abc[:rows], 3).tolist()} A: another supercell "
            "or host"
        )


def _best_translation(structure: Structure, pristine: Structure) -> np.ndarray:
    """Fractional shift that maps the structure's atoms best onto the pristine sites.

    Candidate shifts map one atom of the structure onto each ideal site of the same element;
    the one with most atoms within 0.3 A of an ideal site wins. Zero when already aligned.
    """

    def n_matched(shift: np.ndarray) -> int:
        dist = pristine.lattice.get_all_distances(
            structure.frac_coords + shift, pristine.frac_coords
        )
        return int((dist.min(axis=1) < 0.3).sum())

    zero = np.zeros(3)
    best, best_n = zero, n_matched(zero)
    if best_n >= 0.9 * len(structure):
        return zero
    probe = structure[0]
    for site in pristine:
        if site.specie != probe.specie:
            continue
        shift = site.frac_coords - probe.frac_coords
        n = n_matched(shift)
        if n > best_n:
            best, best_n = shift, n
    return best


def mark_defects(
    structure: Structure,
    pristine: Structure,
    tol: float = 0.6,
    align: bool = True,
) -> Structure:
    """Return a marked copy of ``structure`` (see ``CONTRACTS.md``).

    Each atom is matched to one ideal site of ``pristine`` (minimum-image distances, optimal
    one-to-one assignment). Matched atoms of the ideal element are pristine (0), of another
    element substitutions (1); atoms farther than ``tol`` from every free ideal site are
    interstitials (3); ideal sites left empty become vacancy nodes (2) appended at the end.

    Raises
    ------
    HostMismatchError
        When ``pristine`` has another cell (all vectors for a bulk host, the in-plane ones for
        a slab), or more than half of the atoms match no ideal site (wrong host or supercell).
    """
    from pymatgen.core import Structure

    if not np.allclose(structure.lattice.matrix, pristine.lattice.matrix, atol=1e-3):
        _check_same_cell(pristine, structure.lattice, "the pristine structure")
        pristine = Structure(
            structure.lattice, pristine.species, pristine.cart_coords, coords_are_cartesian=True
        )
    shift = _best_translation(structure, pristine) if align else np.zeros(3)
    dist = pristine.lattice.get_all_distances(structure.frac_coords + shift, pristine.frac_coords)
    cost = np.where(dist <= tol, dist, 1e6)
    rows, cols = linear_sum_assignment(cost)
    matched = cost[rows, cols] < 1e6
    atom_to_site = dict(zip(rows[matched], cols[matched], strict=True))
    if len(atom_to_site) < 0.5 * len(structure):
        raise HostMismatchError(
            f"only {len(atom_to_site)} of {len(structure)} atoms lie within {tol} A of an ideal "
            f"site of the host {pristine.composition.reduced_formula}: wrong host or supercell?"
        )
    markers = []
    for i, site in enumerate(structure):
        j = atom_to_site.get(i)
        if j is None:
            markers.append(INTERSTITIAL)
        elif site.specie.symbol == pristine[j].specie.symbol:
            markers.append(PRISTINE)
        else:
            markers.append(SUBSTITUTION)
    marked = structure.copy()
    marked.add_site_property(MARKER_KEY, markers)
    occupied = set(atom_to_site.values())
    for j, site in enumerate(pristine):
        if j not in occupied:
            props = {key: None for key in marked.site_properties if key != MARKER_KEY}
            props[MARKER_KEY] = VACANCY
            marked.append(site.specie, site.frac_coords - shift, properties=props)
    return marked


def markers_of(structure: Structure) -> np.ndarray:
    """The marker array of a marked structure; a clear error where there is none."""
    if MARKER_KEY not in structure.site_properties:
        raise ValueError(
            f"structure {structure.composition.formula} has no '{MARKER_KEY}' site property: "
            "mark it with definet.data.markers.mark_defects or pass its host"
        )
    return np.asarray(structure.site_properties[MARKER_KEY], dtype=int)


def strip_vacancies(structure: Structure) -> Structure:
    """The real atoms of a marked structure (vacancy nodes dropped); unmarked ones unchanged."""
    from pymatgen.core import Structure

    markers = structure.site_properties.get(MARKER_KEY)
    if markers is None or VACANCY not in markers:
        return structure
    return Structure.from_sites(
        [site for site, m in zip(structure, markers, strict=True) if m != VACANCY]
    )
