"""Several DefiNets averaged: one forward, the mean of their relaxed coordinates.

Members trained with different seeds (initialisation and batch order), depths or losses err
partly in different directions; the mean of their predicted coordinates cancels part of that
spread. ``definet ensemble`` writes such a checkpoint from trained ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from definet.nn.definet import DefiNet


class EnsembleDefiNet(nn.Module):
    """The mean of the coordinates predicted by ``members`` (each applies its own guard)."""

    def __init__(self, members: Sequence[DefiNet]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        embeddings = {(m.config.max_z, m.config.num_markers) for m in members}
        if len(embeddings) > 1:
            raise ValueError(f"ensemble members differ in (max_z, num_markers): {embeddings}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config  # embedding limits (max_z, num_markers) are shared

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
        args = (z, marker, pos, edge_index, edge_shift, batch, num_graphs, cell)
        return torch.stack([member(*args) for member in self.members]).mean(dim=0)
