"""Does a universal potential's view of the start help DefiNet? A training run with CHGNet's
atom features and |magnetic moment| of every unrelaxed structure as an extra node input.

    python benchmarks/chgnet_input.py \
        --config workflows/train/experiments/learning-curve-bp-all-fnorm.yaml \
        --out-dir runs/chgnet-input/bp

One-off measurement for docs/experiments.md ("CHGNet's view of the start"): the dataset has no
magnetic moments, so CHGNet's predicted ones (and the 64 atom features they are read from, the
representation CHGNet learned from 1.5 M Materials Project frames) stand in for them. The
features enter through a zero-initialised linear map added to each node's atom embedding, so
step 0 predicts what the same DefiNet without them does; vacancy nodes get zeros. Everything
else is the config's training run (`definet train`), validated and checkpointed as usual; an
interrupted run resumes, and the features are computed once (``<out-dir>/features.pt``). Its
checkpoints hold the extra map, so only this script reads them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from definet.checkpoint import save_atomic
from definet.data.markers import VACANCY
from definet.nn import DefiNet

FEATURES = 65  # CHGNet's 64 atom features and |magnetic moment| (Bohr magneton)


def chgnet_node_features(graphs: Sequence[Data], chgnet) -> list[Tensor]:
    """(N, 65) CHGNet features of every node of each graph's start; zeros on vacancy nodes."""
    from definet.forcefield_loss import real_structure

    out = []
    for g in graphs:
        real = (g.marker != VACANCY).numpy()
        p = chgnet.predict_structure(real_structure(g, g.pos), return_atom_feas=True)
        f = np.zeros((len(real), FEATURES), dtype=np.float32)
        f[real, :-1] = p["atom_fea"]
        f[real, -1] = np.abs(p["m"])
        out.append(torch.from_numpy(f))
    return out


def attach_standardised(
    graphs: Sequence[Data], features: Sequence[Tensor], mean: Tensor, std: Tensor
) -> None:
    """Set ``g.node_input`` to the features standardised by ``mean``/``std`` (vacancies 0)."""
    for g, f in zip(graphs, features, strict=True):
        x = (f - mean) / std
        x[g.marker == VACANCY] = 0.0
        g.node_input = x


def real_atom_mean_std(graphs: Sequence[Data], features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation (floored at 1e-6) of the features over real atoms."""
    rows = torch.cat([f[g.marker != VACANCY] for g, f in zip(graphs, features, strict=True)])
    return rows.mean(0), rows.std(0).clamp_min(1e-6)


class EmbeddingWithInput(nn.Module):
    """An atom embedding plus a linear map of the node inputs set in ``current`` before a call."""

    def __init__(self, embed_z: nn.Embedding, features: int, hidden: int) -> None:
        super().__init__()
        self.embed_z = embed_z
        self.project = nn.Linear(features, hidden)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        self.current: Tensor | None = None

    @property
    def weight(self) -> Tensor:  # DefiNet reads its dtype from here
        return self.embed_z.weight

    def forward(self, z: Tensor) -> Tensor:
        if self.current is None:
            raise ValueError("node inputs not set: call through trainer_feeds_node_inputs()")
        return self.embed_z(z) + self.project(self.current.to(self.weight.dtype))


class DefiNetWithInput(DefiNet):
    """DefiNet whose atom embedding also takes :data:`FEATURES` node inputs."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.embed_z = EmbeddingWithInput(self.embed_z, FEATURES, config.hidden)


def _feeding(predict):
    def call(model: DefiNetWithInput, batch: Data):
        model.embed_z.current = batch.node_input
        return predict(model, batch)

    return call


@contextmanager
def trainer_feeds_node_inputs() -> Iterator[None]:
    """Inside: :class:`definet.train.Trainer` builds :class:`DefiNetWithInput` and hands every
    batch's ``node_input`` to it, in training and validation alike."""
    import definet.inference as inference
    import definet.train as train

    saved = (train.DefiNet, train.predict_batch, train.predict_layer_positions)
    saved_inference = inference.predict_batch
    train.DefiNet = DefiNetWithInput
    train.predict_batch = inference.predict_batch = _feeding(saved_inference)
    train.predict_layer_positions = _feeding(saved[2])
    try:
        yield
    finally:
        train.DefiNet, train.predict_batch, train.predict_layer_positions = saved
        inference.predict_batch = saved_inference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="a definet train YAML")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    from definet.data.dataset import load_split
    from definet.train import Trainer
    from definet.train_config import TrainConfig

    config = TrainConfig.from_yaml(args.config)
    config.out_dir = str(args.out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    common = dict(settings=config.graph, hosts=config.hosts, progress=False)
    graphs = {s: load_split(config.data_root, s, **common) for s in ("train", "val")}
    ids = {s: [g.atoms_id for g in gs] for s, gs in graphs.items()}
    cache = args.out_dir / "features.pt"
    try:
        saved = torch.load(cache, weights_only=True) if cache.exists() else None
    except Exception as exc:  # a damaged cache is recomputed, not trusted
        print(f"{cache}: unreadable ({type(exc).__name__}), computing the features again")
        saved = None
    if saved is not None and saved["ids"] == ids:
        features = saved["features"]
    else:
        from definet.forcefield_loss import load_force_field

        chgnet = load_force_field("CHGNet")
        start = time.perf_counter()
        features = {s: chgnet_node_features(gs, chgnet) for s, gs in graphs.items()}
        n = sum(len(gs) for gs in graphs.values())
        seconds = time.perf_counter() - start
        print(f"CHGNet features of {n} structures: {seconds:.0f} s ({seconds / n:.2f} s each)")
        save_atomic({"ids": ids, "features": features}, cache)
    moments = torch.cat(
        [f[g.marker != VACANCY, -1] for g, f in zip(graphs["val"], features["val"], strict=True)]
    )
    print(
        "|magnetic moment| on val atoms (Bohr magneton): median {:.3f}, 99th percentile {:.3f}, "
        "max {:.3f}".format(*torch.quantile(moments, torch.tensor([0.5, 0.99, 1.0])).tolist())
    )
    mean, std = real_atom_mean_std(graphs["train"], features["train"])
    for split, gs in graphs.items():
        attach_standardised(gs, features[split], mean, std)
    with trainer_feeds_node_inputs():
        best = Trainer(config, graphs["train"], graphs["val"]).fit()
    print(f"best checkpoint: {best} (validation records in {args.out_dir / 'log.jsonl'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
