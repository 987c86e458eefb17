"""Training data from the pipeline: relax defect supercells once and store the relaxed pairs.

::

    plan (sets of defect specs + one engine) ─▶ defects ─▶ per defect: relax from the
        unrelaxed start ─▶ RelaxedPairDoc ─▶ "relaxed_pairs" collection of the results store

Each defect's document is upserted by its own job, keyed by
``defect_id:engine:settings_hash``, so an interrupted generation keeps what it finished and a
rerun relaxes only the defects not stored yet. :mod:`definet_flows.export` writes the stored
pairs in the official DefiNet dataset layout, which ``definet train`` reads.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jobflow import Flow, Maker, OnMissing, job
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymatgen.core import Structure

from definet_flows.defects import DefectEntry, DefectSupercellMaker
from definet_flows.engines import EngineRelaxMaker, RelaxEngine
from definet_flows.local_runs import failure_log, job_work_dir, remove_empty_job_dirs
from definet_flows.relax_results import RelaxResult
from definet_flows.schemas import RelaxOutcome

if TYPE_CHECKING:
    from maggma.core import Store

    from definet_flows.spec import ValidationSpec

__all__ = [
    "PAIRS_COLLECTION",
    "GenerationPlan",
    "RelaxedPairDoc",
    "RelaxedPairsFlowMaker",
    "pairs_store",
    "run_generation",
    "store_relaxed_pair",
]

logger = logging.getLogger(__name__)
#: collection of the RelaxedPairDocs, next to the results collection
PAIRS_COLLECTION = "relaxed_pairs"


def pairs_store(results_store: Store) -> Store:
    """The relaxed-pairs store next to ``results_store`` (same kind and place), key ``key``."""
    from definet_flows.stores import _sibling

    return _sibling(results_store, PAIRS_COLLECTION)


def pair_key(defect_id: str, engine: RelaxEngine) -> str:
    """Store key of one relaxed pair: the defect and the engine settings that relaxed it."""
    return f"{defect_id}:{engine.name}:{engine.settings_hash}"


class RelaxedPairDoc(BaseModel):
    """One defect supercell relaxed from its unrelaxed (ideal-lattice) start."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    key: str = Field(description="Store key: defect_id:engine:settings_hash.")
    defect_id: str = Field(description="Stable defect id from DefectSupercellMaker.")
    host: str = Field(description="Host name.")
    formula: str = Field(description="Formula of the defect supercell (real atoms).")
    is_2d: bool = Field(description="Whether the host is a 2D monolayer.")
    defect_names: list[str] = Field(description="Defect names, e.g. ['v_S', 'W_Mo'].")
    n_defects: int = Field(description="Number of point defects.")
    n_sites: int = Field(description="Number of atoms relaxed (vacancy nodes excluded).")
    supercell_matrix: list[list[int]] = Field(description="Supercell of the host unit cell.")
    engine: str = Field(description="Relaxation engine.")
    engine_settings: dict[str, Any] = Field(description="Engine settings.")
    settings_hash: str = Field(description="Hash of the engine settings.")
    status: Literal["completed", "failed"] = Field(description="'failed': no relaxed structure.")
    error: str | None = Field(None, description="What failed (None when completed).")
    relaxation: RelaxOutcome = Field(description="Steps, energy, forces, convergence.")
    entry: DefectEntry = Field(description="The defect (marked unrelaxed structure).")
    host_unit_cell: Structure | None = Field(
        None, description="Unit cell of the host (what the dataset layout stores beside pairs)."
    )
    relaxed_structure: Structure | None = Field(
        None, description="Relaxed structure, same atom order as the unrelaxed one."
    )
    last_updated: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def make(
        cls,
        entry: DefectEntry,
        result: RelaxResult | None,
        engine: RelaxEngine,
        host_unit_cell: Structure | None = None,
    ) -> RelaxedPairDoc:
        """The document of ``entry``; failed when ``result`` is None (the relaxation crashed)."""
        if result is None:
            error = "relaxation failed (traceback in failures.log of the work directory)"
            outcome, status = RelaxOutcome.failed(error), "failed"
        else:
            outcome, status, error = RelaxOutcome.from_result(result), "completed", None
        return cls(
            key=pair_key(entry.defect_id, engine),
            defect_id=entry.defect_id,
            host=entry.host,
            formula=entry.formula,
            is_2d=entry.is_2d,
            defect_names=entry.defect_names,
            n_defects=len(entry.defects),
            n_sites=entry.n_sites,
            supercell_matrix=entry.supercell_matrix,
            engine=engine.name,
            engine_settings=engine.settings,
            settings_hash=engine.settings_hash,
            status=status,
            error=error,
            relaxation=outcome,
            entry=entry,
            host_unit_cell=host_unit_cell,
            relaxed_structure=None if result is None else result.final_structure,
        )

    def relax_result(self) -> RelaxResult:
        """The stored relaxation as a RelaxResult (e.g. to reuse it as a validation's
        unrelaxed start); ValueError for a failed document."""
        r = self.relaxation
        if self.status != "completed" or self.relaxed_structure is None:
            raise ValueError(f"relaxed pair {self.key} failed: no relaxation to reuse")
        return RelaxResult(
            engine=self.engine,
            settings=self.engine_settings,
            settings_hash=self.settings_hash,
            n_ionic_steps=r.n_ionic_steps,
            energy=r.energy,
            energy_per_atom=r.energy_per_atom,
            max_force=r.max_force,
            converged=r.converged,
            final_structure=self.relaxed_structure,
            wall_time_s=r.wall_time_s,
        )


