"""Stores: embedded default on disk, idempotent upserts, config files, job stores."""

from __future__ import annotations

import json

import pytest
from maggma.stores import GridFSStore, JSONStore, MemoryStore, MongoStore, MontyStore

from definet_flows.stores import (
    STRUCTURE_FIELDS,
    default_store,
    ensure_indexes,
    finished_keys,
    make_jobstore,
    store_from_config,
    upsert_validation_docs,
)


@pytest.fixture(scope="module")
def docs(make_docs):
    return make_docs(12)


def json_store(tmp_path):
    return JSONStore(str(tmp_path / "validation.json"), read_only=False, key="key")


@pytest.mark.parametrize("make", [default_store, json_store], ids=["MontyStore", "JSONStore"])
def test_upsert_is_idempotent_and_persisted(tmp_path, docs, make):
    store = make(tmp_path)
    store.connect()
    assert upsert_validation_docs(store, docs) == len(docs)
    assert store.count() == len(docs)
    assert upsert_validation_docs(store, docs) == 0  # rerun adds nothing
    assert store.count() == len(docs)

    changed = docs[3].model_copy(update={"energy_difference": 42.0})
    assert upsert_validation_docs(store, [changed, docs[4]]) == 1
    assert store.count() == len(docs)
    assert store.query_one({"key": changed.key})["energy_difference"] == 42.0
    assert finished_keys(store) == {d.key for d in docs}
    assert finished_keys(store, {"host": "WSe2"}) == {d.key for d in docs if d.host == "WSe2"}
    store.close()

    reopened = make(tmp_path)
    reopened.connect()
    assert reopened.count() == len(docs)
    stored = reopened.query_one({"key": docs[0].key})
    assert stored["from_predicted"]["n_ionic_steps"] == docs[0].from_predicted.n_ionic_steps
    assert stored["unrelaxed_structure"]["@class"] == "Structure"


def test_default_store_is_montystore_on_disk(tmp_path):
    store = default_store(tmp_path / "results")
    assert isinstance(store, MontyStore)
    store.connect()
    store.update({"key": "a", "x": 1})
    assert any((tmp_path / "results").iterdir())


def test_structures_split_off(tmp_path, docs):
    store = default_store(tmp_path)
    structures = default_store(tmp_path, "validation_structures")
    store.connect()
    structures.connect()
    upsert_validation_docs(store, docs[:3], structure_store=structures)
    doc = store.query_one({"key": docs[0].key})
    assert not set(STRUCTURE_FIELDS) & set(doc)
    split = structures.query_one({"key": docs[0].key})
    assert split["unrelaxed_structure"]["@class"] == "Structure"
    assert structures.count() == 3
    assert docs[0].unrelaxed_structure is not None  # the caller's documents are untouched


def test_indexes():
    memory = MemoryStore("validation", key="key")
    memory.connect()
    indexed = ensure_indexes(memory)
    for field in ("key", "host", "defect_types", "engine", "checkpoint_sha256"):
        assert field in indexed
    assert "from_predicted.converged" in indexed


def test_indexes_on_montystore_do_not_fail(tmp_path):
    store = default_store(tmp_path)
    store.connect()
    assert ensure_indexes(store) == []  # montydb has no indexes


def test_store_from_config(tmp_path):
    path = tmp_path / "store.yaml"
    path.write_text("type: MemoryStore\ncollection_name: results\n")
    store = store_from_config(path)
    assert isinstance(store, MemoryStore) and store.key == "key"

    path = tmp_path / "store.json"
    spec = {"results_store": {"type": "MongoURIStore", "uri": "mongodb://u:p@db:27017/definet"}}
    path.write_text(json.dumps(spec))
    mongo = store_from_config(path)
    assert isinstance(mongo, MongoStore) and mongo.database == "definet"
    assert mongo.collection_name == "validation"

    monty = store_from_config({"type": "MontyStore", "database_path": str(tmp_path)})
    assert isinstance(monty, MontyStore)
    with pytest.raises(ValueError, match="Redis"):
        store_from_config({"type": "Redis"})


def test_make_jobstore_matches_results_store(tmp_path):
    from jobflow import job, run_locally
    from pymatgen.core import Lattice, Structure

    results = default_store(tmp_path)
    jobstore = make_jobstore(results)
    assert isinstance(jobstore.docs_store, MontyStore)
    data = jobstore.additional_stores["data"]
    assert isinstance(data, MontyStore) and data.database_path == str(tmp_path)

    @job(data=Structure)
    def make_structure():
        return {"structure": Structure(Lattice.cubic(3), ["Si"], [[0, 0, 0]]), "n": 1}

    j = make_structure()
    run_locally(j, store=jobstore, ensure_success=True)
    jobstore.connect()
    assert data.count() == 1
    loaded = jobstore.get_output(j.uuid, load=True)["structure"]
    assert Structure.from_dict(loaded).formula == "Si1"  # blob loaded back from "data"

    login = {"username": "u", "password": "p", "auth_source": "admin"}
    tls = {"tls": True}
    mongo = make_jobstore(
        MongoStore("definet", "validation", host="db", mongoclient_kwargs=tls, **login)
    )
    assert isinstance(mongo.docs_store, MongoStore)
    assert isinstance(mongo.additional_stores["data"], GridFSStore)
    for sibling in (mongo.docs_store, mongo.additional_stores["data"]):
        assert sibling.host == "db"  # the companion collections log in as the results store
        assert (sibling.username, sibling.password, sibling.auth_source) == ("u", "p", "admin")
        assert sibling.mongoclient_kwargs == tls


def test_mongodb_path_indexes_and_upserts(docs):
    """A MongoStore (here around a mongomock collection standing in for the server)."""
    import mongomock

    store = MongoStore.from_collection(mongomock.MongoClient().definet.validation)
    store.key = "key"
    assert upsert_validation_docs(store, docs) == len(docs)
    upsert_validation_docs(store, docs)
    assert store.count() == len(docs)
    info = store._collection.index_information()
    assert any(v["key"] == [("key", 1)] and v.get("unique") for v in info.values())
    assert any(v["key"] == [("host", 1)] for v in info.values())
