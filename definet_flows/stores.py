"""Results stores: an embedded on-disk default (MontyStore) and MongoDB from a config file.

The default is maggma's ``MontyStore`` (montydb, sqlite), chosen over ``JSONStore`` by
``benchmarks/store_backends.py`` with 10,000 ValidationDoc-like documents on a 2-core VM:
reopening took 0.9 s (MontyStore) vs 212 s (JSONStore re-upserts every document on load,
quadratic); one more document through maggma's ``update`` took 0.29 s vs 0.86 s (JSONStore
rewrites the whole file on every write); queries took 0.4-1.3 s vs 0.05-0.34 s (JSONStore
queries memory). Neither backend has indexes and maggma's ``update`` scans the collection per
document, so :func:`upsert_validation_docs` writes embedded stores with one key scan plus bulk
inserts (10,000 new documents: 0.6 s); MongoDB stores use ``update`` on a unique key index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maggma.stores import (
    GridFSStore,
    JSONStore,
    MemoryStore,
    MongoStore,
    MongoURIStore,
    MontyStore,
)
from monty.json import jsanitize

if TYPE_CHECKING:
    from jobflow import JobStore
    from maggma.core import Store

    from definet_flows.schemas import ValidationDoc

__all__ = [
    "INDEXED_FIELDS",
    "STRUCTURE_FIELDS",
    "SUMMARY_COLLECTION",
    "SUMMARY_INDEXED_FIELDS",
    "default_store",
    "ensure_indexes",
    "finished_keys",
    "init_stores",
    "make_jobstore",
    "open_store",
    "store_from_config",
    "summary_store",
    "upsert_validation_docs",
    "writing",
]

VALIDATION_COLLECTION = "validation"
#: collection of the builder's ValidationSummaryDocs, next to the results collection
SUMMARY_COLLECTION = "summaries"
#: fields users filter by; indexed where the backend supports indexes (MongoDB, mongomock)
INDEXED_FIELDS = (
    "defect_id",
    "host",
    "defect_types",
    "engine",
    "settings_hash",
    "checkpoint_sha256",
    "status",
    "from_unrelaxed.converged",
    "from_predicted.converged",
    "from_unrelaxed.n_ionic_steps",
    "from_predicted.n_ionic_steps",
    "same_minimum",
    "last_updated",
)
#: summary fields ``definet results --summary`` filters by
SUMMARY_INDEXED_FIELDS = ("group_by", "group", "engine", "checkpoint_sha256")
#: ValidationDoc fields holding structures (split off by ``structure_store``)
STRUCTURE_FIELDS = (
    "unrelaxed_structure",
    "predicted_structure",
    "final_from_unrelaxed",
    "final_from_predicted",
)
_FEW = 8  # upserts of up to this many documents look keys up one by one
_STORE_TYPES = {
    cls.__name__: cls for cls in (MongoStore, MongoURIStore, MemoryStore, MontyStore, JSONStore)
}


def default_store(
    directory: str | Path = "definet_results", collection_name: str = VALIDATION_COLLECTION
) -> MontyStore:
    """Return the embedded store: a ``MontyStore`` (sqlite) in ``directory``, key ``key``."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    return MontyStore(
        collection_name, database_path=str(directory), database_name="definet", key="key"
    )


def store_from_config(config: str | Path | dict[str, Any]) -> Store:
    """Return a store described by a YAML/JSON file or a dict.

    The spec names a maggma store and its arguments, at top level or under
    ``results_store``::

        type: MongoURIStore            # or MongoStore, MemoryStore (tests), MontyStore, JSONStore
        uri: mongodb://user:pass@host:27017/definet
        database: definet
        collection_name: validation

    Raises
    ------
    ValueError
        If the type is missing or not one of the supported stores.
    """
    if isinstance(config, str | Path):
        from monty.serialization import loadfn

        spec = loadfn(config)
    else:
        spec = dict(config)
    spec = dict(spec.get("results_store", spec))
    kind = spec.pop("type", None)
    if kind not in _STORE_TYPES:
        raise ValueError(f"Store type {kind!r} not supported; use one of {', '.join(_STORE_TYPES)}")
    spec.setdefault("key", "key")
    if kind in ("MongoStore", "MongoURIStore", "MemoryStore", "MontyStore"):
        spec.setdefault("collection_name", VALIDATION_COLLECTION)
    if kind == "JSONStore":
        spec.setdefault("read_only", False)
    if kind in ("MongoStore", "MongoURIStore"):  # MongoURIStore is deprecated in maggma
        spec.setdefault("database", None)  # may come from the uri
        return MongoStore(**spec)
    return _STORE_TYPES[kind](**spec)


