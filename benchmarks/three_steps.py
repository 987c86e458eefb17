"""Reproduce "3 ionic steps to the ground state" with a force field, at scale.

Full run (each stage resumes where it stopped; run it again after an interruption):

    python benchmarks/three_steps.py --workers 2 --json benchmarks/results/three_steps.json

1. generate: relax ~1,200 defect supercells of MoS2, WSe2, hBN (2D) and GaN, Si (bulk) once
   with CHGNet (``workflows/three-steps/generate-chgnet.yaml``, ``definet generate``);
2. export: write them in the DefiNet dataset layout, split by a hash of the defect id
   (62% train, 8% val, 30% test; ``definet export``);
3. finetune: fine-tune the shipped DFT-trained DefiNet on train/val
   (``workflows/train/definet-chgnet-finetune.yaml``, ``definet train``);
4. validate: run the validation flow on every test-split defect (never seen in training):
   CHGNet relaxes each from the DefiNet start with the same optimizer, fmax and step cap as
   the relaxation from the unrelaxed start made in stage 1, which is reused, not repeated
   (``run_validation(unrelaxed_results=...)``);
5. report: median/mean/p90 steps from both starts, share within 3 steps, by host, defect
   count and system size, with plots in ``benchmarks/results/three_steps/``.

``--smoke`` (< 20 min on 2 cores) skips 1-3: it validates defects of a small fresh plan
(``workflows/three-steps/smoke.yaml``) that are not in the fine-tuning set, with the shipped
fine-tuned weights ``model/definet/weights/definet-chgnet.pt``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "workflows/three-steps/generate-chgnet.yaml"
SMOKE_PLAN = ROOT / "workflows/three-steps/smoke.yaml"
FINETUNE = ROOT / "workflows/train/definet-chgnet-finetune.yaml"
SHIPPED_FT = ROOT / "model/definet/weights/definet-chgnet.pt"
SPLIT = {"train": 0.62, "val": 0.08, "test": 0.30}
OUT = ROOT / "benchmarks/results/three_steps"
SIZE_BINS = ((0, 60, "< 60 atoms"), (60, 90, "60-89 atoms"), (90, 10**6, ">= 90 atoms"))


def _definet(*args: str) -> None:
    """Run the ``definet`` command of this environment (fails loudly)."""
    exe = Path(sys.executable).with_name("definet")
    subprocess.run([str(exe), *args], check=True, cwd=ROOT)


def plan_store(plan_path: Path) -> str:
    """The store that ``definet generate`` fills for ``plan_path`` (run from ROOT)."""
    from definet_flows.generate import GenerationPlan

    return str(ROOT / GenerationPlan.from_yaml(plan_path).store)  # ROOT / absolute = absolute


def stage_generate(workers: int) -> None:
    _definet("generate", "--plan", str(PLAN), "--workers", str(workers), "--quiet")


def stage_export(store: str, dataset: Path) -> None:
    args = [f"--{k}={v}" for k, v in SPLIT.items()]
    _definet("export", "--store", store, "--out", str(dataset), *args)


def stage_finetune() -> Path:
    from definet.train_config import TrainConfig

    _definet("train", "--config", str(FINETUNE), "--quiet")
    return ROOT / TrainConfig.from_yaml(FINETUNE).out_dir / "best.pt"


def held_out_entries(
    plan_path: Path, store: str | None, exclude: set[str], split: str = "test"
) -> tuple[list, dict]:
    """``split`` defects of the plan's pairs store, or (smoke) the plan's fresh defects.

    Returns the defects and, for the stored ones, their relaxation from the unrelaxed start
    (the same engine and settings: reused by the validation instead of relaxing again).
    """
    from definet_flows.export import assign_split
    from definet_flows.generate import GenerationPlan, RelaxedPairDoc, pairs_store
    from definet_flows.stores import open_store

    plan = GenerationPlan.from_yaml(plan_path)
    if store is None:  # smoke: defects made now, minus any the fine-tuning saw
        return [e for e in plan.entries() if e.defect_id not in exclude], {}
    pairs = pairs_store(open_store(store))
    pairs.connect()
    try:
        query = {"status": "completed", "relaxation.converged": True}  # as exported
        docs = [RelaxedPairDoc(**d) for d in pairs.query(query)]
    finally:
        pairs.close()
    held = [
        d for d in docs if assign_split(d.defect_id, SPLIT) == split and d.defect_id not in exclude
    ]
    return [d.entry for d in held], {d.defect_id: d.relax_result() for d in held}


def _validate_shard(args: tuple) -> dict:
    """Worker: validate one shard of defects (its own in-memory JobStore)."""
    import torch

    from definet_flows.spec import ValidationSpec
    from definet_flows.validation import run_validation

    spec_fields, entries, known, work_dir = args
    torch.set_num_threads(1)
    return run_validation(
        ValidationSpec(**spec_fields),
        progress=False,
        entries=entries,
        unrelaxed_results=known,
        work_dir=work_dir,
        build_summaries=False,
    )


def stage_validate(
    entries: list, known: dict, plan_path: Path, checkpoint: Path, store: str, workers: int
) -> list[str]:
    """Validate ``entries`` from both starts; return their ValidationDoc keys."""
    from definet.checkpoint import file_sha256
    from definet_flows.generate import GenerationPlan
    from definet_flows.schemas import make_key
    from definet_flows.stores import open_store

    plan = GenerationPlan.from_yaml(plan_path)
    engine = plan.relax_engine()
    fields = {
        "host": entries[0].host if entries else "MoS2",
        "engine": plan.engine,
        "engine_settings": plan.engine_settings,
        "checkpoint": str(checkpoint),
        "store": store,
        "n": max(1, len(entries)),
    }
    results = open_store(store)
    results.connect()  # create the database before the workers open it
    results.close()
    shards = [entries[i::workers] for i in range(workers)]
    jobs = [
        (
            fields,
            shard,
            {e.defect_id: known[e.defect_id] for e in shard if e.defect_id in known},
            str(Path(store) / f"jobs-{i}"),
        )
        for i, shard in enumerate(shards)
    ]
    jobs = [j for j in jobs if j[1]]
    if len(jobs) == 1:
        _validate_shard(jobs[0])
    elif jobs:
        from definet_flows.generate import single_threaded_children

        with single_threaded_children(), mp.get_context("spawn").Pool(len(jobs)) as pool:
            pool.map(_validate_shard, jobs)
    from definet_flows.results import build_summaries
    from definet_flows.stores import summary_store

    build_summaries(results, summary_store(results))  # once, for `definet results --summary`
    sha = file_sha256(checkpoint)
    return [make_key(e.defect_id, engine.name, engine.settings_hash, sha) for e in entries]


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _size_bin(n_sites: int) -> str:
    return next(label for lo, hi, label in SIZE_BINS if lo <= n_sites < hi)


def summarize_docs(docs: list[dict]) -> dict[str, Any]:
    """Headline figures and breakdowns of ValidationDoc dicts."""
    from definet_flows.builders import summarize
    from definet_flows.validation import flatten_summary

    def figures(group: list[dict]) -> dict[str, Any]:
        flat = flatten_summary(summarize(group))
        done = [d for d in group if d["status"] == "completed"]
        flat["n"] = len(done)
        mu = [d["from_unrelaxed"]["n_ionic_steps"] for d in done]
        mp_ = [d["from_predicted"]["n_ionic_steps"] for d in done]
        flat["step_ratio_mean"] = sum(mu) / sum(mp_) if mp_ and sum(mp_) else None
        flat["step_ratio_median"] = (
            flat["median_steps_unrelaxed"] / flat["median_steps_predicted"]
            if flat.get("median_steps_predicted")
            else None
        )
        for start in ("unrelaxed", "predicted"):
            times = [d[f"from_{start}"].get("wall_time_s") for d in done]
            times = [t for t in times if t is not None]
            flat[f"mean_wall_s_{start}"] = sum(times) / len(times) if times else None
        return flat

    out = figures(docs)
    for name, key in (
        ("by_host", lambda d: d["host"]),
        ("by_defect_count", lambda d: str(d["n_defects"])),
        ("by_size", lambda d: _size_bin(d["n_sites"])),
    ):
        groups: dict[str, list] = defaultdict(list)
        for d in docs:
            groups[key(d)].append(d)
        out[name] = {g: figures(members) for g, members in sorted(groups.items())}
    return out


def load_docs(store: str, keys: list[str]) -> list[dict]:
    from definet_flows.builders import SUMMARY_FIELDS
    from definet_flows.stores import open_store

    results = open_store(store)
    results.connect()
    try:
        wanted = set(keys)
        fields = [*SUMMARY_FIELDS, "from_unrelaxed", "from_predicted"]
        return [d for d in results.query(properties=fields) if d["key"] in wanted]
    finally:
        results.close()


def plot(summary: dict, docs: list[dict], out: Path) -> list[Path]:
    """Step histogram and median steps by defect count and by size (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    done = [d for d in docs if d["status"] == "completed"]
    su = [d["from_unrelaxed"]["n_ionic_steps"] for d in done]
    sp = [d["from_predicted"]["n_ionic_steps"] for d in done]
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.arange(0, max(su + sp + [1]) + 2) - 0.5
    ax.hist(su, bins=bins, alpha=0.6, label="unrelaxed start")
    ax.hist(sp, bins=bins, alpha=0.6, label="DefiNet start")
    ax.axvline(3, color="k", ls="--", lw=1, label="3 steps")
    ax.set_xlabel("ionic steps (force evaluations) to fmax 0.05 eV/A, CHGNet BFGS")
    ax.set_ylabel("defect supercells")
    ax.set_title(f"{len(done)} held-out defects")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "steps_histogram.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    for group, xlabel in (
        ("by_defect_count", "point defects per supercell"),
        ("by_size", "system size"),
        ("by_host", "host"),
    ):
        groups = summary[group]
        names = list(groups)
        x = np.arange(len(names))
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar(
            x - 0.2,
            [groups[g]["median_steps_unrelaxed"] or 0 for g in names],
            0.4,
            label="unrelaxed start",
        )
        ax.bar(
            x + 0.2,
            [groups[g]["median_steps_predicted"] or 0 for g in names],
            0.4,
            label="DefiNet start",
        )
        ax.axhline(3, color="k", ls="--", lw=1)
        ax.set_xticks(x, [f"{g}\n(n={groups[g]['n']})" for g in names])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median ionic steps")
        ax.legend()
        fig.tight_layout()
        paths.append(out / f"median_steps_{group}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def markdown(summary: dict) -> str:
    """The README tables."""

    def row(name: str, f: dict) -> str:
        def v(x, fmt="{:.1f}"):
            return "-" if x is None else fmt.format(x)

        return (
            f"| {name} | {f['n']} | {v(f['median_steps_unrelaxed'])} | "
            f"{v(f['median_steps_predicted'])} | {v(f['mean_steps_unrelaxed'])} | "
            f"{v(f['mean_steps_predicted'])} | {v(f['p90_steps_unrelaxed'])} | "
            f"{v(f['p90_steps_predicted'])} | {v(f['share_within_3_steps_predicted'], '{:.0%}')} | "
            f"{v(f['step_ratio_mean'], '{:.1f}x')} |"
        )

    head = (
        "| group | n | median steps (unrelaxed) | median (DefiNet) | mean (unrelaxed) | "
        "mean (DefiNet) | p90 (unrelaxed) | p90 (DefiNet) | within 3 steps (DefiNet) | "
        "fewer steps (mean) |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head, row("all", summary)]
    for group in ("by_host", "by_defect_count", "by_size"):
        for name, f in summary[group].items():
            lines.append(row(f"{group.removeprefix('by_')}: {name}", f))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="reduced run (< 20 min)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    parser.add_argument("--checkpoint", type=Path, help="DefiNet weights (default: see above)")
    parser.add_argument(
        "--store",
        help="results store (default runs/three-steps-smoke/store, or in a full run the plan's "
        "store; the full run always reads its training pairs from the plan's store)",
    )
    parser.add_argument("--plan", type=Path, help=f"smoke plan (default {SMOKE_PLAN.name})")
    parser.add_argument(
        "--out",
        type=Path,
        help="directory of the table and plots (default benchmarks/results/three_steps, its "
        "smoke/ or val/ folder for those runs)",
    )
    parser.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="defects to validate (full run): 'val' compares fine-tuning candidates without "
        "touching the test split",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.smoke:
        store = args.store or str(ROOT / "runs/three-steps-smoke/store")
        checkpoint = args.checkpoint or SHIPPED_FT
        card = json.loads(checkpoint.with_suffix(".json").read_text())
        seen = set(card.get("training_ids", []))
        plan_path = args.plan or SMOKE_PLAN
        entries, known = held_out_entries(plan_path, None, seen)
    else:
        pairs = plan_store(PLAN)
        store = args.store or pairs
        dataset = ROOT / "runs/three-steps/dataset"
        stage_generate(args.workers)
        stage_export(pairs, dataset)
        checkpoint = args.checkpoint or stage_finetune()
        plan_path = PLAN
        entries, known = held_out_entries(PLAN, pairs, set(), args.split)
    print(f"validating {len(entries)} unseen defects with {checkpoint}", flush=True)
    keys = stage_validate(entries, known, plan_path, checkpoint, store, args.workers)
    docs = load_docs(store, keys)
    summary = summarize_docs(docs)
    summary.update(
        mode="smoke" if args.smoke else "full",
        split=None if args.smoke else args.split,
        checkpoint=str(
            Path(checkpoint).relative_to(ROOT)
            if Path(checkpoint).is_relative_to(ROOT)
            else checkpoint
        ),
        plan=str(
            plan_path.resolve().relative_to(ROOT)
            if plan_path.resolve().is_relative_to(ROOT)
            else plan_path
        ),
        wall_time_s=time.perf_counter() - start,
    )
    # the committed results are the test split's: other runs write beside them
    default = OUT / "smoke" if args.smoke else OUT if args.split == "test" else OUT / args.split
    out = args.out or default
    plots = plot(summary, docs, out)
    (out / "table.md").write_text(markdown(summary) + "\n")
    print(markdown(summary))
    print("plots: " + ", ".join(_rel(p) for p in plots))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