@job
def store_relaxed_pair(
    entry: DefectEntry,
    result: RelaxResult | None,
    engine: RelaxEngine,
    store: Store,
    host_unit_cell: Structure | None = None,
) -> dict[str, Any]:
    """Jobflow job: upsert one defect's RelaxedPairDoc (failed when ``result`` is None).

    Returns ``key``, ``status``, ``n_ionic_steps`` and ``written``.
    """
    from definet_flows.stores import upsert_validation_docs, writing

    doc = RelaxedPairDoc.make(entry, result, engine, host_unit_cell)
    with writing(store):
        written = upsert_validation_docs(store, [doc])
    logger.info(
        "relaxed %s (%s): %s steps",
        doc.defect_id,
        ",".join(doc.defect_names),
        doc.relaxation.n_ionic_steps,
    )
    return {
        "key": doc.key,
        "status": doc.status,
        "n_ionic_steps": doc.relaxation.n_ionic_steps,
        "written": written,
    }


@dataclass
class RelaxedPairsFlowMaker(Maker):
    """Maker of the flow that relaxes defects once and stores them as training pairs.

    Parameters
    ----------
    name
        Name of the flow.
    relax_maker
        Relaxation Maker (engine and settings).
    store
        Where the RelaxedPairDocs go (:func:`pairs_store` of a results store).
    skip_finished
        Leave out defects already stored with this engine and settings (failed ones too,
        unless ``retry_failed``).
    retry_failed
        Relax again defects whose stored document failed.
    unit_cells
        Host name -> unit cell, stored with each pair (the dataset layout needs it).
    """

    name: str = "definet relaxed pairs"
    relax_maker: EngineRelaxMaker = field(default_factory=EngineRelaxMaker)
    store: Store | None = None
    skip_finished: bool = True
    retry_failed: bool = False
    unit_cells: dict[str, Structure] = field(default_factory=dict)

    def finished(self) -> set[str]:
        """Keys already stored (failed ones left out with ``retry_failed``)."""
        from definet_flows.stores import finished_keys

        with self.store:
            return finished_keys(self.store, retry_failed=self.retry_failed)

    def pending(self, entries: Sequence[DefectEntry]) -> list[DefectEntry]:
        """The defects still to relax (all of them without ``skip_finished``)."""
        if not self.skip_finished:
            return list(entries)
        engine = self.relax_maker.engine
        done = self.finished()
        return [e for e in entries if pair_key(e.defect_id, engine) not in done]

    def make(self, entries: Sequence[DefectEntry]) -> Flow:
        """One sub-flow per pending defect: [relax, store doc]; metadata ``keys``/``pending``."""
        if self.store is None:
            raise ValueError("RelaxedPairsFlowMaker needs a store (see pairs_store)")
        engine = self.relax_maker.engine
        if self.relax_maker.check:
            engine.check_available()
        keys = {e.defect_id: pair_key(e.defect_id, engine) for e in entries}
        pending = self.pending(entries)
        parts = []
        for entry in pending:
            label = f"{'+'.join(entry.defect_names)} [{entry.defect_id[:8]}]"
            relax = self.relax_maker.make(entry.defect_structure)
            relax.append_name(f" {label}")
            doc = store_relaxed_pair(
                entry, relax.output, engine, self.store, self.unit_cells.get(entry.host)
            )
            doc.name = f"relaxed pair {label}"
            doc.config.on_missing_references = OnMissing.NONE
            parts.append(Flow([relax, doc], output=doc.output, name=f"relax {label}"))
        return Flow(
            parts,
            output=[p.output for p in parts],
            name=self.name,
            metadata={
                "keys": [keys[e.defect_id] for e in entries],
                "pending": [keys[e.defect_id] for e in pending],
                "n_skipped": len(entries) - len(pending),
            },
        )