def open_store(location: str | Path) -> Store:
    """Return the results store at ``location`` (not connected).

    A file is a store config (:func:`store_from_config`, e.g. MongoDB); anything else is the
    directory of the embedded store (:func:`default_store`), made absolute so that jobs
    running in their own folders find it.
    """
    path = Path(location).expanduser()
    if path.is_file():
        return store_from_config(path)
    return default_store(path.resolve())


def ensure_indexes(
    store: Store, fields: Iterable[str] = INDEXED_FIELDS, key: str = "key"
) -> list[str]:
    """Index ``key`` (unique) and ``fields`` where supported; return the indexed fields.

    montydb (MontyStore) has no indexes: nothing is indexed and queries scan.
    """
    done = []
    for field, unique in [(key, True), *((f, False) for f in fields)]:
        try:
            if store.ensure_index(field, unique=unique):
                done.append(field)
        except NotImplementedError:
            return done
    return done


def summary_store(store: Store, collection_name: str = SUMMARY_COLLECTION) -> Store:
    """Return the builder's summary store next to ``store`` (same kind and place).

    Its key is ``summary_id``. For a ``MemoryStore`` the summaries live in a separate
    in-memory database (mongomock keeps no state between clients).
    """
    summaries = _sibling(store, collection_name)
    summaries.key = "summary_id"
    return summaries


def init_stores(store: Store) -> dict[str, list[str]]:
    """Connect the results store and its summary store and build their indexes.

    What ``definet store init`` runs once per MongoDB database (writes also index the
    results collection on first use). Raises whatever the connection raises, e.g.
    ``pymongo.errors.ServerSelectionTimeoutError`` when MongoDB cannot be reached.

    Returns
    -------
    dict
        Collection name -> indexed fields (empty lists on montydb, which has no indexes).
    """
    summaries = summary_store(store)
    done = {}
    for s, fields, key in (
        (store, INDEXED_FIELDS, "key"),
        (summaries, SUMMARY_INDEXED_FIELDS, "summary_id"),
    ):
        with s:
            done[s.collection_name] = ensure_indexes(s, fields, key=key)
    return done


def _sibling(store: Store, name: str, data: bool = False) -> Store:
    """A store of the same kind and location as ``store`` with collection ``name``."""
    if isinstance(store, MontyStore):
        return MontyStore(
            name, database_path=store.database_path, database_name=store.database_name
        )
    if isinstance(store, JSONStore):
        return JSONStore(str(Path(store.paths[0]).with_name(f"{name}.json")), read_only=False)
    if isinstance(store, MemoryStore):
        return MemoryStore(name)
    if isinstance(store, MongoStore):  # MongoDB: the data store is GridFS
        args = {
            "database": store.database,
            "collection_name": name,
            "host": store.host,
            "port": store.port,
            "username": store.username,
            "password": store.password,
            "uri": getattr(store, "uri", None),
            "auth_source": store.auth_source,  # how to log in and connect: as the results store
            "mongoclient_kwargs": store.mongoclient_kwargs,
            "ssh_tunnel": store.ssh_tunnel,
        }
        return GridFSStore(**args) if data else MongoStore(**args)
    raise TypeError(f"Cannot derive a job store from {type(store).__name__}")


def make_jobstore(
    store: Store | None = None,
    directory: str | Path = "definet_results",
    docs_collection: str = "outputs",
    data_collection: str = "outputs_data",
) -> JobStore:
    """Return a jobflow ``JobStore`` next to the results store.

    The docs store and the additional ``"data"`` store (for ``@job(data=...)`` outputs) are of
    the same kind and location as ``store`` (default: :func:`default_store` in
    ``directory``); on MongoDB the data store is GridFS.
    """
    from jobflow import JobStore

    store = store if store is not None else default_store(directory)
    return JobStore(
        _sibling(store, docs_collection),
        additional_stores={"data": _sibling(store, data_collection, data=True)},
    )


