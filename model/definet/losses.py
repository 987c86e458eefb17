"""Training losses: coordinate errors over real atoms, optionally host-balanced, plus neighbour
separations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.data import Data

from definet.data.markers import VACANCY

#: How an atom's coordinate error is measured: ``l1`` sums ``|dx|, |dy|, |dz|`` (the metric
#: itself, reported as a mean over components); ``euclidean`` takes the length of the error
#: vector, which does not depend on how the structure is oriented and pulls each atom straight
#: towards its target; ``mse`` squares each component, so large moves weigh more (and the
#: model learns the mean outcome, not the median the L1 metric rewards).
COORDINATE_LOSSES = ("l1", "euclidean", "mse")


def coordinate_loss(
    pred: torch.Tensor,
    batch: Data,
    host_weights: dict[str, float] | None = None,
    kind: str = "l1",
) -> torch.Tensor:
    """Mean coordinate error over real (non-vacancy) atoms, measured as ``kind``
    (:data:`COORDINATE_LOSSES`), each host's atoms scaled by ``host_weights`` when given
    (:func:`host_loss_weights`) and each graph's by its ``target_weight`` where graphs carry
    one (teacher-labelled ones, :mod:`definet.distill`)."""
    real = batch.marker != VACANCY
    delta = pred[real] - batch.y[real].to(pred.dtype)
    if kind == "l1":
        error = delta.abs()
    elif kind == "euclidean":  # the small constant keeps the gradient finite at zero error
        error = (delta.square().sum(-1, keepdim=True) + 1e-12).sqrt()
    elif kind == "mse":
        error = delta.square()
    else:
        raise ValueError(f"coordinate loss must be one of {COORDINATE_LOSSES}, got {kind!r}")
    per_graph = None
    if host_weights is not None:
        per_graph = torch.tensor(
            [host_weights[h] for h in batch.host], dtype=pred.dtype, device=pred.device
        )
    if "target_weight" in batch:
        weight = batch.target_weight.to(pred.dtype)
        per_graph = weight if per_graph is None else per_graph * weight
    if per_graph is not None:
        error = error * per_graph[batch.batch[real]].unsqueeze(-1)
    return error.mean()


def bond_loss(pred: torch.Tensor, batch: Data) -> torch.Tensor:
    """Mean absolute error of the neighbour separations ``r_j - r_i`` over graph edges between
    real atoms (the cell is fixed, so an edge's periodic shift cancels in the difference)."""
    src, dst = batch.edge_index
    real = (batch.marker[src] != VACANCY) & (batch.marker[dst] != VACANCY)
    src, dst = src[real], dst[real]
    target = batch.y.to(pred.dtype)
    return ((pred[dst] - pred[src]) - (target[dst] - target[src])).abs().mean()


def host_loss_weights(graphs: Sequence[Data]) -> dict[str, float]:
    """Per-host weights ``D / d_host`` of :func:`coordinate_loss`, where ``d_host`` is the host's
    do-nothing MAE (mean ``|y - pos|`` over its real atoms) and ``D`` that of all atoms, so
    that doing nothing costs ``D`` with or without the weights."""
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    for g in graphs:
        real = g.marker != VACANCY
        total[g.host] = total.get(g.host, 0.0) + float((g.y[real] - g.pos[real]).abs().sum())
        count[g.host] = count.get(g.host, 0) + 3 * int(real.sum())
    moved = {host: total[host] / count[host] for host in total}
    still = sorted(host for host, mae in moved.items() if mae <= 0)
    if still:
        raise ValueError(f"host_balanced_loss: hosts {still} have no displacement to scale by")
    overall = sum(total.values()) / sum(count.values())
    return {host: overall / mae for host, mae in moved.items()}


def training_loss(
    pred: torch.Tensor,
    batch: Data,
    bond_weight: float = 0.0,
    host_weights: dict[str, float] | None = None,
    kind: str = "l1",
) -> torch.Tensor:
    """Coordinate loss of ``kind`` (each host's atoms scaled by ``host_weights``, when given)
    plus ``bond_weight`` times the bond loss."""
    loss = coordinate_loss(pred, batch, host_weights, kind)
    if bond_weight:
        loss = loss + bond_weight * bond_loss(pred, batch)
    return loss
