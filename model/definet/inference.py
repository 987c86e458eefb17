"""The one inference path: a model's predicted coordinates for graphs, batched, without
autograd (``Predictor``, ``definet evaluate``, validation during training and the benchmarks)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import unbatch

from definet.allocator import keep_freed_memory
from definet.data.graphs import edge_shifts
from definet.metrics import graph_errors, summarize_by_host
from definet.nn import DefiNet


def pick_device(name: str) -> torch.device:
    """``"auto"``: CUDA where available, else the CPU; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_inputs(batch: Data) -> tuple:
    """The positional arguments of :meth:`DefiNet.forward` for a (batched) graph."""
    return (
        batch.z,
        batch.marker,
        batch.pos,
        batch.edge_index,
        edge_shifts(batch),
        batch.batch,
        batch.num_graphs,
        batch.cell,
    )


def predict_batch(model: DefiNet, batch: Data) -> torch.Tensor:
    """Predicted coordinates of every node of a (batched) graph."""
    return model(*model_inputs(batch))


def predict_layer_positions(model: DefiNet, batch: Data) -> list[torch.Tensor]:
    """Coordinates of every node of a (batched) graph after each of the model's layers."""
    return model.layer_positions(*model_inputs(batch))


def predicted_batches(
    model: DefiNet, graphs: Sequence[Data], batch_size: int = 16, device: torch.device | str = "cpu"
) -> Iterator[tuple[Data, torch.Tensor]]:
    """``(batch, predicted coordinates)`` over ``graphs`` in eval mode, without gradients; both
    on the CPU, the coordinates in float64."""
    if model.training:  # eval() walks every submodule: 11 ms per call on the shipped model
        model.eval()
    keep_freed_memory()  # once per process (definet.allocator)
    for batch in DataLoader(list(graphs), batch_size=batch_size):
        # inference mode skips all of autograd's bookkeeping, version counters too; the copy
        # out of it is an ordinary tensor that autograd may use later
        with torch.inference_mode():
            pred = predict_batch(model, batch.to(device))
        yield batch.cpu(), pred.to("cpu", torch.float64, copy=True)


def predicted_coordinates(
    model: DefiNet, graphs: Sequence[Data], batch_size: int = 16, device: torch.device | str = "cpu"
) -> list[torch.Tensor]:
    """The predicted coordinates of each of ``graphs``, in their order (float64, on the CPU)."""
    out: list[torch.Tensor] = []
    for batch, pred in predicted_batches(model, graphs, batch_size, device):
        out.extend(unbatch(pred, batch.batch, batch_size=batch.num_graphs))
    return out


def evaluate_graphs(
    model: DefiNet, graphs: Sequence[Data], batch_size: int = 16, device: torch.device | str = "cpu"
) -> dict:
    """Per-host and overall errors of ``model`` on graphs carrying targets ``y``."""
    predictions = predicted_coordinates(model, graphs, batch_size, device)
    return summarize_by_host(
        graph_errors(graph, pred) for graph, pred in zip(graphs, predictions, strict=True)
    )
