"""Time to parse and cache the whole shared DefiNet dataset, then to load it from the cache.

    python benchmarks/parse_dataset.py [--workers 2] [--config workflows/train/definet-joint.yaml]

Uses a fresh temporary cache directory (archives extracted, every CIF pair parsed, marked and
turned into a graph with the config's settings), then loads everything again from the cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "definet-dataset"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--config", default=str(ROOT / "workflows/train/definet-joint.yaml"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"the shared DefiNet dataset is absent ({DATA}); nothing to measure")
    from definet.data.dataset import load_split
    from definet.train_config import TrainConfig

    settings = TrainConfig.from_yaml(args.config).graph
    print(
        f"command: python benchmarks/parse_dataset.py --workers {args.workers} "
        f"--config {args.config}"
    )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as cache:
        timings = {}
        for label in ("cold (parse + cache)", "warm (from cache)"):
            start = time.perf_counter()
            n = sum(
                len(
                    load_split(
                        DATA,
                        split,
                        settings,
                        cache_dir=Path(cache),
                        workers=args.workers,
                        progress=False,
                    )
                )
                for split in ("train", "val")
            )
            timings[label] = time.perf_counter() - start
            print(
                f"{label}: {n} pairs in {timings[label]:.0f} s "
                f"({1000 * timings[label] / n:.1f} ms/pair)"
            )
        size = sum(p.stat().st_size for p in Path(cache, "graphs").glob("*.pt"))
        print(f"cache size: {size / 1e6:.0f} MB for graph settings {settings}")


if __name__ == "__main__":
    main()
