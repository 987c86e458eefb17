"""Pack the train and val graphs of a training config into one compressed file for a GPU node.

A lent GPU machine parses CIFs slowly (~20 pairs/s on 16 cores, so ~2 min for the high-density
hosts); the packed graphs load there in seconds. Run here, where the graph cache already is:

    python scripts/gpu/pack_graphs.py --config workflows/train/experiments/high-density-gpu-h128.yaml \
        --out .gpu/graphs.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from definet.train import TrainConfig

NODE_KEYS = ("z", "marker", "pos", "y")
EDGE_KEYS = ("edge_index", "edge_image")


def pack(graphs: list[Data], prefix: str) -> dict[str, np.ndarray]:
    """Concatenated arrays of ``graphs`` with their sizes, keys prefixed by the split name."""
    arrays = {
        "n_nodes": np.array([g.num_nodes for g in graphs], np.int64),
        "n_edges": np.array([g.num_edges for g in graphs], np.int64),
        "cell": np.stack([g.cell[0].numpy() for g in graphs]),
        "host": np.array([g.host for g in graphs]),
        "atoms_id": np.array([g.atoms_id for g in graphs]),
        "edge_index": np.concatenate([g.edge_index.numpy() for g in graphs], 1).astype(np.int32),
        "edge_image": np.concatenate([g.edge_image.numpy() for g in graphs]).astype(np.int8),
    }
    for key in NODE_KEYS:
        arrays[key] = np.concatenate([g[key].numpy() for g in graphs])
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def unpack(packed: dict[str, np.ndarray], prefix: str) -> list[Data]:
    """The graphs :func:`pack` stored under ``prefix``, as the dataset reader makes them."""
    get = {k.split("/", 1)[1]: v for k, v in packed.items() if k.startswith(f"{prefix}/")}
    node_end, edge_end = np.cumsum(get["n_nodes"]), np.cumsum(get["n_edges"])
    graphs = []
    for i in range(len(node_end)):
        n0, n1 = node_end[i] - get["n_nodes"][i], node_end[i]
        e0, e1 = edge_end[i] - get["n_edges"][i], edge_end[i]
        graph = Data(
            z=torch.from_numpy(get["z"][n0:n1].astype(np.int64)),
            marker=torch.from_numpy(get["marker"][n0:n1].astype(np.int64)),
            pos=torch.from_numpy(get["pos"][n0:n1].copy()),
            y=torch.from_numpy(get["y"][n0:n1].copy()),
            cell=torch.from_numpy(get["cell"][i].copy()).unsqueeze(0),
            edge_index=torch.from_numpy(get["edge_index"][:, e0:e1].astype(np.int64)),
            edge_image=torch.from_numpy(get["edge_image"][e0:e1].copy()),
        )
        graph.host, graph.atoms_id = str(get["host"][i]), str(get["atoms_id"][i])
        graphs.append(graph)
    return graphs


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
