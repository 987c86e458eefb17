"""A model served from graphs that keep more neighbours per atom than it was trained on.

The members of one ensemble or routed file share one graph per structure. A member trained on
graphs of the ``max_neighbors`` nearest neighbours can take its edges from graphs that keep
more (a larger cap, or whole shells): graphs list each centre's edges nearest first, so the
member's own graph is the first ``max_neighbors`` edges of every centre. Graphs with defect
edges list those after all the others, so it is the first ``max_neighbors`` of the edges within
the member's cutoff.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def first_edges_per_target(target: Tensor, k: int) -> Tensor:
    """Mask of the first ``k`` edges of every target node, in the order the edges are listed."""
    order = torch.argsort(target, stable=True)
    counts = torch.bincount(target)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=target.device) - starts[target[order]]
    return rank < k


#: Edges up to this much longer than the cutoff (A) count as within it (rounding).
CUTOFF_TOLERANCE = 1e-4


class NeighbourCapped(nn.Module):
    """``model`` on the first ``max_neighbors`` edges of every atom of the graphs it is given,
    among those no longer than ``cutoff`` (A) where one is given."""

    def __init__(self, model: nn.Module, max_neighbors: int, cutoff: float | None = None) -> None:
        super().__init__()
        if max_neighbors < 1:
            raise ValueError(f"max_neighbors must be >= 1, got {max_neighbors}")
        self.model = model
        self.max_neighbors = max_neighbors
        self.cutoff = cutoff
        self.config = model.config  # embedding limits (max_z, num_markers)

    def forward(
        self,
        z: Tensor,
        marker: Tensor,
        pos: Tensor,
        edge_index: Tensor,
        edge_shift: Tensor,
        batch: Tensor | None = None,
        num_graphs: int | None = None,
        cell: Tensor | None = None,
    ) -> Tensor:
        """Relaxed coordinates (N, 3); the arguments are those of :meth:`DefiNet.forward`."""
        if self.cutoff is not None:
            src, dst = edge_index
            length = (pos[src] + edge_shift - pos[dst]).norm(dim=-1)
            near = length <= self.cutoff + CUTOFF_TOLERANCE
            edge_index, edge_shift = edge_index[:, near], edge_shift[near]
        keep = first_edges_per_target(edge_index[1], self.max_neighbors)
        edge_index, edge_shift = edge_index[:, keep], edge_shift[keep]
        return self.model(z, marker, pos, edge_index, edge_shift, batch, num_graphs, cell)
