"""DFT check of the shipped DefiNet: CP2K relaxes h-BN defects from the unrelaxed and the predicted start.

    python benchmarks/cp2k_hbn.py --json benchmarks/results/cp2k_hbn.json
    python benchmarks/cp2k_hbn.py --report-only        # the table of what is stored so far

Runs ``definet validate`` on each ``workflows/three-steps/validate-cp2k-hbn-*.yaml`` (CP2K 2023.1
from Debian, PBE, DZVP-MOLOPT-SR-GTH, Gamma point, UKS, 200 Ry, BFGS, fmax 0.05 eV/A; one
store shared by the four specs; defects already stored are skipped, so an interrupted run
resumes), then prints one row per defect (ionic steps, wall time and convergence from both
starts, energy difference of the two minima, DefiNet's coordinate error against the DFT
minimum) and the medians. Needs ``bash scripts/install_cp2k.sh``; MPI ranks from
``DEFINET_CP2K_MPI_PROCS``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "workflows/three-steps").glob("validate-cp2k-hbn-*.yaml"))
COLUMNS = (
    "defects",
    "sites",
    "steps U",
    "steps P",
    "wall U s",
    "wall P s",
    "conv U/P",
    "dE meV",
    "same min",
    "MAE DefiNet",
    "MAE nothing",
)


def stored_docs(store: str) -> list[dict[str, Any]]:
    """The CP2K ValidationDocs of the store, without their structures."""
    from definet_flows.builders import SUMMARY_FIELDS
    from definet_flows.stores import open_store

    results = open_store(store)
    results.connect()
    try:
        fields = [*SUMMARY_FIELDS, "defect_id", "defect_names"]
        return sorted(
            results.query(criteria={"engine": "cp2k"}, properties=fields),
            key=lambda d: (d["defect_names"], d["defect_id"]),
        )
    finally:
        results.close()


def row(doc: dict[str, Any]) -> list[str]:
    u, p = doc["from_unrelaxed"], doc["from_predicted"]

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    return [
        "+".join(doc["defect_names"]),
        str(doc["n_sites"]),
        num(u["n_ionic_steps"], "d"),
        num(p["n_ionic_steps"], "d"),
        num(u.get("wall_time_s"), ".0f"),
        num(p.get("wall_time_s"), ".0f"),
        f"{'y' if u['converged'] else 'n'}/{'y' if p['converged'] else 'n'}",
        num(None if doc["energy_difference"] is None else 1000 * doc["energy_difference"], ".1f"),
        "y" if doc["same_minimum"] else "n",
        num(doc["definet_mae"], ".4f"),
        num(doc["baseline_mae"], ".4f"),
    ]


def summarize(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pipeline's summary figures (``builders.summarize``) plus CP2K wall-time totals."""
    from definet_flows.builders import summarize as summary_figures
    from definet_flows.validation import flatten_summary

    done = [d for d in docs if d["status"] == "completed"]
    out = flatten_summary(summary_figures(docs)) | {"n": len(done)}
    same = [d for d in done if d["same_minimum"]]
    out["n_same_minimum"] = len(same)
    for start in ("unrelaxed", "predicted"):
        steps = [d[f"from_{start}"]["n_ionic_steps"] for d in same]
        out[f"median_steps_{start}_same_minimum"] = statistics.median(steps) if steps else None
        out[f"mean_steps_{start}_same_minimum"] = statistics.fmean(steps) if steps else None
        walls = [d[f"from_{start}"].get("wall_time_s") or 0.0 for d in done]
        out[f"total_wall_s_{start}"] = sum(walls)
        out[f"mean_wall_s_{start}"] = statistics.fmean(walls) if walls else None
    return out


def markdown(docs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(d)) + " |" for d in docs if d["status"] == "completed"]
    s = summary
    lines.append(
        f"\nn = {s['n']} (failed {s['n_failed']}); median steps {s['median_steps_unrelaxed']} "
        f"(unrelaxed) -> {s['median_steps_predicted']} (DefiNet); mean "
        f"{_f(s['mean_steps_unrelaxed'])} -> {_f(s['mean_steps_predicted'])}; CP2K wall time "
        f"{_f(s['total_wall_s_unrelaxed'], '.0f')} s -> {_f(s['total_wall_s_predicted'], '.0f')} s"
        f"\non the {s['n_same_minimum']} pairs that reach the same minimum: median steps "
        f"{s['median_steps_unrelaxed_same_minimum']} -> {s['median_steps_predicted_same_minimum']}; "
        f"mean {_f(s['mean_steps_unrelaxed_same_minimum'])} -> "
        f"{_f(s['mean_steps_predicted_same_minimum'])}"
    )
    return "\n".join(lines)


def _f(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="run nothing; report the store")
    parser.add_argument("--json", help="write the per-defect rows and the summary here")
    args = parser.parse_args(argv)

    from definet_flows.spec import ValidationSpec
    from definet_flows.validation import run_validation

    os.chdir(ROOT)  # the specs name files relative to the repository root

    specs = [ValidationSpec.from_yaml(p) for p in SPECS]
    stores = {s.store for s in specs}
    if len(stores) != 1:
        sys.exit(f"the CP2K specs must share one store, got {sorted(stores)}")
    (store,) = stores
    print(f"command: python benchmarks/cp2k_hbn.py {' '.join(argv or sys.argv[1:])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; CP2K MPI ranks "
        f"{os.environ.get('DEFINET_CP2K_MPI_PROCS', 'default')}"
    )
    start = time.perf_counter()
    if not args.report_only:
        for path, spec in zip(SPECS, specs, strict=True):
            print(f"validate {path.relative_to(ROOT)}", flush=True)
            run_validation(spec)
    docs = stored_docs(store)
    summary = summarize(docs) | {"wall_s_this_run": round(time.perf_counter() - start, 1)}
    print(markdown(docs, summary))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "summary": summary,
                    "rows": [dict(zip(COLUMNS, row(d), strict=True)) for d in docs],
                },
                indent=2,
            )
        )
    return 0 if summary["n"] else 1


if __name__ == "__main__":
    sys.exit(main())
