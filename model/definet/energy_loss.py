"""Excess force-field energy of predicted structures, a training term that weighs stiff errors.

A coordinate error ``d`` costs ``d^T H d / 2`` of energy and leaves a force ``H d`` that the
relaxation must remove: the same 0.01 A is harmless along a soft mode and costs several ionic
steps along a stiff bond (hBN). The coordinate MAE cannot tell these apart; the energy of the
prediction under the force field that relaxed the training targets can. This module evaluates
that energy (CHGNet, frozen) with gradients flowing back to the predicted coordinates, and
reports it relative to the energy of the target structure, per atom.
"""

from __future__ import annotations

from copy import copy
from typing import Any

import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Data

from definet.data.markers import VACANCY

#: Force fields that can score predictions (the model must take a pymatgen graph converter
#: and give energies per atom, as CHGNet does).
ENERGY_MODELS = ("CHGNet",)


def load_energy_model(name: str) -> Any:
    """The frozen force field ``name`` (one of :data:`ENERGY_MODELS`)."""
    if name not in ENERGY_MODELS:
        raise ValueError(f"energy_model must be one of {ENERGY_MODELS}, got {name!r}")
    try:
        from chgnet.model import CHGNet
    except ImportError as exc:  # pragma: no cover - chgnet is a dependency
        raise ImportError("energy_loss_weight > 0 needs the chgnet package") from exc
    model = CHGNet.load(verbose=False)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def target_structure(graph: Data) -> Structure:
    """The relaxed target of a training graph: its real atoms (no vacancy nodes) at ``y``."""
    real = (graph.marker != VACANCY).numpy()
    return Structure(
        Lattice(graph.cell[0].numpy()),
        graph.z.numpy()[real],
        graph.y.numpy()[real],
        coords_are_cartesian=True,
    )


class ExcessEnergyLoss:
    """Mean over a batch of ``E(prediction) - E(target)`` in eV/atom under a frozen force field.

    The force field's neighbour graph of each structure is built once, at its target, and reused
    for the predictions near it (CHGNet's radial envelopes are smooth at the cutoff).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._graphs: dict[str, tuple[Any, torch.Tensor, float]] = {}

    @classmethod
    def named(cls, name: str) -> ExcessEnergyLoss:
        return cls(load_energy_model(name))

    def _prepared(self, graph: Data) -> tuple[Any, torch.Tensor, float]:
        key = graph.atoms_id
        if key not in self._graphs:
            crystal_graph = self.model.graph_converter(target_structure(graph))
            # the converter's lattice requires grad (for stresses); the cell is fixed here, and
            # a cached tensor tied to one backward pass would break the next one
            crystal_graph.lattice = crystal_graph.lattice.detach()
            inverse_lattice = torch.linalg.inv(crystal_graph.lattice)
            with torch.no_grad():
                energy = float(self.model([crystal_graph], task="e")["e"][0])
            self._graphs[key] = (crystal_graph, inverse_lattice, energy)
        return self._graphs[key]

    def __call__(self, pred: torch.Tensor, batch: Data) -> torch.Tensor:
        graphs, references = [], []
        for i, graph in enumerate(batch.to_data_list()):
            crystal_graph, inverse_lattice, energy = self._prepared(graph.cpu())
            real = batch.marker[batch.batch == i] != VACANCY
            positions = pred[batch.batch == i][real].to("cpu", torch.float32)
            moved = copy(crystal_graph)
            moved.atom_frac_coord = positions @ inverse_lattice
            graphs.append(moved)
            references.append(energy)
        energies = self.model(graphs, task="e")["e"]
        return (energies - torch.tensor(references, dtype=energies.dtype)).mean().to(pred.device)
