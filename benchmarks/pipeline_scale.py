"""End-to-end validation of many defects with the forcefield engine (CHGNet): wall time + steps.

    python benchmarks/pipeline_scale.py [--n 200] [--spec workflows/validate-mos2.yaml]
                                        [--store results/bench-200] [--checkpoint CKPT]

Runs ``definet_flows.validation.run_validation`` on the spec with ``n`` overridden (the spec's
host, supercell, defect kinds and engine settings otherwise), on an embedded store. The run
resumes where it stopped (finished defects are skipped), so the wall time printed is this
run's; the figures cover every defect of the spec in the store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--spec", default=str(ROOT / "workflows/validate-mos2.yaml"))
    parser.add_argument("--store", default=str(ROOT / "results/bench-200"))
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from definet_flows.spec import ValidationSpec
    from definet_flows.validation import run_validation

    torch.set_num_threads(1)
    spec = ValidationSpec.from_yaml(args.spec).model_copy(
        update={
            "n": args.n,
            "store": args.store,
            **({"checkpoint": args.checkpoint} if args.checkpoint else {}),
        }
    )
    start = time.perf_counter()
    summary = run_validation(spec, progress=True)
    wall = time.perf_counter() - start
    print(f"command: python benchmarks/pipeline_scale.py --n {args.n} --spec {args.spec}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        "torch threads 1"
    )
    print(
        f"defects in store: {summary['n_defects']} (this run: {summary.get('n_run')}, "
        f"skipped as finished: {summary.get('n_skipped')}); wall time this run {wall:.0f} s"
        + (f", {wall / summary['n_run']:.1f} s per defect" if summary.get("n_run") else "")
    )
    for key in (
        "median_steps_unrelaxed",
        "median_steps_predicted",
        "mean_steps_unrelaxed",
        "mean_steps_predicted",
        "p90_steps_unrelaxed",
        "p90_steps_predicted",
        "share_within_3_steps_unrelaxed",
        "share_within_3_steps_predicted",
        "share_same_minimum",
        "mean_definet_mae",
        "mean_baseline_mae",
        "n_failed",
    ):
        print(f"  {key}: {summary.get(key)}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(summary | {"wall_time_s": wall}, indent=2, default=str)
        )


if __name__ == "__main__":
    main()
