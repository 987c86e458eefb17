"""ValidationSummaryBuilder: figures by hand, grouping, incremental rebuilds."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest

from definet_flows.builders import ValidationSummaryBuilder
from definet_flows.stores import default_store, upsert_validation_docs

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# host, types, steps (unrelaxed, predicted), converged (unrelaxed, predicted), dE, same minimum
ROWS = [
    ("MoS2", ["vacancy"], (40, 2), (True, True), -0.010, True),
    ("MoS2", ["vacancy"], (55, 3), (True, True), 0.002, True),
    ("MoS2", ["substitution", "vacancy"], (70, 9), (True, False), 0.120, False),
    ("MoS2", ["substitution"], (31, 1), (True, True), 0.000, True),
    ("WSe2", ["vacancy"], (3, 2), (True, True), -0.004, True),
    ("WSe2", ["substitution", "vacancy"], (90, 5), (False, True), -0.050, False),
    ("WSe2", ["vacancy"], (48, 4), (True, True), 0.001, True),
]


def make_doc(i, host, types, steps, converged, d_e, same, engine="chgnet", lu=T0):
    def run(n, ok):
        return {
            "n_ionic_steps": n,
            "energy": -100.0,
            "energy_per_atom": -2.0,
            "max_force": 0.01,
            "converged": ok,
        }

    return {
        "key": f"d{i}:{engine}:s1:ckpt",
        "defect_id": f"d{i}",
        "host": host,
        "defect_types": types,
        "n_defects": len(types),
        "n_sites": 50,
        "engine": engine,
        "settings_hash": "s1",
        "checkpoint_sha256": "ckpt" * 16,
        "from_unrelaxed": run(steps[0], converged[0]),
        "from_predicted": run(steps[1], converged[1]),
        "energy_difference": d_e,
        "same_minimum": same,
        "definet_mae": None,
        "baseline_mae": None,
        "last_updated": lu,
    }


def p90(values):
    """90th percentile by linear interpolation between order statistics, by hand."""
    v = sorted(values)
    rank = 0.9 * (len(v) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (rank - lo) * (v[hi] - v[lo])


def expected(rows):
    su = [r[2][0] for r in rows]
    sp = [r[2][1] for r in rows]
    n = len(rows)
    return {
        "count": n,
        "steps_unrelaxed": {"median": statistics.median(su), "mean": sum(su) / n, "p90": p90(su)},
        "steps_predicted": {"median": statistics.median(sp), "mean": sum(sp) / n, "p90": p90(sp)},
        "share_converged_unrelaxed": sum(r[3][0] for r in rows) / n,
        "share_converged_predicted": sum(r[3][1] for r in rows) / n,
        "share_within_3_unrelaxed": sum(r[3][0] and r[2][0] <= 3 for r in rows) / n,
        "share_within_3_predicted": sum(r[3][1] and r[2][1] <= 3 for r in rows) / n,
        "mean_energy_difference": sum(r[4] for r in rows) / n,
        "share_same_minimum": sum(r[5] for r in rows) / n,
    }


def check(summary, rows):
    for field, value in expected(rows).items():
        if isinstance(value, dict):
            for stat, v in value.items():
                assert summary[field][stat] == pytest.approx(v), (field, stat)
        else:
            assert summary[field] == pytest.approx(value), field


@pytest.fixture
def stores(tmp_path):
    source = default_store(tmp_path)
    target = default_store(tmp_path, "summaries")
    source.connect()
    upsert_validation_docs(source, [make_doc(i, *row) for i, row in enumerate(ROWS)])
    return source, target


def summaries(target):
    target.connect()
    return {d["summary_id"].split("|")[0]: d for d in target.query()}


def test_figures_match_hand_computation(stores):
    source, target = stores
    ValidationSummaryBuilder(source, target).run()
    out = summaries(target)
    assert set(out) == {
        "all=all",
        "host=MoS2",
        "host=WSe2",
        "defect_type=vacancy",
        "defect_type=substitution",
    }
    check(out["all=all"], ROWS)
    check(out["host=MoS2"], [r for r in ROWS if r[0] == "MoS2"])
    check(out["host=WSe2"], [r for r in ROWS if r[0] == "WSe2"])
    # a supercell with several defect types counts in each
    check(out["defect_type=vacancy"], [r for r in ROWS if "vacancy" in r[1]])
    check(out["defect_type=substitution"], [r for r in ROWS if "substitution" in r[1]])
    assert out["all=all"]["engine"] == "chgnet"


def test_engines_never_mix(stores):
    source, target = stores
    other = make_doc(99, "MoS2", ["vacancy"], (10, 10), (True, True), 0.0, True, engine="cp2k")
    upsert_validation_docs(source, [other])
    ValidationSummaryBuilder(source, target, group_by=["all"]).run()
    target.connect()
    by_engine = {d["engine"]: d for d in target.query()}
    assert by_engine["cp2k"]["count"] == 1
    check(by_engine["chgnet"], ROWS)


def test_incremental(stores):
    source, target = stores
    builder = ValidationSummaryBuilder(source, target)
    builder.run()

    builder.connect()
    assert list(builder.get_items()) == []  # nothing new: nothing to rebuild

    # a newer document for one WSe2 vacancy: only its groups are rebuilt
    rows = list(ROWS)
    rows[4] = ("WSe2", ["vacancy"], (60, 1), (True, True), -0.004, True)
    source.connect()
    upsert_validation_docs(source, [make_doc(4, *rows[4], lu=T0 + timedelta(hours=1))])
    builder.connect()
    rebuilt = {item["meta"]["summary_id"].split("|")[0] for item in builder.get_items()}
    assert rebuilt == {"all=all", "host=WSe2", "defect_type=vacancy"}
    builder.run()
    out = summaries(target)
    check(out["all=all"], rows)
    check(out["host=WSe2"], [r for r in rows if r[0] == "WSe2"])

    # removing every WSe2 document removes its summary; remaining groups are updated
    source.connect()
    source.remove_docs({"host": "WSe2"})
    builder.run()
    out = summaries(target)
    assert "host=WSe2" not in out
    check(out["all=all"], [r for r in rows if r[0] == "MoS2"])


def test_a_filtered_build_keeps_the_summaries_it_cannot_see(stores):
    source, target = stores
    ValidationSummaryBuilder(source, target).run()
    ValidationSummaryBuilder(source, target, query={"host": "MoS2"}).run()
    out = summaries(target)
    assert "host=WSe2" in out  # outside the query, not an orphan
    check(out["host=WSe2"], [r for r in ROWS if r[0] == "WSe2"])
    check(out["host=MoS2"], [r for r in ROWS if r[0] == "MoS2"])
