"""New defect configurations from training ones: the same defects on other sites of a host.

A host's structures share one supercell of ideal sites (vacancy nodes included), so a graph's
nodes, positions and edges are those of the pristine supercell; only the species and markers
of its defect sites differ. :func:`shuffle_defects` moves each defect to a random site of the
same sublattice (the host element of that site), keeping the composition and the defect
count. Such configurations have no DFT target; :mod:`definet.distill` labels them with a
teacher model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from definet.data.markers import PRISTINE, SUBSTITUTION

#: Fractional coordinates are rounded to this many decimals to name a site.
SITE_DECIMALS = 3


def site_keys(graph: Data) -> list[tuple[float, float, float]]:
    """A name for each node's ideal site: its fractional coordinates, rounded and wrapped."""
    frac = (graph.pos @ torch.linalg.inv(graph.cell[0].to(graph.pos.dtype))).numpy()
    frac = np.round(np.mod(np.round(frac, SITE_DECIMALS), 1.0), SITE_DECIMALS) % 1.0
    return [tuple(row) for row in frac.tolist()]


def host_site_elements(graphs: Sequence[Data]) -> dict[str, dict[tuple, int]]:
    """Per host, the host element (atomic number) of every ideal site seen in ``graphs``.

    Pristine atoms and vacancy nodes carry their site's element; substituted sites are named
    by the other structures of the host, where the same site is pristine.

    Raises
    ------
    ValueError
        When one site holds two host elements (the host's structures do not share one set of
        ideal sites, e.g. different supercells under one host name).
    """
    sites: dict[str, dict[tuple, int]] = {}
    for graph in graphs:
        host_sites = sites.setdefault(graph.host, {})
        for key, z, marker in zip(
            site_keys(graph), graph.z.tolist(), graph.marker.tolist(), strict=True
        ):
            if marker == SUBSTITUTION:
                continue
            if host_sites.setdefault(key, z) != z:
                raise ValueError(
                    f"{graph.host}/{graph.atoms_id}: site {key} holds element {z} here and "
                    f"{host_sites[key]} in another structure; its structures do not share one "
                    "supercell of ideal sites"
                )
    return sites


def shuffle_defects(
    graph: Data, site_elements: dict[tuple, int], rng: np.random.Generator, tag: str = "shuffled"
) -> Data:
    """A copy of ``graph`` with its defects moved to random sites of their sublattices.

    Every node keeps its position and edges; per host element, the defects on its sites
    (substitutions and vacancies, with their species and markers) go to as many sites of that
    element drawn at random, and the other sites become pristine. The copy has no target ``y``.

    Raises
    ------
    KeyError
        When a substituted site of ``graph`` is missing from ``site_elements``.
    """
    keys = site_keys(graph)
    z = graph.z.clone()
    marker = graph.marker.clone()
    try:
        element = np.array([site_elements[k] for k in keys])
    except KeyError as exc:
        raise KeyError(
            f"{graph.host}/{graph.atoms_id}: site {exc.args[0]} is pristine in no structure "
            "given to host_site_elements, so its host element is unknown"
        ) from None
    for host_z in np.unique(element):
        sites = np.flatnonzero(element == host_z)
        defects = sites[graph.marker[sites].numpy() != PRISTINE]
        targets = rng.choice(sites, size=len(defects), replace=False)
        z[sites], marker[sites] = int(host_z), PRISTINE
        z[targets], marker[targets] = graph.z[defects], graph.marker[defects]
    copy = Data(
        z=z,
        marker=marker,
        pos=graph.pos,
        cell=graph.cell,
        edge_index=graph.edge_index,
        edge_image=graph.edge_image,
    )
    copy.host = graph.host
    copy.atoms_id = f"{graph.atoms_id}~{tag}"
    return copy
