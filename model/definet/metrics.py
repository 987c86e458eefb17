"""Coordinate errors of predicted relaxed structures, per structure and per host.

All errors exclude vacancy nodes and use minimum-image differences.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from definet.data.markers import PRISTINE, VACANCY

LOCAL_RADII = (3.0, 4.0, 5.0, 6.0)


def minimum_image(diff: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Cartesian differences mapped to their shortest periodic image."""
    frac = diff @ np.linalg.inv(cell)
    frac -= np.round(frac)
    return frac @ cell


def nearest_defects(
    pos: np.ndarray, marker: np.ndarray, cell: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-image distance of every node to its nearest defect node, and that node's index
    (inf and -1 without defects)."""
    defects = np.flatnonzero(marker != PRISTINE)
    if len(defects) == 0:
        return np.full(len(pos), np.inf), np.full(len(pos), -1)
    diff = minimum_image((pos[:, None, :] - pos[defects][None, :, :]).reshape(-1, 3), cell)
    distance = np.linalg.norm(diff, axis=1).reshape(len(pos), len(defects))
    closest = distance.argmin(axis=1)
    return distance[np.arange(len(pos)), closest], defects[closest]


@dataclass
class StructureErrors:
    """Errors of one predicted structure (angstrom)."""

    host: str
    atoms_id: str
    n_atoms: int
    mae: float
    dummy_mae: float
    displacement_error: float
    local_abs_sum: dict[float, float]
    local_count: dict[float, int]

    @property
    def ratio(self) -> float:
        return self.mae / self.dummy_mae if self.dummy_mae > 0 else float("nan")


def structure_errors(
    pred: np.ndarray,
    unrelaxed: np.ndarray,
    relaxed: np.ndarray,
    marker: np.ndarray,
    cell: np.ndarray,
    host: str = "",
    atoms_id: str = "",
) -> StructureErrors:
    """Coordinate MAE (mean |dx|,|dy|,|dz|), do-nothing MAE and local sums of one structure."""
    real = marker != VACANCY
    err = np.abs(minimum_image(pred[real] - relaxed[real], cell))
    dummy = np.abs(minimum_image(unrelaxed[real] - relaxed[real], cell))
    dist = nearest_defects(unrelaxed, marker, cell)[0][real]
    local_sum, local_n = {}, {}
    for radius in LOCAL_RADII:
        near = dist <= radius
        local_sum[radius] = float(err[near].sum())
        local_n[radius] = int(near.sum()) * 3
    return StructureErrors(
        host=host,
        atoms_id=atoms_id,
        n_atoms=int(real.sum()),
        mae=float(err.mean()),
        dummy_mae=float(dummy.mean()),
        displacement_error=float(np.linalg.norm(err, axis=1).mean()),
        local_abs_sum=local_sum,
        local_count=local_n,
    )


def graph_errors(graph, pred: torch.Tensor | np.ndarray) -> StructureErrors:
    """:func:`structure_errors` for a dataset graph and the predicted node coordinates."""
    pred = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else pred
    return structure_errors(
        np.asarray(pred, dtype=float),
        graph.pos.numpy(),
        graph.y.numpy(),
        graph.marker.numpy(),
        graph.cell[0].numpy(),
        host=getattr(graph, "host", ""),
        atoms_id=getattr(graph, "atoms_id", ""),
    )


@dataclass
class Summary:
    """Errors aggregated over structures: MAE, do-nothing MAE and displacement error averaged
    over structures; each local MAE pooled over the atoms within its radius of a defect in all
    of them (a structure with more such atoms weighs more)."""

    n: int
    mae: float
    dummy_mae: float
    ratio: float
    displacement_error: float
    local_mae_3A: float
    local_mae_4A: float
    local_mae_5A: float
    local_mae_6A: float

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(errors: Iterable[StructureErrors]) -> Summary:
    errors = list(errors)
    if not errors:
        raise ValueError("no structures to summarise")
    mae = float(np.mean([e.mae for e in errors]))
    dummy = float(np.mean([e.dummy_mae for e in errors]))

    def local(radius: float) -> float:
        n = sum(e.local_count[radius] for e in errors)
        return sum(e.local_abs_sum[radius] for e in errors) / n if n else float("nan")

    return Summary(
        n=len(errors),
        mae=mae,
        dummy_mae=dummy,
        ratio=mae / dummy if dummy else float("nan"),
        displacement_error=float(np.mean([e.displacement_error for e in errors])),
        local_mae_3A=local(3.0),
        local_mae_4A=local(4.0),
        local_mae_5A=local(5.0),
        local_mae_6A=local(6.0),
    )


def summarize_by_host(errors: Iterable[StructureErrors]) -> dict:
    """``{"hosts": {name: summary}, "overall": summary}`` as plain dicts (JSON-ready)."""
    errors = list(errors)
    by_host: dict[str, list[StructureErrors]] = {}
    for e in errors:
        by_host.setdefault(e.host, []).append(e)
    hosts = {host: summarize(errs).as_dict() for host, errs in by_host.items()}
    overall = summarize(errors).as_dict()
    overall["mean_host_ratio"] = float(np.mean([h["ratio"] for h in hosts.values()]))
    return {"hosts": hosts, "overall": overall}
