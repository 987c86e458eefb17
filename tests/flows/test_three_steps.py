"""The figures of benchmarks/three_steps.py, checked against numpy on synthetic documents."""

from __future__ import annotations

import numpy as np
import pytest

from tests.flows.conftest import synthetic_docs
from tests.repo_scripts import load_benchmark


@pytest.fixture(scope="module")
def three_steps():
    return load_benchmark("three_steps")


def test_summary_figures_and_breakdowns(three_steps, mos2_entries, tmp_path):
    docs = [d.model_dump() for d in synthetic_docs(mos2_entries, 40, seed=3)]
    summary = three_steps.summarize_docs(docs)
    done = [d for d in docs if d["status"] == "completed"]
    su = np.array([d["from_unrelaxed"]["n_ionic_steps"] for d in done])
    sp = np.array([d["from_predicted"]["n_ionic_steps"] for d in done])
    assert summary["n"] == len(done) == 40
    assert summary["median_steps_unrelaxed"] == pytest.approx(np.median(su))
    assert summary["median_steps_predicted"] == pytest.approx(np.median(sp))
    assert summary["mean_steps_predicted"] == pytest.approx(sp.mean())
    assert summary["p90_steps_unrelaxed"] == pytest.approx(np.percentile(su, 90))
    assert summary["step_ratio_mean"] == pytest.approx(su.sum() / sp.sum())
    within = [
        d["from_predicted"]["converged"] and d["from_predicted"]["n_ionic_steps"] <= 3 for d in docs
    ]
    assert summary["share_within_3_steps_predicted"] == pytest.approx(np.mean(within))
    for group in ("by_host", "by_defect_count", "by_size"):
        assert sum(g["n"] for g in summary[group].values()) == 40
    by_count = summary["by_defect_count"]
    assert set(by_count) == {str(d["n_defects"]) for d in docs}
    two = [d for d in done if d["n_defects"] == 2]
    assert by_count["2"]["median_steps_unrelaxed"] == pytest.approx(
        np.median([d["from_unrelaxed"]["n_ionic_steps"] for d in two])
    )
    table = three_steps.markdown(summary)
    assert table.count("\n") == 1 + 1 + sum(
        len(summary[g]) for g in ("by_host", "by_defect_count", "by_size")
    )
    paths = three_steps.plot(summary, docs, tmp_path)
    names = {"steps_histogram.png"} | {
        f"median_steps_{g}.png" for g in ("by_host", "by_defect_count", "by_size")
    }
    assert {p.name for p in paths} == names  # every plot, each a real image
    assert all(p.stat().st_size > 5000 for p in paths)


def test_full_run_reads_pairs_from_the_plans_store(three_steps, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        three_steps.PLAN.read_text().replace(
            "store: runs/three-steps/store", "store: elsewhere/pairs"
        )
    )
    assert three_steps.plan_store(plan) == str(three_steps.ROOT / "elsewhere/pairs")
    assert three_steps.plan_store(three_steps.PLAN) == str(
        three_steps.ROOT / "runs/three-steps/store"
    )
