"""Training throughput and inference latency of DefiNet on real structures, CPU or GPU.

    python benchmarks/model_speed.py [--config workflows/train/definet-joint.yaml] [--threads 2]
    python benchmarks/model_speed.py --config workflows/train/definet-high-density.yaml \
        --host MoS2_500 --threads 1 --json speed.json
    python benchmarks/model_speed.py --config workflows/train/experiments/high-density-gpu-h128.yaml \
        --host MoS2_500 --device cuda

Reads the val pairs (``--split``) of one host of the DefiNet set (default: the low-density 8x8 MoS2), builds
graphs with the config's settings, and prints: training structures/s at the config's batch size
with the time of each phase of a step (forward + loss, backward, clipping + AdamW, EMA update;
the device is synchronised around each), inference ms/structure at batch 1 and 32, and the peak
resident memory of each phase (measured in a fresh subprocess so the phases do not mix).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "definet-dataset"
TRAIN_BATCHES = 12  # 2 warm-up + 10 timed


def load_graphs(config_path: str, data_root: str, split: str, host: str, n: int):
    from definet.data.dataset import load_split
    from definet.train_config import TrainConfig

    cfg = TrainConfig.from_yaml(config_path)
    graphs = load_split(data_root, split, cfg.graph, hosts=[host], progress=False)[:n]
    return cfg, graphs


def train_phase(cfg, graphs: list) -> dict:
    """Structures/s and mean ms per phase of the trainer's own step (``Trainer.train_step``,
    with the config's loss terms and perturbations), after 2 warm-up batches."""
    import torch
    from torch_geometric.loader import DataLoader

    from definet.train import Trainer

    if not graphs:
        raise ValueError("no structures to time")
    trainer = Trainer(cfg, graphs, graphs[:1], progress=False)
    device = trainer.device
    # TRAIN_BATCHES full batches of the config's size, the structures repeated where a split
    # has fewer (timing does not depend on which structures they are)
    pool = list(itertools.islice(itertools.cycle(graphs), TRAIN_BATCHES * cfg.batch_size))
    batches = [b.to(device) for b in DataLoader(pool, batch_size=cfg.batch_size)]

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    phases = dict.fromkeys(("forward", "backward", "optimizer", "ema"), 0.0)
    trainer.model.train()
    for i, batch in enumerate(batches):
        times = [sync()]
        trainer.train_step(batch, mark=lambda _phase, times=times: times.append(sync()))
        if i >= 2:
            for name, start, end in zip(phases, times[:-1], times[1:], strict=True):
                phases[name] += end - start
    timed = batches[2:]
    seconds = sum(phases.values())
    return {
        "timed_steps": len(timed),
        "structures_per_s": sum(b.num_graphs for b in timed) / seconds,
        **{f"{name}_ms_per_step": 1000 * s / len(timed) for name, s in phases.items()},
    }


def phase(name: str, args: argparse.Namespace) -> dict:
    import torch
    from torch_geometric.loader import DataLoader

    from definet.allocator import keep_freed_memory
    from definet.inference import predict_batch
    from definet.nn import DefiNet

    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as prediction and the trainer do
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg, graphs = load_graphs(args.config, args.data_root, args.split, args.host, 96)
    result: dict = {
        "phase": name,
        "n_atoms": int(graphs[0].z.numel()),
        "n_edges": int(graphs[0].edge_index.shape[1]),
    }
    if name == "train":
        cfg = dataclasses.replace(cfg, device=args.device, threads=args.threads)
        result |= train_phase(cfg, graphs)
    else:
        model = DefiNet(cfg.model).to(device)
        batch_size = int(name.split("_")[1])
        model.eval()
        batches = list(
            DataLoader(graphs[:64] if batch_size > 1 else graphs[:20], batch_size=batch_size)
        )
        batches = [b.to(device) for b in batches]
        with torch.inference_mode():  # as Predictor does
            predict_batch(model, batches[0])
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            n = 0
            for batch in batches:
                predict_batch(model, batch)
                n += batch.num_graphs
            if device.type == "cuda":
                torch.cuda.synchronize()
        result["ms_per_structure"] = 1000 * (time.perf_counter() - start) / n
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "workflows/train/definet-joint.yaml"))
    parser.add_argument("--data-root", default=str(DATA))
    parser.add_argument("--host", default="MoS2", help="host folder whose pairs are used")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(phase(args.phase, args)))
        return 0
    if not Path(args.data_root).exists():
        parser.error(f"--data-root {args.data_root}: not found (the DefiNet dataset)")
    command = (
        f"python benchmarks/model_speed.py --config {args.config} --data-root {args.data_root} "
        f"--host {args.host} --split {args.split} --device {args.device} --threads {args.threads}"
    )
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print(f"command: {command}\nmachine: {machine}")
    rows = []
    for name in ("train", "infer_1", "infer_32"):
        out = subprocess.run(
            [sys.executable, __file__, "--phase", name, *_forwarded(args)],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            sys.stderr.write(out.stderr)
            return out.returncode
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    train, infer_1, infer_32 = rows
    steps = ", ".join(
        f"{p} {train[f'{p}_ms_per_step']:.1f}" for p in ("forward", "backward", "optimizer", "ema")
    )
    print(f"{args.host}: {train['n_atoms']} nodes, {train['n_edges']} edges per structure")
    print(
        f"training:   {train['structures_per_s']:.1f} structures/s; ms per step: {steps} "
        f"(peak RSS {train['peak_rss_mb']:.0f} MB)"
    )
    for row, size in ((infer_1, 1), (infer_32, 32)):
        print(
            f"inference:  {row['ms_per_structure']:.1f} ms/structure at batch {size} "
            f"(peak RSS {row['peak_rss_mb']:.0f} MB)"
        )
    if args.json:
        payload = {"command": command, "machine": machine, "phases": rows}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


def _forwarded(args: argparse.Namespace) -> list[str]:
    return [
        *("--config", args.config, "--data-root", args.data_root, "--host", args.host),
        *("--split", args.split),
        *("--device", args.device, "--threads", str(args.threads)),
    ]


if __name__ == "__main__":
    from _cli import run

    run(main)
