"""Training throughput and inference latency of DefiNet on 8x8 MoS2 structures (CPU).

    python benchmarks/model_speed.py [--config workflows/train/definet-joint.yaml] [--threads 2]

Reads 8x8 MoS2 pairs of the shared DefiNet set (low-density MoS2 val split), builds graphs with
the config's settings, and prints: training structures/s (forward + backward + AdamW step,
batch size of the config), inference ms/structure at batch 1 and 32, and peak resident memory
of each phase (measured in a fresh subprocess so the phases do not mix).
"""

from __future__ import annotations

import argparse
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


def load_graphs(config_path: str, n: int):
    from definet.data.dataset import load_split
    from definet.train import TrainConfig

    cfg = TrainConfig.from_yaml(config_path)
    graphs = load_split(DATA, "val", cfg.graph, hosts=["MoS2"], progress=False)[:n]
    return cfg, graphs


def phase(name: str, config_path: str, threads: int) -> dict:
    import torch
    from torch_geometric.loader import DataLoader

    from definet.nn import DefiNet
    from definet.train import coordinate_loss, predict_batch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg, graphs = load_graphs(config_path, 96)
    model = DefiNet(cfg.model)
    result: dict = {
        "phase": name,
        "n_atoms": int(graphs[0].z.numel()),
        "n_edges": int(graphs[0].edge_index.shape[1]),
    }
    if name == "train":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, amsgrad=True)
        batches = list(DataLoader(graphs, batch_size=cfg.batch_size, shuffle=False))
        for batch in batches[:2]:  # warm-up
            loss = coordinate_loss(predict_batch(model, batch), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        start = time.perf_counter()
        for batch in batches[2:]:
            loss = coordinate_loss(predict_batch(model, batch), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - start
        result["structures_per_s"] = len(graphs[2 * cfg.batch_size :]) / seconds
    else:
        batch_size = int(name.split("_")[1])
        model.eval()
        batches = list(
            DataLoader(graphs[:64] if batch_size > 1 else graphs[:20], batch_size=batch_size)
        )
        with torch.no_grad():
            predict_batch(model, batches[0])
            start = time.perf_counter()
            n = 0
            for batch in batches:
                predict_batch(model, batch)
                n += batch.num_graphs
        result["ms_per_structure"] = 1000 * (time.perf_counter() - start) / n
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "workflows/train/definet-joint.yaml"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.config, args.threads)))
        return
    if not DATA.is_dir():
        sys.exit(f"the shared DefiNet dataset is absent ({DATA}); nothing to measure")
    print(
        f"command: python benchmarks/model_speed.py --config {args.config} --threads {args.threads}"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    rows = []
    for name in ("train", "infer_1", "infer_32"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--phase",
                name,
                "--config",
                args.config,
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"8x8 MoS2: {rows[0]['n_atoms']} nodes, {rows[0]['n_edges']} edges per structure")
    print(
        f"training:   {rows[0]['structures_per_s']:.1f} structures/s "
        f"(peak RSS {rows[0]['peak_rss_mb']:.0f} MB)"
    )
    print(
        f"inference:  {rows[1]['ms_per_structure']:.1f} ms/structure at batch 1 "
        f"(peak RSS {rows[1]['peak_rss_mb']:.0f} MB)"
    )
    print(
        f"inference:  {rows[2]['ms_per_structure']:.1f} ms/structure at batch 32 "
        f"(peak RSS {rows[2]['peak_rss_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()
