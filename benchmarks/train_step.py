"""Time one training step and one forward pass of a training config's model on real batches.

    python benchmarks/train_step.py --config workflows/train/definet-high-density.yaml --threads 1
    python benchmarks/train_step.py --config workflows/train/experiments/high-density-gpu-h128.yaml \
        --device cuda --json step.json

Batches of the config's ``batch_size`` come from the val split of its hosts (shuffled, seed 0).
A step is what the trainer does per batch: forward, coordinate loss, backward, gradient
clipping, AdamW, EMA update. After ``--warmup`` steps, ``--steps`` are timed (the device is
synchronised around each phase), then as many forward passes without gradients.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def time_steps(config, graphs: list, device: torch.device, warmup: int, steps: int) -> dict:
    """Mean milliseconds per phase of a training step, and per forward pass."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from torch_geometric.loader import DataLoader

    from definet.nn import DefiNet
    from definet.train import coordinate_loss, predict_batch

    torch.manual_seed(config.seed)
    model = DefiNet(config.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, amsgrad=True)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
    loader = DataLoader(
        graphs, config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    batches = [b.to(device) for b, _ in zip(loader, range(warmup + steps), strict=False)]
    if len(batches) < warmup + steps:
        raise ValueError(
            f"{len(graphs)} structures make {len(batches)} batches of {config.batch_size}; "
            f"--warmup + --steps needs {warmup + steps}"
        )

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    phases = dict.fromkeys(("forward", "backward", "optimizer", "ema"), 0.0)
    for i, batch in enumerate(batches):
        t0 = sync()
        loss = coordinate_loss(predict_batch(model, batch), batch)
        t1 = sync()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = sync()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        t3 = sync()
        ema.update_parameters(model)
        t4 = sync()
        if i >= warmup:
            for name, start, end in zip(phases, (t0, t1, t2, t3), (t1, t2, t3, t4), strict=True):
                phases[name] += 1000 * (end - start) / steps
    model.eval()
    start = sync()
    with torch.no_grad():
        for batch in batches[warmup:]:
            predict_batch(model, batch)
    forward_only = 1000 * (sync() - start) / steps
    first = batches[0]
    return {
        "step_ms": sum(phases.values()),
        **{f"{name}_ms": value for name, value in phases.items()},
        "forward_no_grad_ms": forward_only,
        "nodes_per_batch": first.num_nodes,
        "edges_per_batch": first.num_edges,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="a training YAML")
    parser.add_argument("--data-root", type=Path, help="default: the config's data_root")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    from definet.data.dataset import load_split
    from definet.train import TrainConfig

    config = TrainConfig.from_yaml(args.config)
    data_root = args.data_root or Path(config.data_root)
    if not data_root.exists():
        parser.error(f"--data-root {data_root}: not found (the dataset the config trains on)")
    if args.threads:
        torch.set_num_threads(args.threads)
    graphs = load_split(data_root, "val", config.graph, hosts=config.hosts, progress=False)
    result = time_steps(config, graphs, torch.device(args.device), args.warmup, args.steps)
    result |= {
        "config": str(args.config),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "batch_size": config.batch_size,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
