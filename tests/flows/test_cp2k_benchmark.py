"""The figures of benchmarks/cp2k_hbn.py, checked against numpy on stored synthetic documents."""

from __future__ import annotations

import numpy as np
import pytest

from definet_flows.stores import default_store, upsert_validation_docs, writing
from tests.flows.conftest import synthetic_docs
from tests.repo_scripts import load_benchmark


@pytest.fixture(scope="module")
def cp2k_hbn():
    return load_benchmark("cp2k_hbn")


def test_specs_share_one_cp2k_store(cp2k_hbn):
    from definet_flows.spec import ValidationSpec

    specs = [ValidationSpec.from_yaml(p) for p in cp2k_hbn.SPECS]
    assert len(specs) == 4
    assert {s.store for s in specs} == {"benchmarks/results/cp2k-hbn-store"}
    assert {s.engine for s in specs} == {"cp2k"}
    assert len({s.relax_engine().settings_hash for s in specs}) == 1  # one settings hash


def test_table_and_summary_from_the_store(cp2k_hbn, mos2_entries, tmp_path):
    docs = [
        d.model_copy(update={"engine": "cp2k"}) for d in synthetic_docs(mos2_entries, 7, seed=5)
    ]
    store = default_store(tmp_path / "store")
    with writing(store):
        upsert_validation_docs(store, docs)
    stored = cp2k_hbn.stored_docs(str(tmp_path / "store"))
    assert len(stored) == 7 and "final_from_predicted" not in stored[0]
    summary = cp2k_hbn.summarize(stored)
    su = [d.from_unrelaxed.n_ionic_steps for d in docs]
    sp = [d.from_predicted.n_ionic_steps for d in docs]
    assert summary["n"] == 7 and summary["n_failed"] == 0
    assert summary["median_steps_unrelaxed"] == np.median(su)
    assert summary["mean_steps_predicted"] == pytest.approx(np.mean(sp))
    assert summary["share_same_minimum"] == pytest.approx(np.mean([d.same_minimum for d in docs]))
    same = [d for d in docs if d.same_minimum]
    assert 0 < len(same) < 7  # the synthetic set has both kinds
    assert summary["n_same_minimum"] == len(same)
    assert summary["median_steps_predicted_same_minimum"] == np.median(
        [d.from_predicted.n_ionic_steps for d in same]
    )
    assert summary["mean_steps_unrelaxed_same_minimum"] == pytest.approx(
        np.mean([d.from_unrelaxed.n_ionic_steps for d in same])
    )
    table = cp2k_hbn.markdown(stored, summary)
    assert table.count("\n| ") == 7  # one row per defect under the header
    assert f"median steps {summary['median_steps_unrelaxed']}" in table
