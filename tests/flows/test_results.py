"""`definet results` / `definet store init`: queries on MontyStore, MemoryStore and MongoDB.

Expected rows are computed in Python from the ValidationDocs themselves, never from the
store, so a wrong filter, sort or flattening fails the comparison.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from maggma.stores import MemoryStore
from typer.testing import CliRunner

from definet_flows.cli import app
from definet_flows.results import (
    DOC_COLUMNS,
    ResultsQuery,
    build_summaries,
    checkpoint_sha256,
    parse_range,
    query_docs,
    query_summaries,
    write_rows,
)
from definet_flows.schemas import ValidationDoc
from definet_flows.stores import default_store, summary_store, upsert_validation_docs
from tests.flows.fake_mongo import FakeMongoServers

OTHER_SHA = "cd" * 32


@pytest.fixture(scope="module")
def docs(make_docs) -> list[ValidationDoc]:
    """16 synthetic docs: 2 hosts, single and double defects, one other checkpoint, 2 failed."""
    docs = make_docs(16, seed=3)
    docs[4] = docs[4].model_copy(update={"checkpoint_sha256": OTHER_SHA})  # a MoS2 doc
    failed = docs[7].from_predicted.model_copy(
        update={"n_ionic_steps": None, "converged": False, "error": "boom"}
    )
    for i in (7, 11):
        docs[i] = docs[i].model_copy(
            update={"status": "failed", "error": "boom", "from_predicted": failed}
        )
    return docs


def _montystore(tmp_path):
    return default_store(tmp_path / "results")


def _memorystore(tmp_path):
    return MemoryStore("validation", key="key")


@pytest.fixture(params=[_montystore, _memorystore], ids=["MontyStore", "MemoryStore"])
def filled(request, tmp_path, docs):
    store = request.param(tmp_path)
    store.connect()
    upsert_validation_docs(store, docs)
    yield store
    store.close()


def _steps(doc: ValidationDoc, start: str) -> int | None:
    return getattr(doc, f"from_{start}").n_ionic_steps


def _in(lo, hi):
    return lambda v: v is not None and lo <= v <= hi


CASES = {
    "all": ({}, lambda d: True),
    "host": ({"hosts": ["WSe2"]}, lambda d: d.host == "WSe2"),
    "two hosts": ({"hosts": ["WSe2", "MoS2"]}, lambda d: True),
    "engine": ({"engines": ["forcefield"]}, lambda d: d.engine == "forcefield"),
    "no such engine": ({"engines": ["vasp"]}, lambda d: False),
    "defect type": (
        {"defect_types": ["substitution"]},
        lambda d: "substitution" in d.defect_types,
    ),
    "converged": (
        {"converged": True},
        lambda d: d.from_unrelaxed.converged and d.from_predicted.converged,
    ),
    "not converged": (
        {"converged": False},
        lambda d: not (d.from_unrelaxed.converged and d.from_predicted.converged),
    ),
    "same minimum": ({"same_minimum": False}, lambda d: not d.same_minimum),
    "failed": ({"status": "failed"}, lambda d: d.status == "failed"),
    "steps predicted": (
        {"steps_predicted": (2, 6)},
        lambda d: _in(2, 6)(_steps(d, "predicted")),
    ),
    "steps unrelaxed open": (
        {"steps_unrelaxed": (50, None)},
        lambda d: _steps(d, "unrelaxed") >= 50,
    ),
    "checkpoint prefix": ({"checkpoint": "cdcd"}, lambda d: d.checkpoint_sha256 == OTHER_SHA),
    "checkpoint full": (
        {"checkpoint": "ab" * 32},
        lambda d: d.checkpoint_sha256 == "ab" * 32,
    ),
    "combined": (
        {"hosts": ["MoS2"], "converged": True, "steps_unrelaxed": (None, 60)},
        lambda d: (
            d.host == "MoS2"
            and d.from_unrelaxed.converged
            and d.from_predicted.converged
            and _steps(d, "unrelaxed") <= 60
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_filters_match_python(filled, docs, case):
    kwargs, keep = CASES[case]
    rows = query_docs(filled, ResultsQuery(**kwargs))
    expected = {d.key for d in docs if keep(d)}
    assert {r["key"] for r in rows} == expected
    if case not in ("all", "two hosts", "engine", "no such engine"):
        assert 0 < len(expected) < len(docs)  # the filter selects something, not everything


@pytest.mark.parametrize("start", ["unrelaxed", "predicted"])
def test_step_ranges_are_inclusive(filled, docs, start):
    values = sorted({_steps(d, start) for d in docs if _steps(d, start) is not None})
    lo, hi = values[1], values[-2]  # bounds that are step counts of some documents
    for rng, keep in (
        ((lo, hi), _in(lo, hi)),
        ((hi, hi), _in(hi, hi)),
        ((None, lo), _in(0, lo)),
        ((hi, None), _in(hi, 10**6)),
    ):
        query = ResultsQuery(**{f"steps_{start}": rng})
        expected = {d.key for d in docs if keep(_steps(d, start))}
        assert expected
        assert {r["key"] for r in query_docs(filled, query)} == expected


def test_rows_flatten_documents(filled, docs):
    rows = {r["key"]: r for r in query_docs(filled)}
    assert list(next(iter(rows.values()))) == [c for c, _ in DOC_COLUMNS]
    for d in docs:
        r = rows[d.key]
        assert r["defect_id"] == d.defect_id and r["host"] == d.host
        assert r["defects"] == d.defect_names
        assert r["steps_unrelaxed"] == d.from_unrelaxed.n_ionic_steps
        assert r["steps_predicted"] == d.from_predicted.n_ionic_steps
        assert r["converged_predicted"] == d.from_predicted.converged
        assert r["energy_difference"] == pytest.approx(d.energy_difference)
        assert r["checkpoint"] == d.checkpoint_sha256 and r["status"] == d.status


def test_sort_and_limit(filled, docs):
    rows = query_docs(filled, sort="-steps_unrelaxed", limit=5)
    expected = sorted((d.from_unrelaxed.n_ionic_steps for d in docs), reverse=True)[:5]
    assert [r["steps_unrelaxed"] for r in rows] == expected
    with pytest.raises(ValueError, match="cannot sort by 'nope'"):
        query_docs(filled, sort="nope")


def test_summaries_from_builder(tmp_path, docs):
    store = default_store(tmp_path / "results")
    store.connect()
    upsert_validation_docs(store, docs)
    summaries = summary_store(store)
    assert build_summaries(store, summaries) > 0
    summaries.connect()
    rows = query_summaries(summaries, ResultsQuery(hosts=["MoS2"]))
    # one MoS2 group per checkpoint (the builder never mixes weights)
    by_ckpt = {r["checkpoint"]: r for r in rows}
    assert set(by_ckpt) == {"ab" * 32, OTHER_SHA}
    mos2 = [d for d in docs if d.host == "MoS2" and d.checkpoint_sha256 == "ab" * 32]
    assert by_ckpt["ab" * 32]["count"] == len(mos2)
    assert by_ckpt["ab" * 32]["n_failed"] == sum(d.status == "failed" for d in mos2)
    vac = query_summaries(summaries, ResultsQuery(defect_types=["vacancy"], checkpoint="abab"))
    assert [r["group"] for r in vac] == ["vacancy"]
    assert vac[0]["count"] == sum(
        "vacancy" in d.defect_types and d.checkpoint_sha256 == "ab" * 32 for d in docs
    )
    with pytest.raises(ValueError, match="--summary takes only"):
        query_summaries(summaries, ResultsQuery(converged=True))
    assert build_summaries(store, summaries) == 0  # incremental: nothing changed


def test_write_json_and_csv(filled, tmp_path):
    rows = query_docs(filled, ResultsQuery(hosts=["MoS2"]))
    write_rows(rows, tmp_path / "r.json", "json")
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(rows))
    text = write_rows(rows, "-", "csv")
    back = list(csv.DictReader(io.StringIO(text)))
    assert [r["key"] for r in back] == [r["key"] for r in rows]
    assert back[0]["defects"] == ";".join(rows[0]["defects"])
    assert back[0]["steps_unrelaxed"] == str(rows[0]["steps_unrelaxed"])
    with pytest.raises(ValueError, match="unknown format"):
        write_rows(rows, "-", "xml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2:5", (2, 5)), ("3", (3, 3)), (":7", (None, 7)), ("10:", (10, None)), (None, None)],
)
def test_parse_range(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["5:2", "a:b", "1:2:3"])
def test_parse_range_rejects(text):
    with pytest.raises(ValueError, match="step range"):
        parse_range(text)


def test_checkpoint_sha256(tmp_path):
    import hashlib

    from definet.predict import DEFAULT_CHECKPOINT

    path = tmp_path / "w.pt"
    path.write_bytes(b"weights")
    assert checkpoint_sha256(str(path)) == hashlib.sha256(b"weights").hexdigest()
    assert checkpoint_sha256("ABC123") == "abc123"
    chgnet = DEFAULT_CHECKPOINT.with_name("definet-chgnet.pt")
    assert checkpoint_sha256("definet-chgnet") == hashlib.sha256(chgnet.read_bytes()).hexdigest()
    assert (
        checkpoint_sha256("shipped") == hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest()
    )
    with pytest.raises(ValueError, match="neither a sha256"):
        checkpoint_sha256("not-a-file.pt")


# -- the command ------------------------------------------------------------------------------

runner = CliRunner()


def _invoke(args):
    return runner.invoke(app, args)


def test_cli_results_on_embedded_store(tmp_path, docs):
    store = default_store(tmp_path / "results")
    store.connect()
    upsert_validation_docs(store, docs)
    store.close()
    out = tmp_path / "wse2.json"
    res = _invoke(
        ["results", "--store", str(tmp_path / "results"), "--host", "WSe2", "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert {r["key"] for r in got} == {d.key for d in docs if d.host == "WSe2"}

    res = _invoke(
        ["results", "--store", str(tmp_path / "results"), "--steps-predicted", ":3", "--csv", "-"]
    )
    assert res.exit_code == 0, res.output
    back = list(csv.DictReader(io.StringIO(res.stdout)))
    expected = {d.key for d in docs if _in(0, 3)(d.from_predicted.n_ionic_steps)}
    assert {r["key"] for r in back} == expected

    res = _invoke(["results", "--store", str(tmp_path / "results"), "--status", "failed"])
    assert res.exit_code == 0, res.output
    failed_ids = [d.defect_id[:8] for d in docs if d.status == "failed"]
    assert all(i in res.stdout for i in failed_ids)
    assert "2 defects" in res.stdout

    res = _invoke(
        ["results", "--store", str(tmp_path / "results"), "--summary", "--build", "--json", "-"]
    )
    assert res.exit_code == 0, res.output
    groups = {(r["group_by"], r["group"]) for r in json.loads(res.stdout)}
    assert {
        ("all", "all"),
        ("host", "MoS2"),
        ("host", "WSe2"),
        ("defect_type", "vacancy"),
    } <= groups


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "missing_dir"], "results store not found"),
        (["--status", "odd"], "use completed or failed"),
        (["--steps-unrelaxed", "9:1"], "bad step range"),
        (["--summary", "--converged"], "--summary takes only"),
        (["--build"], "--build goes with --summary"),
    ],
)
def test_cli_results_errors_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    default_store(tmp_path / "definet_results")
    res = _invoke(["results", *args])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.output


def test_cli_results_and_store_init_on_mongodb(tmp_path, monkeypatch, docs):
    """A MongoDB store config (MongoStore on an in-process fake server)."""
    servers = FakeMongoServers().install(monkeypatch)
    config = tmp_path / "store.yaml"
    config.write_text(
        "results_store:\n  type: MongoURIStore\n  uri: mongodb://user:pw@db.example:27017/definet\n"
    )
    res = _invoke(["store", "init", "--store-config", str(config)])
    assert res.exit_code == 0, res.output
    info = servers.database("definet", "db.example").validation.index_information()
    indexed = {v["key"][0][0] for v in info.values()}
    assert {"key", "host", "defect_types", "engine", "from_predicted.n_ionic_steps"} <= indexed
    assert any(v["key"] == [("key", 1)] and v.get("unique") for v in info.values())
    summary_info = servers.database("definet", "db.example").summaries.index_information()
    assert any(v["key"] == [("summary_id", 1)] for v in summary_info.values())

    from definet_flows.stores import store_from_config

    store = store_from_config(config)
    store.connect()
    upsert_validation_docs(store, docs)
    store.close()
    res = _invoke(["results", "--store-config", str(config), "--converged", "--json", "-"])
    assert res.exit_code == 0, res.output
    expected = {d.key for d in docs if d.from_unrelaxed.converged and d.from_predicted.converged}
    assert {r["key"] for r in json.loads(res.stdout)} == expected


def test_store_init_on_embedded_store(tmp_path):
    res = _invoke(["store", "init", "--store", str(tmp_path / "new")])
    assert res.exit_code == 0, res.output
    assert "none (backend without indexes)" in res.output
    assert (tmp_path / "new").is_dir()


def test_unreachable_mongodb_is_one_line(tmp_path, monkeypatch):
    """Real pymongo against a closed port: a short timeout and one line, no traceback."""
    monkeypatch.setenv("DEFINET_DB_TIMEOUT_MS", "300")
    config = tmp_path / "store.yaml"
    config.write_text("type: MongoStore\nhost: 127.0.0.1\nport: 9\ndatabase: definet\n")
    for args in (["store", "init"], ["results"]):
        res = _invoke([*args, "--store-config", str(config)])
        assert res.exit_code == 1
        lines = res.output.strip().splitlines()
        assert len(lines) == 1, res.output
        assert "cannot reach the results store (127.0.0.1:9)" in lines[0]
