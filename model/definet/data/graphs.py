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

from definet.data.markers import VACANCY, markers_of

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

    def __post_init__(self) -> None:
        if not self.cutoff > 0:
            raise ValueError(f"graph cutoff must be > 0 A, got {self.cutoff}")
        if self.max_neighbors < 1:
            raise ValueError(f"graph max_neighbors must be >= 1, got {self.max_neighbors}")

    def as_dict(self) -> dict:
        """The settings; ``whole_shells`` only when on, so that cache keys and checkpoints
        written before it existed still match."""
        settings = asdict(self)
        if not self.whole_shells:
            del settings["whole_shells"]
        return settings

    def cap_within(self, served: GraphSettings) -> int | None:
        """How a model trained on these settings takes its edges from graphs built with
        ``served``: ``None`` when they are the same graphs, else the number of nearest edges
        per centre to keep (:class:`definet.nn.NeighbourCapped`).

        Raises
        ------
        ValueError
            When ``served`` graphs do not start with these: another cutoff, a smaller cap, or
            these keep whole shells and ``served`` does not keep the same ones.
        """
        if served == self:
            return None
        if (
            served.cutoff == self.cutoff
            and served.max_neighbors >= self.max_neighbors
            and not self.whole_shells
        ):
            return self.max_neighbors
        raise ValueError(
            f"a model trained on graph settings {self.as_dict()} cannot take its edges from "
            f"graphs built with {served.as_dict()} (same cutoff and at least as many neighbours "
            "needed; whole shells only from the same settings)"
        )


def neighbor_edges(structure: Structure, settings: GraphSettings) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``j -> i`` within the cutoff, at most ``max_neighbors`` nearest per centre (more
    where ``whole_shells`` keeps the rest of the shell the cap falls in).

    Returns ``edge_index`` (2, E) as ``[source j, target i]`` and the integer periodic image
    (E, 3) of the source: ``r_ij = pos[j] + image @ cell - pos[i]``. Edges are grouped by
    centre, nearest first, so the graph of a smaller cap is the first edges of each centre
    (:meth:`GraphSettings.cap_within`).
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
    return edge_index, np.round(images[keep]).astype(np.int64)


def unwrap_to_nearest_image(reference: Structure, target: Structure) -> np.ndarray:
    """Cartesian coordinates of ``target`` sites at the image nearest each ``reference`` site."""
    dfrac = target.frac_coords - reference.frac_coords
    dfrac -= np.round(dfrac)
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
