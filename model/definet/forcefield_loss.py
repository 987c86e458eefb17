"""Excess energy and residual forces of predicted structures under a frozen force field.

A coordinate error ``d`` costs ``d^T H d / 2`` of energy and leaves a force ``H d`` that the
relaxation must remove: the same 0.01 A is harmless along a soft mode and costs several ionic
steps along a stiff bond (hBN). The coordinate MAE cannot tell these apart; the force field that
relaxed the training targets can. This module evaluates it (CHGNet, frozen) at the predicted
coordinates, with gradients flowing back to them, as two training terms: the energy above the
target's (eV/atom) and the mean residual force (eV/A, second derivatives of the force field).
"""

from __future__ import annotations

from copy import copy
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch_geometric.data import Data

from definet.data.markers import VACANCY

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: Force fields that can score predictions (the model must take a pymatgen graph converter
#: and give energies per atom and forces, as CHGNet does).
FORCE_FIELDS = ("CHGNet",)


def load_force_field(name: str) -> Any:
    """The frozen force field ``name`` (one of :data:`FORCE_FIELDS`)."""
    if name not in FORCE_FIELDS:
        raise ValueError(f"loss_force_field must be one of {FORCE_FIELDS}, got {name!r}")
    try:
        from chgnet.model import CHGNet
    except ImportError as exc:  # pragma: no cover - chgnet is a dependency
        raise ImportError("force-field loss terms need the chgnet package") from exc
    model = CHGNet.load(verbose=False)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def real_structure(graph: Data, coords: torch.Tensor) -> Structure:
    """The real atoms of a graph (no vacancy nodes) at ``coords`` (Cartesian, one per node)."""
    from pymatgen.core import Lattice, Structure

    real = (graph.marker != VACANCY).numpy()
    return Structure(
        Lattice(graph.cell[0].numpy()),
        graph.z.numpy()[real],
        coords.detach().numpy()[real],
        coords_are_cartesian=True,
    )


def target_structure(graph: Data) -> Structure:
    """The relaxed target of a training graph: its real atoms at ``y``."""
    return real_structure(graph, graph.y)


class ForceFieldTerms(NamedTuple):
    """Means: energy above the target (eV/atom) and residual force (eV/A, or None); tensors
    while training, floats when scoring a validation."""

    excess_energy: torch.Tensor | float
    residual_force: torch.Tensor | float | None


class ForceFieldLoss:
    """Scores predicted coordinates with a frozen force field (see the module docstring).

    The force field's neighbour graph of each structure is built once, at its target, and reused
    for the predictions near it (CHGNet's radial envelopes are smooth at the cutoff).
    """

    def __init__(self, model: Any, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self._graphs: dict[str, tuple[Any, torch.Tensor, float]] = {}

    @classmethod
    def named(cls, name: str, device: torch.device | str = "cpu") -> ForceFieldLoss:
        """The force field ``name`` on ``device`` (the training device: no round trips)."""
        return cls(load_force_field(name), device)

    def _prepared(self, batch: Data, i: int) -> tuple[Any, torch.Tensor, float]:
        """Force-field graph, inverse lattice and target energy of structure ``i`` of ``batch``
        (built on first sight of its ``atoms_id``, then cached)."""
        key = batch.atoms_id[i]
        if key not in self._graphs:
            graph = batch.get_example(i).cpu()
            crystal_graph = self.model.graph_converter(target_structure(graph))
            # the converter's lattice requires grad (for stresses); the cell is fixed here, and
            # a cached tensor tied to one backward pass would break the next one
            crystal_graph.lattice = crystal_graph.lattice.detach()
            crystal_graph = crystal_graph.to(str(self.device))
            inverse_lattice = torch.linalg.inv(crystal_graph.lattice)
            with torch.no_grad():
                energy = float(self.model([crystal_graph], task="e")["e"][0])
            self._graphs[key] = (crystal_graph, inverse_lattice, energy)
        return self._graphs[key]

    def _evaluate(self, pred: torch.Tensor, batch: Data, forces: bool) -> tuple[dict, list]:
        """The force field's output at the predictions, and the target energies (eV/atom)."""
        graphs, references = [], []
        for i in range(batch.num_graphs):
            crystal_graph, inverse_lattice, energy = self._prepared(batch, i)
            real = (batch.batch == i) & (batch.marker != VACANCY)
            positions = pred[real].to(self.device, torch.float32)
            if forces and not positions.requires_grad:  # forces are d(energy)/d(positions)
                positions = positions.detach().requires_grad_(True)
            moved = copy(crystal_graph)
            moved.atom_frac_coord = positions @ inverse_lattice
            graphs.append(moved)
            references.append(energy)
        return self.model(graphs, task="ef" if forces else "e"), references

    def __call__(self, pred: torch.Tensor, batch: Data, forces: bool = False) -> ForceFieldTerms:
        """Terms of the predictions ``pred`` (all nodes of a batch from a torch_geometric
        DataLoader or ``Batch.from_data_list``; vacancy nodes ignored)."""
        out, references = self._evaluate(pred, batch, forces)
        reference = torch.tensor(references, dtype=out["e"].dtype, device=out["e"].device)
        excess = (out["e"] - reference).mean()
        force = torch.stack([f.norm(dim=1).mean() for f in out["f"]]).mean() if forces else None
        return ForceFieldTerms(
            excess.to(pred.device), None if force is None else force.to(pred.device)
        )

    def forces(self, pred: torch.Tensor, batch: Data) -> list[torch.Tensor]:
        """Force-field forces (eV/A) on the real atoms of each structure at the predictions."""
        return self._evaluate(pred, batch, forces=True)[0]["f"]
