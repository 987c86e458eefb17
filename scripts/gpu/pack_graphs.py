"""Pack the train and val graphs of a training config into one compressed file for a GPU node.

Parsing CIFs on a lent GPU machine costs minutes of its time (and pymatgen, which it lacks);
the packed graphs load there without it. Run here, where the graph cache already is:

    python scripts/gpu/pack_graphs.py --config workflows/train/experiments/high-density-gpu-h128.yaml \
        --out .gpu/graphs.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.data.separate import separate

from definet.train_config import TrainConfig

STRINGS = ("host", "atoms_id")


def pack(graphs: list[Data], prefix: str) -> dict[str, np.ndarray]:
    """``graphs`` concatenated by torch_geometric's ``InMemoryDataset.collate``, as arrays keyed
    ``<prefix>/<attribute>`` and ``<prefix>/slices:<attribute>``."""
    data, slices = InMemoryDataset.collate(graphs)
    arrays = {
        key: np.array(value) if key in STRINGS else value.numpy()
        for key, value in data.to_dict().items()
    }
    arrays["edge_index"] = arrays["edge_index"].astype(np.int32)  # local indices: half the bytes
    arrays |= {f"slices:{key}": value.numpy() for key, value in slices.items()}
    return {f"{prefix}/{key}": value for key, value in arrays.items()}


def unpack(packed: dict[str, np.ndarray], prefix: str) -> list[Data]:
    """The graphs :func:`pack` stored under ``prefix``, as the dataset reader makes them."""
    fields, slices = {}, {}
    for name, value in packed.items():
        group, _, key = name.partition("/")
        if group != prefix:
            continue
        if key.startswith("slices:"):
            slices[key.removeprefix("slices:")] = torch.from_numpy(value)
        else:
            fields[key] = value.tolist() if key in STRINGS else torch.from_numpy(value)
    fields["edge_index"] = fields["edge_index"].long()
    data = Data(**fields)
    return [separate(Data, data, i, slices, decrement=False) for i in range(len(slices["z"]) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    from definet.data.dataset import load_split  # parses CIFs: pymatgen, needed here only

    config = TrainConfig.from_yaml(args.config)
    packed: dict[str, np.ndarray] = {}
    for split in ("train", "val"):
        graphs = load_split(config.data_root, split, config.graph, hosts=config.hosts)
        packed |= pack(graphs, split)
        print(f"{split}: {len(graphs)} graphs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **packed)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