def _as_dict(doc: ValidationDoc | dict) -> dict:
    d = doc.model_dump() if hasattr(doc, "model_dump") else dict(doc)
    return jsanitize(d, strict=True, allow_bson=True)


def _same(stored: dict, new: dict) -> bool:
    ignore = ("_id", "last_updated")
    return {k: v for k, v in stored.items() if k not in ignore} == {
        k: v for k, v in new.items() if k not in ignore
    }


@contextmanager
def writing(store: Store) -> Iterator[Store]:
    """Connect ``store`` for a write and close it; embedded stores under a file lock.

    montydb rewrites its ``monty.storage.cfg`` on every connect, so two processes that
    connect at once (``definet generate --workers 2``) can read it half-written; the lock
    in the store directory serialises their short writes. MongoDB needs no lock.
    """
    from filelock import FileLock

    path = getattr(store, "database_path", None)
    lock = FileLock(str(Path(path) / ".definet-write.lock")) if path else nullcontext()
    with lock, store:
        yield store


def upsert_validation_docs(
    store: Store,
    docs: Iterable[ValidationDoc | dict],
    structure_store: Store | None = None,
) -> int:
    """Insert new documents and replace changed ones, by ``key``; a rerun writes nothing.

    Parameters
    ----------
    store
        Connected results store.
    docs
        ValidationDocs (or their dicts).
    structure_store
        If given, the structure fields (:data:`STRUCTURE_FIELDS`) go there, keyed by ``key``,
        and ``store`` keeps the scalar documents (fast scans on index-less backends).

    Notes
    -----
    Embedded stores (MontyStore, JSONStore, MemoryStore) have no usable index: maggma's
    ``update`` scans the collection once per document. Here, for more than a few documents,
    one scan finds the existing keys and new documents are bulk-inserted; only documents
    whose content changed (``last_updated`` aside) are replaced. MongoDB stores use
    ``update`` on the key index.

    Returns
    -------
    int
        Number of documents inserted or replaced in ``store``.
    """
    dicts = list({d["key"]: d for d in map(_as_dict, docs)}.values())
    if structure_store is not None:
        split = [{"key": d["key"], **{f: d.pop(f, None) for f in STRUCTURE_FIELDS}} for d in dicts]
        upsert_validation_docs(structure_store, split)
    if not dicts:
        return 0
    if not isinstance(store, MemoryStore):  # MongoDB: indexed upserts
        ensure_indexes(store)
        store.update(dicts, key="key")
        return len(dicts)
    coll = store._collection
    written = 0
    if len(dicts) <= _FEW:  # a lookup per document beats one scan of every key
        for d in dicts:
            stored = coll.find_one({"key": d["key"]})
            if stored is None:
                coll.insert_one(d)
                d.pop("_id", None)
            elif not _same(stored, d):
                coll.replace_one({"_id": stored["_id"]}, d)
            else:
                continue
            written += 1
    else:
        wanted = {d["key"]: d for d in dicts}
        # one scan, no $in: montydb evaluates $in document by document
        existing = {d["key"]: d["_id"] for d in coll.find({}, {"key": 1}) if d.get("key") in wanted}
        new = [d for k, d in wanted.items() if k not in existing]
        changed = []
        if existing:
            for stored in coll.find({}):
                if stored.get("key") in existing and not _same(stored, wanted[stored["key"]]):
                    changed.append(wanted[stored["key"]])
        if new:
            coll.insert_many(new)
            for d in new:  # insert_many adds _id to the dicts
                d.pop("_id", None)
        for d in changed:
            coll.replace_one({"_id": existing[d["key"]]}, d)
        written = len(new) + len(changed)
    if written and isinstance(store, JSONStore) and not store.read_only:
        store.update_json_file()
    return written


def finished_keys(
    store: Store, criteria: dict | None = None, retry_failed: bool = False
) -> set[str]:
    """Return the keys of the stored documents of a connected store (optionally filtered by
    ``criteria``; failed ones left out with ``retry_failed``).

    A rerun skips defects whose ``schemas.make_key(...)`` is in this set.
    """
    if retry_failed:
        criteria = {**(criteria or {}), "status": {"$ne": "failed"}}
    return {d["key"] for d in store.query(criteria=criteria or {}, properties=["key"])}