# -- the plan: many defect sets, one engine, one store -----------------------------------------


class GenerationPlan(BaseModel):
    """Defect sets relaxed with one engine into one store (YAML: ``workflows/*.yaml``).

    ``sets`` are partial :class:`~definet_flows.spec.ValidationSpec` fields (host, supercell,
    n, vacancies, dopants, defect_counts, seed, ...); ``engine``, ``engine_settings`` and
    ``store`` are shared by all of them.
    """

    model_config = ConfigDict(extra="forbid")

    engine: str = "forcefield"
    engine_settings: dict[str, Any] = Field(default_factory=dict)
    store: str = "definet_results"
    sets: list[dict[str, Any]] = Field(min_length=1)

    @classmethod
    def from_yaml(cls, path: str | Path) -> GenerationPlan:
        """Read a plan; errors name the file and the field (``sets[i].field`` for a set)."""
        from definet_flows.spec import _describe, read_yaml_mapping

        raw = read_yaml_mapping(path, "generation plan", "a mapping with 'sets'")
        try:
            plan = cls(**raw)
        except ValidationError as exc:
            raise ValueError(f"{path}: {_describe(exc)}") from None
        plan.specs(source=str(path))  # every set is checked now
        return plan

    def specs(self, source: str = "generation plan") -> list[ValidationSpec]:
        """One ValidationSpec per set (engine and store filled in)."""
        from definet_flows.spec import ValidationSpec

        shared = {
            "engine": self.engine,
            "engine_settings": self.engine_settings,
            "store": self.store,
        }
        specs = []
        for i, item in enumerate(self.sets):
            if not isinstance(item, dict):
                raise ValueError(f"{source}: sets[{i}] must be a mapping of spec fields")
            clash = sorted(set(item) & set(shared))
            if clash:
                raise ValueError(f"{source}: sets[{i}] sets {clash}; give them once at the top")
            specs.append(ValidationSpec.from_dict({**item, **shared}, source=f"{source} sets[{i}]"))
        return specs

    def unit_cells(self) -> dict[str, Structure]:
        """Host name (as in DefectEntry.host) -> unit cell, for every set."""
        from definet_flows.hosts import load_host

        cells = {}
        for spec in self.specs():
            host = load_host(spec.host)
            cells[host.name] = host.structure
        return cells

    def entries(self) -> list[DefectEntry]:
        """All defects of all sets, unique by defect_id, in set order."""
        out: dict[str, DefectEntry] = {}
        for spec in self.specs():
            made = DefectSupercellMaker.make.original(spec.defect_maker(), spec.host)
            for entry in made[: spec.n]:
                out.setdefault(entry.defect_id, entry)
        return list(out.values())

    def relax_engine(self) -> RelaxEngine:
        """The engine of every set."""
        return RelaxEngine(self.engine, dict(self.engine_settings))


