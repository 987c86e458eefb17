"""Benchmark maggma's embedded on-disk stores for the DefiNet results store.

Compares ``JSONStore`` (file-backed mongomock) and ``MontyStore`` (montydb, sqlite) on
ValidationDoc-like documents: maggma's ``update`` one document per call (what a finished
validation job does) and in one call, ``definet_flows.stores.upsert_validation_docs`` (bulk
and one at a time, first run and rerun), the queries users run, reopening from disk and
disk size.

Usage::

    python benchmarks/store_backends.py                 # 10,000 docs
    python benchmarks/store_backends.py --n-docs 2000 --single 200 --maggma-batched
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import maggma
import montydb
from maggma.stores import JSONStore, MontyStore

from definet_flows.stores import ensure_indexes, finished_keys, upsert_validation_docs

HOSTS = ["MoS2", "WSe2", "hBN", "GaSe", "InSe", "P"]
ENGINES = ["chgnet", "sevennet", "cp2k"]


def fake_doc(i: int, rng: random.Random) -> dict:
    """Return a small document shaped like a ValidationDoc without structures."""
    host = HOSTS[i % len(HOSTS)]
    engine = ENGINES[i % len(ENGINES)]
    types = rng.choice([["vacancy"], ["substitution"], ["substitution", "vacancy"]])
    steps_u, steps_p = rng.randint(10, 200), rng.randint(1, 40)
    e_u = -7.0 * 48 + rng.random()

    def outcome(steps: int, energy: float) -> dict:
        return {
            "n_ionic_steps": steps,
            "energy": energy,
            "energy_per_atom": energy / 48,
            "max_force": rng.random() * 0.05,
            "converged": rng.random() < 0.95,
            "wall_time_s": rng.random() * 60,
        }

    defect_id = f"{i:016x}"
    return {
        "key": f"{defect_id}:{engine}:abcdef012345:0123456789ab",
        "defect_id": defect_id,
        "host": host,
        "formula": f"{host}48",
        "defect_types": types,
        "defect_names": ["v_S"],
        "n_defects": len(types),
        "n_sites": 48 + (i % 5) * 16,
        "engine": engine,
        "settings_hash": "abcdef012345",
        "checkpoint_sha256": "0123456789ab" * 5,
        "from_unrelaxed": outcome(steps_u, e_u),
        "from_predicted": outcome(steps_p, e_u - 1e-3),
        "energy_difference": -1e-3,
        "rmsd": rng.random() * 0.1,
        "same_minimum": True,
        "definet_mae": rng.random() * 0.05,
        "last_updated": datetime.now(UTC),
    }


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Return (best wall time in s, last result) of ``fn`` over ``repeat`` runs."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def make_store(kind: str, directory: Path) -> MontyStore | JSONStore:
    """Return a fresh store of ``kind`` in ``directory``."""
    if kind == "JSONStore":
        return JSONStore(str(directory / "docs.json"), read_only=False, key="key")
    if kind == "MontyStore":
        return MontyStore("docs", database_path=str(directory), key="key")
    raise ValueError(f"unknown store backend {kind!r}; use JSONStore or MontyStore")


def dir_size(path: Path) -> int:
    """Return the total size in bytes of the files below ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench(kind: str, docs: list[dict], args: argparse.Namespace) -> dict[str, float]:
    """Run all measurements for one backend and return figures (seconds, bytes)."""
    res: dict[str, float] = {}
    n = len(docs)
    extra = [fake_doc(n + k, random.Random(k)) for k in range(2 * args.single_full)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for sub in ("single", "batch", "maggma"):
            (tmp_path / sub).mkdir()

        # maggma update, one doc per call, into an empty store (jobs writing as they finish)
        store = make_store(kind, tmp_path / "single")
        store.connect()
        singles = docs[: args.single]
        t, _ = timed(lambda: [store.update(d) for d in singles])
        res[f"maggma update, 1 doc/call, first {args.single} (ms/doc)"] = 1e3 * t / len(singles)
        store.close()

        if args.maggma_batched:  # quadratic in n: slow for 10,000
            store = make_store(kind, tmp_path / "maggma")
            store.connect()
            t, _ = timed(lambda: store.update(docs))
            res[f"maggma update, all {n} in one call (s)"] = t
            store.close()

        path = tmp_path / "batch"
        store = make_store(kind, path)
        store.connect()
        t, _ = timed(lambda: upsert_validation_docs(store, docs))
        res[f"upsert_validation_docs, {n} new (s)"] = t
        t, _ = timed(lambda: upsert_validation_docs(store, docs))
        res[f"upsert_validation_docs, {n} again, unchanged (s)"] = t
        res["count after rerun"] = store.count()
        changed = [{**d, "rmsd": -1.0} for d in docs[: args.changed]]
        t, _ = timed(lambda: upsert_validation_docs(store, changed))
        res[f"upsert_validation_docs, {args.changed} changed (ms/doc)"] = 1e3 * t / args.changed
        res["count after changed"] = store.count()

        one_by_one = extra[: args.single_full]
        t, _ = timed(lambda: [store.update(d) for d in one_by_one])
        res[f"maggma update 1 new doc at {n} (ms/doc)"] = 1e3 * t / len(one_by_one)
        one_by_one = extra[args.single_full :]
        t, _ = timed(lambda: [upsert_validation_docs(store, [d]) for d in one_by_one])
        res[f"upsert_validation_docs 1 new doc at {n} (ms/doc)"] = 1e3 * t / len(one_by_one)

        res["indexed fields"] = len(ensure_indexes(store))
        t, m = timed(lambda: len(list(store.query({"host": "MoS2"}))), repeat=3)
        res["query host=MoS2, all fields (s)"] = t
        res["  docs returned"] = m
        crit = {"host": "WSe2", "engine": "sevennet", "from_predicted.converged": True}
        t, m = timed(lambda: len(list(store.query(crit, properties=["key"]))), repeat=3)
        res["query host+engine+converged, key only (s)"] = t
        res["  docs returned "] = m
        t, _ = timed(lambda: store.count({"defect_types": "vacancy"}), repeat=3)
        res["count defect_types=vacancy (s)"] = t
        t, keys = timed(lambda: finished_keys(store), repeat=3)
        res["finished_keys, distinct key (s)"] = t
        sample = random.Random(1).sample(sorted(keys), args.lookups)
        t, _ = timed(lambda: [store.query_one({"key": k}) for k in sample])
        res["point lookup by key (ms/query)"] = 1e3 * t / args.lookups
        store.close()

        res["disk size (MB)"] = dir_size(path) / 1e6
        reopened = make_store(kind, path)
        t, _ = timed(lambda: (reopened.connect(), reopened.count())[1])
        res["reopen + count (s)"] = t
        reopened.close()
    return res


def main() -> None:
    """Parse arguments, run both backends, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-docs", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=500, help="1-doc updates into empty store")
    parser.add_argument("--single-full", type=int, default=20, help="1-doc updates at full store")
    parser.add_argument("--lookups", type=int, default=50)
    parser.add_argument("--changed", type=int, default=50, help="docs replaced with new values")
    parser.add_argument(
        "--maggma-batched", action="store_true", help="also time store.update(all docs)"
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=["JSONStore", "MontyStore"],
        default=["JSONStore", "MontyStore"],
    )
    args = parser.parse_args()

    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"maggma {maggma.__version__}, montydb {montydb.__version__} (sqlite storage)"
    )
    rng = random.Random(0)
    docs = [fake_doc(i, rng) for i in range(args.n_docs)]
    print(f"documents: {args.n_docs} ValidationDoc-like docs (no structures)\n")

    results = {kind: bench(kind, docs, args) for kind in args.backends}
    rows = list(next(iter(results.values())))
    width = max(map(len, rows)) + 2
    print("".ljust(width) + "".join(k.rjust(14) for k in results))
    for row in rows:
        vals = "".join(f"{results[k][row]:14.4g}" for k in results)
        print(row.ljust(width) + vals)


if __name__ == "__main__":
    main()
