"""Host crystals for defect supercells: built-in 2D monolayers and bulk cells, or a file.

Built-in hosts use standard (experimental) lattice constants; 2D monolayers get a vacuum
gap of ``vacuum`` Angstrom along c (c is never repeated in supercells).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from definet.data.markers import is_slab

__all__ = ["HOSTS", "Host", "get_host", "load_host"]

DEFAULT_VACUUM = 15.0


@dataclass(frozen=True)
class Host:
    """A host crystal.

    Parameters
    ----------
    name
        Short name used in provenance and defect ids (e.g. ``"MoS2"``).
    structure
        Unit cell; for 2D hosts c is the out-of-plane (vacuum) direction.
    is_2d
        Whether the host is a monolayer (supercells never repeat along c).
    """

    name: str
    structure: Structure
    is_2d: bool


def _from_ase(atoms) -> Structure:
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms.pbc = True  # periodic images along c are separated by the vacuum gap
    return AseAtomsAdaptor.get_structure(atoms)


def _center_slab(species: list[str], a: float, cart_z: list[float], fracs_xy, vacuum: float):
    """Hexagonal monolayer from in-plane fractions and Cartesian heights."""
    z = np.asarray(cart_z) - min(cart_z)
    thickness = float(z.max())
    c = thickness + vacuum
    frac = np.column_stack([np.asarray(fracs_xy), (z + vacuum / 2) / c])
    return Structure(Lattice.hexagonal(a, c), species, frac)


def _mx2(formula: str, a: float, thickness: float, vacuum: float) -> Structure:
    from ase.build import mx2

    return _from_ase(mx2(formula, kind="2H", a=a, thickness=thickness, vacuum=vacuum / 2))


def mos2(vacuum: float = DEFAULT_VACUUM) -> Structure:
    """2H-MoS2 monolayer, a = 3.19 A, S-S height 3.19 A."""
    return _mx2("MoS2", 3.19, 3.19, vacuum)


def wse2(vacuum: float = DEFAULT_VACUUM) -> Structure:
    """2H-WSe2 monolayer, a = 3.32 A, Se-Se height 3.35 A."""
    return _mx2("WSe2", 3.32, 3.35, vacuum)


def hbn(vacuum: float = DEFAULT_VACUUM) -> Structure:
    """Hexagonal BN monolayer, a = 2.50 A."""
    from ase.build import graphene

    return _from_ase(graphene("BN", a=2.50, vacuum=vacuum / 2))


def _mx_monolayer(metal: str, a: float, d_mm: float, thickness: float, vacuum: float):
    """X-M-M-X monolayer (D3h) of GaSe/InSe: metal dimer and chalcogens eclipsed."""
    z = [-d_mm / 2, d_mm / 2, -thickness / 2, thickness / 2]
    xy = [[1 / 3, 2 / 3], [1 / 3, 2 / 3], [2 / 3, 1 / 3], [2 / 3, 1 / 3]]
    return _center_slab([metal, metal, "Se", "Se"], a, z, xy, vacuum)


def gase(vacuum: float = DEFAULT_VACUUM) -> Structure:
    """GaSe monolayer (4 atoms), a = 3.75 A, Ga-Ga 2.44 A, Se-Se height 4.78 A."""
    return _mx_monolayer("Ga", 3.75, 2.44, 4.78, vacuum)


def inse(vacuum: float = DEFAULT_VACUUM) -> Structure:
    """InSe monolayer (4 atoms), a = 4.00 A, In-In 2.79 A, Se-Se height 5.36 A."""
    return _mx_monolayer("In", 4.00, 2.79, 5.36, vacuum)


def black_phosphorus(vacuum: float = DEFAULT_VACUUM) -> Structure:
    """Phosphorene, rectangular 4-atom cell: a = 3.314 A (zigzag), b = 4.376 A (armchair).

    Cut from bulk black phosphorus (Cmce, a = 3.3136, b = 10.478, c = 4.3763 A,
    P 8f (0, 0.10168, 0.08056)).
    """
    bulk = Structure.from_spacegroup(
        "Cmce", Lattice.orthorhombic(3.3136, 10.478, 4.3763), ["P"], [[0, 0.10168, 0.08056]]
    )
    y = (bulk.frac_coords[:, 1] + 0.5) % 1 - 0.5  # layer straddles y = 0
    layer = np.abs(y) < 0.25
    height = y[layer] * 10.478
    thickness = float(np.ptp(height))
    c = thickness + vacuum
    z = (height - height.min() + vacuum / 2) / c
    frac = np.column_stack([bulk.frac_coords[layer, 0], bulk.frac_coords[layer, 2], z])
    return Structure(Lattice.orthorhombic(3.3136, 4.3763, c), ["P"] * 4, frac)


def silicon() -> Structure:
    """Diamond Si primitive cell, a = 5.431 A."""
    from ase.build import bulk

    return _from_ase(bulk("Si", "diamond", a=5.431))


def gan() -> Structure:
    """Wurtzite GaN, a = 3.189 A, c = 5.185 A, u = 0.377."""
    from ase.build import bulk

    return _from_ase(bulk("GaN", "wurtzite", a=3.189, c=5.185, u=0.377))


#: name -> (builder, is_2d); names are matched case-insensitively, aliases in _ALIASES
HOSTS: dict[str, tuple[Callable[..., Structure], bool]] = {
    "MoS2": (mos2, True),
    "WSe2": (wse2, True),
    "hBN": (hbn, True),
    "GaSe": (gase, True),
    "InSe": (inse, True),
    "BP": (black_phosphorus, True),
    "Si": (silicon, False),
    "GaN": (gan, False),
}
_ALIASES = {"bn": "hBN", "p": "BP", "phosphorene": "BP", "black_phosphorus": "BP"}


def get_host(name: str, vacuum: float = DEFAULT_VACUUM) -> Host:
    """Return a built-in host by (case-insensitive) name.

    Raises
    ------
    ValueError
        If ``name`` is not a built-in host; the message lists the valid names.
    """
    lookup = {k.lower(): k for k in HOSTS} | _ALIASES
    canonical = lookup.get(name.lower())
    if canonical is None:
        raise ValueError(
            f"Unknown host {name!r}; valid hosts: {', '.join(HOSTS)} "
            "(or a path to a structure file)"
        )
    builder, two_d = HOSTS[canonical]
    structure = builder(vacuum=vacuum) if two_d else builder()
    return Host(name=canonical, structure=structure, is_2d=two_d)


def load_host(host: str | Path | Structure | Host, vacuum: float = DEFAULT_VACUUM) -> Host:
    """Return a :class:`Host` from a built-in name, a structure file or a Structure.

    Files are read with ``Structure.from_file`` (CIF, POSCAR, ...); the host name is the
    file stem. Whether the host is 2D is guessed from a vacuum gap along c.
    """
    if isinstance(host, Host):
        return host
    if isinstance(host, Structure):
        return Host(name=host.reduced_formula, structure=host, is_2d=is_slab(host))
    path = Path(host)
    if path.is_file():
        structure = Structure.from_file(path)
        return Host(name=path.stem, structure=structure, is_2d=is_slab(structure))
    return get_host(str(host), vacuum=vacuum)
