"""Defect supercells with DefiNet markers: single defects and random multi-defect sets.

Single vacancies, substitutions and interstitials come from the symmetry-aware generators of
pymatgen-analysis-defects, run on the host unit cell and placed in the pristine supercell.
Multi-defect configurations (2DMD style: ``k`` vacancies and ``m`` dopants) are drawn at
random with a seed; symmetry-equivalent configurations are removed by mapping each one to a
canonical form under the space-group operations of the pristine supercell.

Every structure is a *marked structure* (see CONTRACTS.md): site property
``defect_marker`` 0/1/2/3, real atoms in pristine order, interstitials after them and
vacancy nodes (the missing element at the ideal site) appended at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field
from pymatgen.core import Element, Structure

from definet.data.markers import (
    INTERSTITIAL,
    MARKER_KEY,
    PRISTINE,
    SUBSTITUTION,
    VACANCY,
)
from definet.data.markers import parse_supercell as supercell_matrix
from definet_flows.hosts import DEFAULT_VACUUM, Host, load_host

__all__ = [
    "INTERSTITIAL",
    "MARKER_KEY",
    "PRISTINE",
    "SUBSTITUTION",
    "VACANCY",
    "DefectEntry",
    "DefectSite",
    "DefectSupercellMaker",
    "build_marked_structure",
    "canonical_form",
    "find_supercell",
    "generate_defect_entries",
    "multi_defect_configurations",
    "parse_defect_counts",
    "parse_supercell",
    "pristine_supercell",
    "single_defect_configurations",
    "site_permutations",
]

logger = logging.getLogger(__name__)


DefectType = Literal["vacancy", "substitution", "interstitial"]


class DefectSite(BaseModel):
    """One point defect in a supercell."""

    type: DefectType = Field(description="Kind of point defect.")
    species: str = Field(
        description="Element at the defect: the removed element for a vacancy, the dopant "
        "for a substitution, the inserted element for an interstitial."
    )
    host_species: str | None = Field(
        None, description="Element of the pristine site (None for interstitials)."
    )
    site_index: int | None = Field(
        None, description="Index of the site in the pristine supercell (None for interstitials)."
    )
    frac_coords: list[float] = Field(description="Fractional coordinates in the supercell.")

    @property
    def name(self) -> str:
        """Defect name as in pymatgen-analysis-defects: ``v_S``, ``W_Mo``, ``Li_i``."""
        if self.type == "vacancy":
            return f"v_{self.species}"
        if self.type == "substitution":
            return f"{self.species}_{self.host_species}"
        return f"{self.species}_i"


class DefectEntry(BaseModel):
    """A marked defect supercell with its provenance."""

    defect_id: str = Field(
        description="Stable id: hash of host, supercell and symmetry-canonical defect list."
    )
    host: str = Field(description="Host name (built-in name or structure-file stem).")
    host_formula: str = Field(description="Reduced formula of the host.")
    formula: str = Field(description="Formula of the defect supercell (real atoms only).")
    is_2d: bool = Field(description="Whether the host is a 2D monolayer.")
    defects: list[DefectSite] = Field(description="The point defects in this supercell.")
    supercell_matrix: list[list[int]] = Field(
        description="Integer matrix M with supercell lattice = M @ host lattice."
    )
    seed: int | None = Field(None, description="Random seed of a multi-defect draw.")
    n_sites: int = Field(description="Number of real atoms (vacancy nodes excluded).")
    structure: Structure = Field(
        description="Marked structure: site property defect_marker, vacancy nodes at the end."
    )

    @property
    def defect_types(self) -> list[str]:
        """Sorted distinct defect types."""
        return sorted({d.type for d in self.defects})

    @property
    def defect_names(self) -> list[str]:
        """Defect names, e.g. ``["v_S", "v_S", "W_Mo"]``."""
        return [d.name for d in self.defects]

    @property
    def defect_structure(self) -> Structure:
        """The structure to relax: real atoms only (markers kept)."""
        s = self.structure.copy()
        s.remove_sites([i for i, m in enumerate(s.site_properties[MARKER_KEY]) if m == VACANCY])
        return s


# --------------------------------------------------------------------------- supercells


def parse_supercell(spec: str | int | Sequence, is_2d: bool = False) -> np.ndarray:
    """Return a 3x3 integer supercell matrix from ``"4x4"``, ``"3x3x2"``, ``n``, 3 or 3x3 ints.

    For 2D hosts the c axis is never repeated (``"4x4"`` means ``diag(4, 4, 1)``).

    Raises
    ------
    ValueError
        Non-integer, singular, left-handed or (2D) c-repeating matrices, or bad strings.
    """
    if not isinstance(spec, str) and np.ndim(spec) == 0:  # n: n x n (x 1 for 2D hosts)
        spec = [spec, spec, 1 if is_2d else spec]
    matrix = supercell_matrix(spec)
    if round(np.linalg.det(matrix)) < 0:
        raise ValueError(f"Supercell matrix {matrix.tolist()} is left-handed (det < 0)")
    if is_2d and (matrix[2].tolist() != [0, 0, 1] or matrix[:, 2].tolist() != [0, 0, 1]):
        raise ValueError(f"2D host: the supercell must not repeat or mix c, got {matrix.tolist()}")
    return matrix


def _shortest_in_plane(lattice_matrix: np.ndarray) -> float:
    a, b = lattice_matrix[0], lattice_matrix[1]
    vecs = [i * a + j * b for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
    return float(min(np.linalg.norm(v) for v in vecs))


def find_supercell(
    host: Host, min_length: float = 10.0, min_atoms: int = 0, max_atoms: int = 400
) -> np.ndarray:
    """Return the smallest supercell with periodic images ``min_length`` A apart.

    2D hosts get a diagonal in-plane ``n1 x n2 x 1`` cell; bulk hosts use
    pymatgen-analysis-defects' ``get_sc_fromstruct`` (near-cubic cells).
    """
    n_uc = len(host.structure)
    if not host.is_2d:
        from pymatgen.analysis.defects.supercells import get_sc_fromstruct

        matrix = get_sc_fromstruct(
            host.structure,
            min_atoms=max(min_atoms, 1),
            max_atoms=max_atoms,
            min_length=min_length,
        )
        if matrix is None:
            raise ValueError(
                f"No supercell of {host.name} with min_length={min_length} within {max_atoms} atoms"
            )
        return np.asarray(matrix, dtype=int)
    lat = host.structure.lattice.matrix
    n = [max(1, int(np.ceil(min_length / np.linalg.norm(lat[i]) - 1e-8))) for i in (0, 1)]
    while True:
        sc = np.diag([*n, 1]) @ lat
        if _shortest_in_plane(sc) >= min_length - 1e-8 and n[0] * n[1] * n_uc >= min_atoms:
            break
        n[int(np.argmin(np.linalg.norm(sc[:2], axis=1)))] += 1
    if n[0] * n[1] * n_uc > max_atoms:
        raise ValueError(
            f"A {n[0]}x{n[1]} supercell of {host.name} has {n[0] * n[1] * n_uc} atoms "
            f"> max_atoms={max_atoms}"
        )
    return np.diag([*n, 1])


def pristine_supercell(host: Host, matrix: np.ndarray) -> Structure:
    """Return the pristine supercell with every ``defect_marker`` set to 0."""
    sc = host.structure.copy(site_properties={}) * np.asarray(matrix)
    sc.add_site_property(MARKER_KEY, [PRISTINE] * len(sc))
    return sc


# --------------------------------------------------------------------------- symmetry


def _wrap(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates wrapped into [0, 1)."""
    frac = np.asarray(frac) % 1.0
    return np.where(frac >= 1.0, 0.0, frac)


