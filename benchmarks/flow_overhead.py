"""Benchmark the validation flow's overhead per defect (forcefield engine, EMT on fcc Cu).

The flow overhead is the wall time of ``run_validation`` minus the time spent relaxing.
"Relaxing" is measured two ways: the optimizer time atomate2 records for each relaxation
(``RelaxResult.wall_time_s``), and the whole atomate2 relax jobs (calculator set-up, task
document). Every job is timed from jobflow's own "Starting job"/"Finished job" log records,
so the remainder splits into defect generation + flow building, DefiNet prediction,
parsing task documents, building and storing the ValidationDocs, the summary builder and
run_locally's bookkeeping between jobs. A rerun (every defect already stored) is timed too.

Usage::

    python benchmarks/flow_overhead.py                    # 20 defects, Cu 3x3x3 (108 sites)
    python benchmarks/flow_overhead.py --n 50 --checkpoint runs/definet/best.pt
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


class JobTimer(logging.Handler):
    """Collect (name, start, end) of every jobflow job from its log records."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.started: dict[str, tuple[str, float]] = {}
        self.jobs: list[tuple[str, float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        for prefix, starting in (("Starting job - ", True), ("Finished job - ", False)):
            if msg.startswith(prefix):
                name, _, uuid = msg[len(prefix) :].rpartition(" (")
                if starting:
                    self.started[uuid] = (name, record.created)
                elif uuid in self.started:
                    name, t0 = self.started.pop(uuid)
                    self.jobs.append((name, t0, record.created))


def kind(name: str) -> str:
    """Job kind from its name."""
    if name.startswith("definet predict"):
        return "DefiNet prediction"
    if name.startswith("validation doc"):
        return "ValidationDoc build + store"
    if " result " in name:
        return "task doc -> RelaxResult"
    if " relax " in name:
        return "atomate2 relax jobs"
    return name


def tiny_checkpoint(path: Path) -> Path:
    """An untrained small DefiNet (the flow's cost does not depend on its weights)."""
    import torch

    from definet.checkpoint import model_payload, save_atomic
    from definet.data.graphs import GraphSettings
    from definet.nn import DefiNet, DefiNetConfig

    torch.manual_seed(0)
    model = DefiNet(DefiNetConfig(hidden=32, num_layers=3, num_rbf=16, cutoff=5.0))
    return save_atomic(model_payload(model, GraphSettings(cutoff=5.0, max_neighbors=16)), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="defects")
    parser.add_argument("--supercell", default="3", help="supercell of the 4-atom Cu cell")
    parser.add_argument("--vacancies-per-draw", type=int, default=3)
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--checkpoint", default=None, help="default: a small untrained model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--predict-chunk", type=int, default=16, help="defects per DefiNet job")
    args = parser.parse_args()

    import torch
    from pymatgen.core import Lattice, Structure

    from definet_flows.spec import ValidationSpec
    from definet_flows.stores import default_store
    from definet_flows.validation import run_validation

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="definet-flow-bench-"))
    host = work / "Cu.cif"
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).to(
        filename=str(host)
    )
    checkpoint = args.checkpoint or str(tiny_checkpoint(work / "tiny.pt"))
    spec = ValidationSpec(
        host=str(host),
        supercell=args.supercell,
        n=args.n,
        defect_counts={"v_Cu": args.vacancies_per_draw},
        engine="forcefield",
        engine_settings={"force_field": "EMT", "fmax": args.fmax, "max_steps": 500},
        checkpoint=checkpoint,
        store=str(work / "store"),
    )

    timer = JobTimer()
    jf_logger = logging.getLogger("jobflow")
    jf_logger.addHandler(timer)
    jf_logger.setLevel(logging.INFO)
    load_before = os.getloadavg()
    t0 = time.time()
    summary = run_validation(spec, progress=False, predict_chunk=args.predict_chunk)
    t1 = time.time()
    rerun = run_validation(spec, progress=False, predict_chunk=args.predict_chunk)
    t2 = time.time()
    jf_logger.removeHandler(timer)

    store = default_store(work / "store")
    store.connect()
    docs = list(store.query(properties=["from_unrelaxed", "from_predicted", "n_sites"]))
    store.close()
    n = len(docs)
    optimizer = sum(
        d[s]["wall_time_s"] or 0.0 for d in docs for s in ("from_unrelaxed", "from_predicted")
    )
    steps = [d[s]["n_ionic_steps"] for d in docs for s in ("from_unrelaxed", "from_predicted")]
    by_kind: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for name, start, end in timer.jobs:
        by_kind[kind(name)] += end - start
        count[kind(name)] += 1
    first_job = min(start for _, start, _ in timer.jobs)
    last_job = max(end for _, _, end in timer.jobs)
    total = t1 - t0
    in_jobs = sum(by_kind.values())
    relax_jobs = by_kind["atomate2 relax jobs"]

    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__} "
        f"({args.threads} thread); load average before {load_before[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f}"
    )
    print(
        f"workload: {n} defects of fcc Cu {args.supercell}x (up to {args.vacancies_per_draw} "
        f"vacancies, {min(d['n_sites'] for d in docs)}-{max(d['n_sites'] for d in docs)} atoms), "
        f"EMT + FIRE fmax {args.fmax}, 2 relaxations per defect, "
        f"{sum(steps)} ionic steps in all (median {np.median(steps):.0f})"
    )
    print(
        f"store: {work / 'store'} (results: MontyStore; job outputs: in memory); "
        f"{args.predict_chunk} defects per DefiNet job"
    )
    print()
    print(f"{'run_validation wall time':<44}{total:9.2f} s")
    print(f"{'  before the first job (defects, flow, keys)':<44}{first_job - t0:9.2f} s")
    for k in sorted(by_kind, key=by_kind.get, reverse=True):
        print(f"{'  ' + k + f' ({count[k]} jobs)':<44}{by_kind[k]:9.2f} s")
    print(f"{'  run_locally between jobs':<44}{(last_job - first_job) - in_jobs:9.2f} s")
    print(f"{'  after the last job (builder, summary)':<44}{t1 - last_job:9.2f} s")
    print(f"{'optimizer time inside relaxations':<44}{optimizer:9.2f} s")
    print()
    print(f"overhead per defect (wall - optimizer time) / n:     {(total - optimizer) / n:6.3f} s")
    print(f"overhead per defect (wall - relax job time) / n:     {(total - relax_jobs) / n:6.3f} s")
    print(
        f"rerun, all {rerun['n_skipped']} defects already stored: {t2 - t1:.2f} s (n_run={rerun['n_run']})"
    )
    print(
        f"summary: median steps {summary['median_steps_unrelaxed']} / {summary['median_steps_predicted']}"
    )


if __name__ == "__main__":
    main()