# -- running it locally -----------------------------------------------------------------------


def _run_part(args: tuple[RelaxedPairsFlowMaker, DefectEntry, str]) -> None:
    """Worker: build and run one defect's sub-flow with an in-memory JobStore.

    Tracebacks of failed jobs are appended to ``<work_dir>/failures.log``.
    """
    import torch
    from jobflow import JobStore, run_locally
    from maggma.stores import MemoryStore

    maker, entry, work_dir = args
    torch.set_num_threads(1)
    flow = replace(maker, skip_finished=False).make([entry])
    jobstore = JobStore(MemoryStore("outputs"), additional_stores={"data": MemoryStore("data")})
    with failure_log(work_dir), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "cd is deprecated", FutureWarning)  # jobflow's
        run_locally(
            flow,
            store=jobstore,
            create_folders=True,
            root_dir=work_dir,
            log=False,
            ensure_success=False,
        )


def run_generation(
    plan: GenerationPlan,
    workers: int = 1,
    retry_failed: bool = False,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Relax every pending defect of ``plan`` and store its pair; return counts and timing.

    Defects already in the store are skipped, so an interrupted run resumes where it
    stopped. ``workers`` processes (spawned, one torch thread each) relax defects in
    parallel; each writes its own document.

    Returns
    -------
    dict
        ``n_requested``, ``n_run``, ``n_skipped``, ``n_completed`` and ``n_failed`` (over
        the plan's defects in the store), ``store``, ``wall_time_s``.
    """
    from definet_flows.stores import open_store

    start = time.perf_counter()
    store = pairs_store(open_store(plan.store))
    store.connect()  # creates the database before any worker opens it
    store.close()
    engine = plan.relax_engine()
    maker = RelaxedPairsFlowMaker(
        relax_maker=EngineRelaxMaker(name=f"{engine.name} relax", engine=engine),
        store=store,
        retry_failed=retry_failed,
        unit_cells=plan.unit_cells(),
    )
    entries = plan.entries()
    pending = maker.pending(entries)
    work_dir = job_work_dir(plan.store, work_dir)
    parts = [(maker, e, str(work_dir)) for e in pending]
    if parts:
        _run_all(parts, workers, progress)
    remove_empty_job_dirs(work_dir)
    with store:
        wanted = {pair_key(e.defect_id, engine) for e in entries}
        docs = [d for d in store.query(properties=["key", "status"]) if d["key"] in wanted]
    return {
        "n_requested": len(entries),
        "n_run": len(pending),
        "n_skipped": len(entries) - len(pending),
        "n_completed": sum(d["status"] == "completed" for d in docs),
        "n_failed": sum(d["status"] == "failed" for d in docs),
        "store": plan.store,
        "wall_time_s": time.perf_counter() - start,
    }


@contextmanager
def single_threaded_children() -> Iterator[None]:
    """Spawned workers start with one OpenMP/BLAS thread each (unless the user set more).

    Without it every worker's BLAS threads spin on the same cores: measured on 2 cores with
    2 CHGNet workers, half the CPU time went to the kernel and relaxations ran 2-3x slower.
    """
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    added = [n for n in names if n not in os.environ]
    os.environ.update({n: "1" for n in added})
    try:
        yield
    finally:
        for n in added:
            os.environ.pop(n, None)


def _run_all(parts: list[tuple], workers: int, progress: bool) -> None:
    from rich.progress import track

    def tracked(items):
        return track(
            items,
            total=len(parts),
            description="relaxing defects",
            disable=not progress,
            transient=False,
        )

    if workers <= 1:
        for item in tracked(parts):
            _run_part(item)
        return
    with single_threaded_children(), mp.get_context("spawn").Pool(workers) as pool:
        for _ in tracked(pool.imap_unordered(_run_part, parts)):
            pass
