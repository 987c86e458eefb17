"""Periodic graphs of marked structures, as torch_geometric ``Data`` objects.

Edges come from pymatgen's neighbour list on the *unrelaxed* structure and stay fixed; the
network recomputes distances and directions from the current coordinates in every layer, using
the stored periodic image of each edge (the cell is fixed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch_geometric.data import Data

from definet.data.markers import PRISTINE, VACANCY, markers_of

if TYPE_CHECKING:  # only graph building needs pymatgen; training on built graphs does not
    from pymatgen.core import Structure


#: Neighbours this close (A) to a centre's last kept one count as the same shell.
SHELL_TOLERANCE = 0.01


@dataclass(frozen=True)
class GraphSettings:
    """How graphs are built. Part of every cache key and of every checkpoint."""

    cutoff: float = 6.0
    max_neighbors: int = 50
    #: Let the cap keep a whole shell: every neighbour as near as the last one it keeps (within
    #: :data:`SHELL_TOLERANCE`) stays. Without it, a cap that falls inside a shell of
    #: equidistant neighbours (a site on an ideal lattice) keeps some of them, picked by
    #: rounding noise, so the graph is less symmetric than the structure.
    whole_shells: bool = False
    #: Also join every defect site (substitution, vacancy or interstitial node) to every node
    #: within this distance (A), both ways and uncapped, so that a defect reaches the strain
    #: field around it in one message; 0: off.
    defect_cutoff: float = 0.0

    def __post_init__(self) -> None:
        for name, value, ok, expected in (
            ("cutoff", self.cutoff, lambda x: x > 0, "> 0 A"),
            ("defect_cutoff", self.defect_cutoff, lambda x: x >= 0, ">= 0 A (0: off)"),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
                raise ValueError(f"graph {name} must be a number {expected}, got {value!r}")
        if self.max_neighbors < 1:
            raise ValueError(f"graph max_neighbors must be >= 1, got {self.max_neighbors}")

    def as_dict(self) -> dict:
        """The settings; ``whole_shells`` and ``defect_cutoff`` only when on, so that cache keys
        and checkpoints written before they existed still match."""
        settings = asdict(self)
        if not self.whole_shells:
            del settings["whole_shells"]
        if not self.defect_cutoff:
            del settings["defect_cutoff"]
        return settings

    def cap_within(self, served: GraphSettings) -> int | None:
        """How a model trained on these settings takes its edges from graphs built with
        ``served``: ``None`` when they are the same graphs, else the number of nearest edges
        per centre to keep within the cutoff (:class:`definet.nn.NeighbourCapped`; the defect
        edges of ``served`` graphs follow their capped edges, so dropping the ones beyond the
        cutoff and keeping each centre's first leaves these graphs).

        Raises
        ------
        ValueError
            When ``served`` graphs do not start with these: another cutoff, a smaller cap, or
            these keep whole shells or defect edges and ``served`` does not keep the same ones.
        """
        if served == self:
            return None
        if (
            served.cutoff == self.cutoff
            and served.max_neighbors >= self.max_neighbors
            and not self.whole_shells
            and not self.defect_cutoff
        ):
            return self.max_neighbors
        raise ValueError(
            f"a model trained on graph settings {self.as_dict()} cannot take its edges from "
            f"graphs built with {served.as_dict()} (same cutoff and at least as many neighbours "
            "needed; whole shells only from the same settings)"
        )


def neighbor_edges(structure: Structure, settings: GraphSettings) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``j -> i`` within the cutoff, at most ``max_neighbors`` nearest per centre (more
    where ``whole_shells`` keeps the rest of the shell the cap falls in), then, with
    ``defect_cutoff``, every other edge within it that has a defect site at either end (the
    structure must carry defect markers then).

    Returns ``edge_index`` (2, E) as ``[source j, target i]`` and the integer periodic image
    (E, 3) of the source: ``r_ij = pos[j] + image @ cell - pos[i]``. The capped edges are
    grouped by centre, nearest first, so the graph of a smaller cap is the first edges of each
    centre (:meth:`GraphSettings.cap_within`).
    """
    centers, neighbors, images, dists = structure.get_neighbor_list(settings.cutoff)
    order = np.lexsort((dists, centers))
    centers, neighbors, images, dists = (
        centers[order],
        neighbors[order],
        images[order],
        dists[order],
    )
    # rank of each edge among its centre's edges (edges sorted by centre, then distance)
    starts = np.searchsorted(centers, centers, side="left")
    rank = np.arange(len(centers)) - starts
    if settings.whole_shells:
        last_kept = np.full(len(structure), np.inf)  # centres under the cap keep everything
        at_cap = rank == settings.max_neighbors - 1
        last_kept[centers[at_cap]] = dists[at_cap]
        keep = dists <= last_kept[centers] + SHELL_TOLERANCE
    else:
        keep = rank < settings.max_neighbors
    edge_index = np.stack([neighbors[keep], centers[keep]]).astype(np.int64)
    images = np.round(images[keep]).astype(np.int64)
    if settings.defect_cutoff:
        edge_index, images = _add_defect_edges(
            structure, settings.defect_cutoff, edge_index, images
        )
    return edge_index, images


def _add_defect_edges(
    structure: Structure, reach: float, edge_index: np.ndarray, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``edge_index`` and ``images`` followed by the edges within ``reach`` that touch a defect
    site and are not among them yet."""
    defect = markers_of(structure) != PRISTINE
    centers, neighbors, far_images, _ = structure.get_neighbor_list(reach)
    touch = defect[centers] | defect[neighbors]
    far_index = np.stack([neighbors[touch], centers[touch]]).astype(np.int64)
    far_images = np.round(far_images[touch]).astype(np.int64)
    span = 2 * int(max(np.abs(images).max(initial=0), np.abs(far_images).max(initial=0))) + 1
    new = ~np.isin(
        _edge_keys(far_index, far_images, len(structure), span),
        _edge_keys(edge_index, images, len(structure), span),
    )
    return (
        np.concatenate([edge_index, far_index[:, new]], axis=1),
        np.concatenate([images, far_images[new]]),
    )


def _edge_keys(edge_index: np.ndarray, images: np.ndarray, n_nodes: int, span: int) -> np.ndarray:
    """One integer per distinct edge ``(source, target, image)``, for set operations; ``span``
    bounds the image components: ``|component| <= span // 2``."""
    shifted = images + span // 2
    keys = edge_index[0] * n_nodes + edge_index[1]
    for axis in range(3):
        keys = keys * span + shifted[:, axis]
    return keys


def unwrap_to_nearest_image(reference: Structure, target: Structure) -> np.ndarray:
    """Cartesian coordinates of ``target`` sites at the image nearest each ``reference`` site."""
    from pymatgen.util.coord import pbc_diff  # here: training on a device needs no pymatgen

    dfrac = pbc_diff(target.frac_coords, reference.frac_coords)
    return reference.cart_coords + dfrac @ reference.lattice.matrix


def structure_to_graph(
    marked: Structure,
    settings: GraphSettings,
    relaxed: Structure | None = None,
) -> Data:
    """Graph of a marked structure; ``y`` holds relaxed coordinates when ``relaxed`` is given.

    ``relaxed`` lists the real atoms only (no vacancy nodes), in the marked structure's order;
    vacancy nodes keep their ideal position as target and are masked out of losses.
    """
    markers = markers_of(marked)
    edge_index, images = neighbor_edges(marked, settings)
    data = Data(
        z=torch.tensor(marked.atomic_numbers, dtype=torch.long),
        marker=torch.tensor(markers, dtype=torch.long),
        pos=torch.tensor(marked.cart_coords, dtype=torch.float64),
        cell=torch.tensor(marked.lattice.matrix, dtype=torch.float64).unsqueeze(0),
        edge_index=torch.from_numpy(edge_index),
        edge_image=torch.from_numpy(images).to(torch.int8),
    )
    if relaxed is not None:
        real = np.flatnonzero(markers != VACANCY)
        y = marked.cart_coords.copy()
        from pymatgen.core import Structure

        real_sites = Structure.from_sites([marked[i] for i in real])
        y[real] = unwrap_to_nearest_image(real_sites, relaxed)
        data.y = torch.tensor(y, dtype=torch.float64)
    return data


def edge_shifts(data: Data) -> torch.Tensor:
    """Cartesian shift of every edge's source image, ``image @ cell`` of its graph."""
    cell = data.cell
    if hasattr(data, "batch") and data.batch is not None and cell.shape[0] > 1:
        cell = cell[data.batch[data.edge_index[1]]]
        return torch.einsum("ek,ekl->el", data.edge_image.to(cell.dtype), cell)
    return data.edge_image.to(cell.dtype) @ cell[0]
