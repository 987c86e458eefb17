"""The kind of host a structure belongs to, so that a prediction can say when a structure lies
outside what a model was trained on.

A host kind is the chemical system of the host's sites (pristine sites and vacancy nodes, not
the substituted ones) and whether it is a layer (a vacuum gap along c, as every structure of the
DefiNet set) or bulk: ``"Mo-S layer"``, ``"Ga-N bulk"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from definet.data.markers import (
    LAYER_MIN_GAP,
    MARKER_KEY,
    host_sites,
    is_slab,
    markers_of,
    vacuum_gap,
)

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from torch_geometric.data import Data

_PERIODIC_TABLE = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As "
    "Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu "
    "Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np "
    "Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
)
#: Element symbols by atomic number (index 0 unused): training runs where pymatgen is absent
#: (``scripts/gpu``) still name the hosts they saw.
SYMBOLS = _PERIODIC_TABLE.split()
#: Dataset folder prefixes that are not the host's formula (the DefiNet set's ``hBN_spin_500``
#: holds B-N, ``BP_spin_500`` black phosphorus).
HOST_ALIASES = {"hBN": "BN", "BP": "P"}


def host_kind(symbols: Iterable[str], layer: bool) -> str:
    """``"<elements joined by '-'> layer|bulk"``, elements sorted alphabetically."""
    return f"{'-'.join(sorted(set(symbols)))} {'layer' if layer else 'bulk'}"


def chemical_system(kind: str) -> str:
    """The chemical system part of a host kind (``"Mo-S layer"`` -> ``"Mo-S"``)."""
    return kind.split()[0]


def structure_host_kind(structure: Structure) -> str | None:
    """Host kind of a structure, marked or not (unmarked: every site counts as the host's);
    None when no site is pristine or vacant."""
    symbols = [site.specie.symbol for site in structure]
    if MARKER_KEY in structure.site_properties:
        on_host = host_sites(markers_of(structure))
        host = [s for s, keep in zip(symbols, on_host, strict=True) if keep]
    else:
        host = symbols
    return host_kind(host, is_slab(structure)) if host else None


def graph_host_kind(graph: Data) -> str | None:
    """Host kind of a dataset graph (Cartesian ``pos``, ``cell``, ``z``, ``marker``); None when
    no node is pristine or vacant."""
    cell = graph.cell.reshape(3, 3).double().numpy()
    frac_c = (graph.pos.double().numpy() @ np.linalg.inv(cell))[:, 2]
    host_z = np.unique(graph.z.numpy()[host_sites(graph.marker.numpy())])
    if len(host_z) == 0:
        return None
    layer = vacuum_gap(frac_c, float(np.linalg.norm(cell[2]))) >= LAYER_MIN_GAP
    return host_kind((SYMBOLS[int(z)] for z in host_z), layer)


def host_formula(folder_name: str) -> str:
    """The host formula a dataset folder is named after (``MoS2_500`` -> ``MoS2``,
    ``hBN_spin_500`` -> ``BN``, ``BP_spin_500`` -> ``P``)."""
    stem = folder_name.replace("_spin", "").split("_")[0]
    return HOST_ALIASES.get(stem, stem)


def systems_from_folder_names(names: Iterable[str]) -> set[str]:
    """Chemical systems of dataset folders named after their host's formula; names that are no
    formula are left out."""
    from pymatgen.core import Composition

    systems = set()
    for name in names:
        try:
            elements = Composition(host_formula(name)).elements
        except (ValueError, KeyError):
            continue
        systems.add("-".join(sorted(e.symbol for e in elements)))
    return systems