def site_permutations(pristine: Structure, symprec: float = 0.01, tol: float = 1e-3) -> np.ndarray:
    """Return ``perm[op, i]``: the site that symmetry operation ``op`` sends site ``i`` to.

    Operations are those of the supercell (point operations times internal translations),
    as found by spglib.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from scipy.spatial import cKDTree

    ops = SpacegroupAnalyzer(pristine, symprec=symprec).get_symmetry_operations(cartesian=False)
    frac = _wrap(pristine.frac_coords)
    tree = cKDTree(frac, boxsize=1.0)
    species = np.array([s.species_string for s in pristine])
    perms = []
    for op in ops:
        dist, idx = tree.query(_wrap(op.operate_multi(frac)))
        if dist.max() < max(tol, symprec) and (species[idx] == species).all():
            perms.append(idx)
    return np.unique(np.array(perms, dtype=int), axis=0)


def canonical_form(
    config: Sequence[tuple[int, str]], perms: np.ndarray
) -> tuple[tuple[int, str], ...]:
    """Return the symmetry-canonical form of a configuration of ``(site, label)`` pairs.

    Two configurations are equivalent iff their canonical forms are equal: the form is the
    lexicographically smallest sorted image over all site permutations ``perms``.
    """
    labels = sorted({lab for _, lab in config})
    code = {lab: k for k, lab in enumerate(labels)}
    sites = np.array([s for s, _ in config], dtype=int)
    codes = np.array([code[lab] for _, lab in config], dtype=int)
    images = np.sort(perms[:, sites] * len(labels) + codes, axis=1)
    best = images[np.lexsort(images.T[::-1])[0]]
    return tuple((int(v // len(labels)), labels[int(v % len(labels))]) for v in best)


# --------------------------------------------------------------------------- structures


def build_marked_structure(pristine: Structure, defects: Sequence[DefectSite]) -> Structure:
    """Apply ``defects`` to ``pristine`` and return the marked structure.

    Real atoms keep their pristine order, interstitials follow them, vacancy nodes (the
    removed element at its ideal site, marker 2) are appended last.
    """
    s = pristine.copy()
    vacancies = sorted((d for d in defects if d.type == "vacancy"), key=lambda d: d.site_index)
    for d in defects:
        if d.type == "substitution":
            s.replace(d.site_index, d.species, properties={MARKER_KEY: SUBSTITUTION})
    s.remove_sites([d.site_index for d in vacancies])
    for d in defects:
        if d.type == "interstitial":
            s.append(d.species, d.frac_coords, properties={MARKER_KEY: INTERSTITIAL})
    for d in vacancies:
        s.append(d.species, pristine[d.site_index].frac_coords, properties={MARKER_KEY: VACANCY})
    return s


def _defect_id(host: Host, matrix: np.ndarray, defects: Sequence[DefectSite]) -> str:
    lat = host.structure.lattice
    payload = {
        "host": host.name,
        "formula": host.structure.formula,
        "lattice": [round(x, 3) for x in (*lat.abc, *lat.angles)],
        "supercell": np.asarray(matrix).tolist(),
        "defects": sorted(
            [
                d.type,
                d.species,
                d.host_species or "",
                -1 if d.site_index is None else d.site_index,
                [round(x % 1.0, 3) for x in d.frac_coords] if d.type == "interstitial" else [],
            ]
            for d in defects
        ),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _entry(
    host: Host,
    matrix: np.ndarray,
    pristine: Structure,
    defects: list[DefectSite],
    seed: int | None = None,
) -> DefectEntry:
    marked = build_marked_structure(pristine, defects)
    n_real = sum(m != VACANCY for m in marked.site_properties[MARKER_KEY])
    real = Structure.from_sites([site for site in marked if site.properties[MARKER_KEY] != VACANCY])
    return DefectEntry(
        defect_id=_defect_id(host, matrix, defects),
        host=host.name,
        host_formula=host.structure.reduced_formula,
        formula=real.formula.replace(" ", ""),
        is_2d=host.is_2d,
        defects=defects,
        supercell_matrix=np.asarray(matrix).tolist(),
        seed=seed,
        n_sites=n_real,
        structure=marked,
    )


def _site(pristine: Structure, index: int, label: str) -> DefectSite:
    host_el = pristine[index].species_string
    coords = pristine[index].frac_coords.tolist()
    if label == "v":
        return DefectSite(
            type="vacancy",
            species=host_el,
            host_species=host_el,
            site_index=index,
            frac_coords=coords,
        )
    return DefectSite(
        type="substitution",
        species=label,
        host_species=host_el,
        site_index=index,
        frac_coords=coords,
    )


def _check_element(symbol: str, what: str) -> str:
    if not Element.is_valid_symbol(symbol):
        raise ValueError(f"{what} {symbol!r} is not a chemical element")
    return symbol


# --------------------------------------------------------------------------- single defects


def _to_supercell_index(pristine: Structure, frac_uc: np.ndarray, matrix: np.ndarray) -> int:
    frac_sc = np.asarray(frac_uc) @ np.linalg.inv(matrix)
    dists = pristine.lattice.get_all_distances([frac_sc], pristine.frac_coords)[0]
    index = int(np.argmin(dists))
    if dists[index] > 1e-2:
        raise RuntimeError(f"No supercell site at {frac_sc} (nearest {dists[index]:.3f} A)")
    return index


def single_defect_configurations(
    host: Host,
    matrix: np.ndarray,
    pristine: Structure,
    vacancies: bool | Sequence[str] = True,
    dopants: Sequence[str] | dict[str, Sequence[str]] | None = None,
    interstitials: Sequence[str] | None = None,
    symprec: float = 0.01,
    max_interstitial_distance: float = 3.0,
) -> Iterable[list[DefectSite]]:
    """Yield symmetry-distinct single defects from pymatgen-analysis-defects generators.

    Parameters
    ----------
    host, matrix, pristine
        Host, supercell matrix and the pristine supercell built from them.
    vacancies
        True for vacancies of every element, a list of elements, or False.
    dopants
        Dopant elements placed on every host element, or ``{host_element: [dopants]}``.
    interstitials
        Elements inserted at Voronoi interstitial sites. For 2D hosts, sites farther than
        ``max_interstitial_distance`` A from every atom (in the vacuum) are dropped.
    symprec
        Symmetry tolerance of the generators.
    """
    from pymatgen.analysis.defects.generators import (
        SubstitutionGenerator,
        VacancyGenerator,
        VoronoiInterstitialGenerator,
    )

    unit = host.structure
    elements = sorted({s.species_string for s in unit})
    if vacancies:
        rm = elements if vacancies is True else list(vacancies)
        for el in rm:
            if el not in elements:
                raise ValueError(f"Vacancy element {el!r} is not in host {host.name} ({elements})")
        for vac in VacancyGenerator(symprec=symprec).generate(unit, rm_species=rm):
            index = _to_supercell_index(pristine, vac.site.frac_coords, matrix)
            yield [_site(pristine, index, "v")]
    if dopants:
        subs = dict(dopants) if isinstance(dopants, dict) else dict.fromkeys(elements, dopants)
        for el, dops in subs.items():
            if el not in elements:
                raise ValueError(
                    f"Substituted element {el!r} is not in host {host.name} ({elements})"
                )
            dops = [
                _check_element(d, "Dopant") for d in ([dops] if isinstance(dops, str) else dops)
            ]
            subs[el] = [d for d in dops if d != el]
        subs = {el: d for el, d in subs.items() if d}
        for sub in SubstitutionGenerator(symprec=symprec).generate(unit, substitution=subs):
            index = _to_supercell_index(pristine, sub.site.frac_coords, matrix)
            yield [_site(pristine, index, sub.site.species_string)]
    if interstitials:
        species = [_check_element(el, "Interstitial element") for el in interstitials]
        for inter in VoronoiInterstitialGenerator().generate(unit, insert_species=species):
            frac_uc = inter.site.frac_coords
            nearest = unit.lattice.get_all_distances([frac_uc], unit.frac_coords).min()
            if host.is_2d and nearest > max_interstitial_distance:
                continue
            frac_sc = (np.asarray(frac_uc) @ np.linalg.inv(matrix)) % 1.0
            yield [
                DefectSite(
                    type="interstitial",
                    species=inter.site.species_string,
                    frac_coords=frac_sc.tolist(),
                )
            ]


# --------------------------------------------------------------------------- multi-defects

_NAME = re.compile(r"^(?P<a>[A-Za-z]{1,2})_(?P<b>[A-Za-z]{1,2})$")


def parse_defect_name(name: str, elements: Iterable[str]) -> tuple[str, str]:
    """``(host_element, label)`` of a multi-defect name (``v_S`` -> ``("S", "v")``, ``W_Mo``
    -> ``("Mo", "W")``) on a host of ``elements``.

    Raises
    ------
    ValueError
        Unparseable names, interstitials, unknown dopants, or a site element the host lacks.
    """
    m = _NAME.match(name.strip())
    if m is None:
        raise ValueError(f"Cannot parse defect {name!r}; use e.g. 'v_S' or 'W_Mo'")
    a, b = m["a"], m["b"]
    if b == "i":
        raise ValueError(f"Interstitials ({name}) are only generated as single defects")
    label = "v" if a.lower() in ("v", "va") else _check_element(a, "Dopant")
    elements = sorted(elements)
    if b not in elements:
        raise ValueError(f"{name}: host supercell has no {b} sites (has {elements})")
    return b, label


def parse_defect_counts(
    pristine: Structure,
    counts: dict[str, int] | None = None,
    density: dict[str, float] | None = None,
) -> dict[tuple[str, str], int]:
    """Resolve defect names to ``{(host_element, label): count}``; label ``"v"`` or a dopant.

    Names follow pymatgen-analysis-defects: ``v_S`` (S vacancy), ``W_Mo`` (W on a Mo site).
    ``density`` gives the fraction of the host element's sites (rounded, at least 1).

    Raises
    ------
    ValueError
        Unknown names or elements, interstitials, or more defects than sites.
    """
    sites = {}
    for s in pristine:
        sites[s.species_string] = sites.get(s.species_string, 0) + 1
    requested: dict[str, float] = {**(counts or {})}
    for name, frac in (density or {}).items():
        if not 0 < frac <= 1:
            raise ValueError(f"Density of {name} must be in (0, 1], got {frac}")
    resolved: dict[tuple[str, str], int] = {}
    for name, value in [*requested.items(), *(density or {}).items()]:
        b, label = parse_defect_name(name, sites)
        n = value if name in requested else max(1, round(value * sites[b]))
        if n != int(n) or n < 0:
            raise ValueError(f"Count of {name} must be a non-negative integer, got {value}")
        if n:
            resolved[(b, label)] = resolved.get((b, label), 0) + int(n)
    for el in sites:
        total = sum(n for (b, _), n in resolved.items() if b == el)
        if total > sites[el]:
            raise ValueError(
                f"Impossible: {total} defects on {el} sites but the supercell has only {sites[el]}"
            )
    if not resolved:
        raise ValueError("No defects requested")
    return resolved


def multi_defect_configurations(
    pristine: Structure,
    counts: dict[tuple[str, str], int],
    n_configs: int,
    seed: int,
    perms: np.ndarray,
    max_attempts: int | None = None,
) -> list[tuple[tuple[int, str], ...]]:
    """Draw up to ``n_configs`` symmetry-distinct random configurations.

    Parameters
    ----------
    pristine
        Pristine supercell.
    counts
        ``{(host_element, label): n}`` from :func:`parse_defect_counts`.
    n_configs
        Number of distinct configurations wanted; fewer are returned when fewer exist.
    seed
        Seed of ``numpy.random.default_rng``; the same seed gives the same list.
    perms
        Site permutations of the supercell (:func:`site_permutations`).
    max_attempts
        Draws before giving up (default ``50 * n_configs + 200``).

    Returns
    -------
    list
        Canonical configurations, tuples of ``(site_index, label)``, in draw order.
    """
    rng = np.random.default_rng(seed)
    species = np.array([s.species_string for s in pristine])
    pools = {el: np.flatnonzero(species == el) for el in {b for b, _ in counts}}
    found: dict[tuple, None] = {}
    for _ in range(max_attempts or 50 * n_configs + 200):
        config = []
        for el, pool in sorted(pools.items()):
            labels = [lab for (b, lab), n in sorted(counts.items()) if b == el for _ in range(n)]
            chosen = rng.choice(pool, size=len(labels), replace=False)
            config.extend(zip(chosen.tolist(), labels, strict=True))
        found.setdefault(canonical_form(config, perms))
        if len(found) >= n_configs:
            break
    if len(found) < n_configs:
        logger.info("Found %d of %d requested distinct configurations", len(found), n_configs)
    return list(found)


# --------------------------------------------------------------------------- entry point


def generate_defect_entries(
    host: str | Path | Structure | Host,
    supercell: str | int | Sequence | None = None,
    min_length: float = 10.0,
    min_atoms: int = 0,
    max_atoms: int = 400,
    vacancies: bool | Sequence[str] = True,
    dopants: Sequence[str] | dict[str, Sequence[str]] | None = None,
    interstitials: Sequence[str] | None = None,
    defect_counts: dict[str, int] | None = None,
    defect_density: dict[str, float] | None = None,
    n_configs: int = 10,
    seed: int = 0,
    vacuum: float = DEFAULT_VACUUM,
    symprec: float = 0.01,
) -> list[DefectEntry]:
    """Return marked defect supercells of ``host``; see :class:`DefectSupercellMaker`."""
    host = load_host(host, vacuum=vacuum)
    if supercell is None:
        matrix = find_supercell(host, min_length, min_atoms, max_atoms)
    else:
        matrix = parse_supercell(supercell, is_2d=host.is_2d)
    pristine = pristine_supercell(host, matrix)
    perms = site_permutations(pristine, symprec=symprec)
    entries: list[DefectEntry] = []
    for defects in single_defect_configurations(
        host, matrix, pristine, vacancies, dopants, interstitials, symprec
    ):
        if defects[0].type != "interstitial":  # same site as a multi-defect draw would pick
            label = "v" if defects[0].type == "vacancy" else defects[0].species
            ((index, _),) = canonical_form([(defects[0].site_index, label)], perms)
            defects = [_site(pristine, index, label)]
        entries.append(_entry(host, matrix, pristine, defects))
    if defect_counts or defect_density:
        counts = parse_defect_counts(pristine, defect_counts, defect_density)
        for config in multi_defect_configurations(pristine, counts, n_configs, seed, perms):
            defects = [_site(pristine, i, lab) for i, lab in config]
            entries.append(_entry(host, matrix, pristine, defects, seed=seed))
    unique = {e.defect_id: e for e in entries}
    return list(unique.values())


@dataclass
class DefectSupercellMaker(Maker):
    """Maker of marked defect supercells of a host.

    Single defects (vacancies, substitutions, interstitials) are symmetry-distinct sites from
    pymatgen-analysis-defects generators; multi-defect configurations are random draws of
    ``defect_counts``/``defect_density`` with symmetry-equivalent duplicates removed.

    Parameters
    ----------
    name
        Name of the job.
    supercell
        ``"4x4"``, ``"3x3x3"``, an integer, 3 integers or a 3x3 integer matrix; None picks the
        smallest cell with ``min_length``/``min_atoms`` (2D hosts are never repeated along c).
    min_length
        Minimum distance (A) between periodic images of a defect when ``supercell`` is None.
    min_atoms, max_atoms
        Atom-count bounds of the automatic supercell.
    vacancies
        Single vacancies: True for every element, a list of elements, or False.
    dopants
        Single substitutions: dopants on every host element, or ``{host_el: [dopants]}``.
    interstitials
        Single interstitials of these elements at Voronoi sites.
    defect_counts
        Multi-defect draws, e.g. ``{"v_S": 2, "W_Mo": 1}`` (2DMD style).
    defect_density
        Multi-defect draws by fraction of the sublattice, e.g. ``{"v_S": 0.05}``.
    n_configs
        Number of distinct multi-defect configurations to draw.
    seed
        Random seed of the multi-defect draws.
    vacuum
        Vacuum (A) of built-in 2D hosts.
    symprec
        Symmetry tolerance.
    """

    name: str = "defect supercells"
    supercell: str | int | list | None = None
    min_length: float = 10.0
    min_atoms: int = 0
    max_atoms: int = 400
    vacancies: bool | list[str] = True
    dopants: list[str] | dict[str, list[str]] | None = None
    interstitials: list[str] | None = None
    defect_counts: dict[str, int] | None = None
    defect_density: dict[str, float] | None = None
    n_configs: int = 10
    seed: int = 0
    vacuum: float = DEFAULT_VACUUM
    symprec: float = 0.01

    @job(data=Structure)
    def make(self, host: str | Path | Structure) -> list[DefectEntry]:
        """Generate the defect supercells.

        Parameters
        ----------
        host
            Built-in host name (see :data:`definet_flows.hosts.HOSTS`), a structure
            file or a Structure.

        Returns
        -------
        list of DefectEntry
            Marked structures with provenance, unique by ``defect_id``.
        """
        return generate_defect_entries(
            host,
            supercell=self.supercell,
            min_length=self.min_length,
            min_atoms=self.min_atoms,
            max_atoms=self.max_atoms,
            vacancies=self.vacancies,
            dopants=self.dopants,
            interstitials=self.interstitials,
            defect_counts=self.defect_counts,
            defect_density=self.defect_density,
            n_configs=self.n_configs,
            seed=self.seed,
            vacuum=self.vacuum,
            symprec=self.symprec,
        )
