"""The end-to-end validation flow: both starts, the same engine, the same settings.

::

    host ─▶ defects (made when the flow is built, cheap) ─▶ DefiNet prediction (batched job)
        ─▶ per defect: relax from the unrelaxed start ┐  (one engine Maker, so identical
                       relax from the predicted start ┴▶  settings) ─▶ ValidationDoc ─▶ store

Each defect's document is written to the results store by its own job as soon as its two
relaxations end, keyed by ``defect_id:engine:settings_hash:checkpoint_sha`` (see
:func:`definet_flows.schemas.make_key`), so an interrupted run keeps what it finished and a
rerun builds jobs only for the defects not stored yet. A relaxation that crashes does not
stop the others: the document job runs with the missing result as None
(``OnMissing.NONE``) and stores the defect as failed. A relaxation that hits the step cap is
a result (``converged=False``), stored like any other.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobflow import Flow, Maker, OnMissing, job

from definet_flows.defects import DefectEntry, DefectSupercellMaker
from definet_flows.engines import EngineRelaxMaker, RelaxEngine
from definet_flows.local_runs import FAILURE_LOG, failure_log, job_work_dir, remove_empty_job_dirs
from definet_flows.predict import DefiNetPredictMaker, checkpoint_path
from definet_flows.relax_results import RelaxResult
from definet_flows.schemas import ValidationDoc, make_key

if TYPE_CHECKING:
    from maggma.core import Store
    from pymatgen.core import Structure

    from definet_flows.spec import ValidationSpec

__all__ = [
    "ValidationFlowMaker",
    "build_validation_flow",
    "flatten_summary",
    "run_validation",
    "store_validation_doc",
    "validation_summary",
]

logger = logging.getLogger(__name__)
#: attribute of the log records that :func:`store_validation_doc` emits per defect
RECORD_ATTR = "definet_validation"


# -- the per-defect document job -------------------------------------------------------------


def _validation_doc(
    entry: DefectEntry,
    from_unrelaxed: RelaxResult | None,
    from_predicted: RelaxResult | None,
    predicted_structure: Structure | None,
    prediction_time_s: float | None,
    checkpoint_sha256: str,
    engine: RelaxEngine,
    rmsd_tol: float,
    energy_tol: float,
    store_structures: bool,
    out_of_distribution: str | None = None,
) -> ValidationDoc:
    """The ValidationDoc of one defect; a failed document when anything is missing."""
    errors = []
    if predicted_structure is None:
        errors.append("DefiNet prediction failed")
    if from_unrelaxed is None:
        errors.append("relaxation from the unrelaxed start failed")
    if from_predicted is None:
        errors.append(
            "relaxation from the predicted start failed"
            if predicted_structure is not None
            else "relaxation from the predicted start did not run (no prediction)"
        )
    if not errors:
        try:
            return ValidationDoc.from_results(
                entry,
                from_unrelaxed,
                from_predicted,
                checkpoint_sha256,
                predicted_structure=predicted_structure,
                prediction_time_s=prediction_time_s,
                rmsd_tol=rmsd_tol,
                energy_tol=energy_tol,
                store_structures=store_structures,
                out_of_distribution=out_of_distribution,
            )
        except Exception as exc:  # a bad result must not lose the defect
            errors.append(f"comparing the two relaxations failed: {exc}")
    return ValidationDoc.from_failure(
        entry,
        engine=engine.name,
        engine_settings=engine.settings,
        settings_hash=engine.settings_hash,
        checkpoint_sha256=checkpoint_sha256,
        error="; ".join(errors),
        from_unrelaxed=from_unrelaxed,
        from_predicted=from_predicted,
        predicted_structure=predicted_structure,
        prediction_time_s=prediction_time_s,
        rmsd_tol=rmsd_tol,
        energy_tol=energy_tol,
        store_structures=store_structures,
        out_of_distribution=out_of_distribution,
    )


@job
def store_validation_doc(
    entry: DefectEntry,
    from_unrelaxed: RelaxResult | None,
    from_predicted: RelaxResult | None,
    predicted_structure: Structure | None,
    prediction_time_s: float | None,
    checkpoint_sha256: str | None,
    engine: RelaxEngine,
    results_store: Store,
    expected_checkpoint_sha256: str,
    rmsd_tol: float = 0.1,
    energy_tol: float = 0.01,
    store_structures: bool = True,
    out_of_distribution: str | None = None,
) -> dict[str, Any]:
    """Jobflow job: build one defect's ValidationDoc and upsert it into the results store.

    Made with ``on_missing_references=OnMissing.NONE`` by :class:`ValidationFlowMaker`: the
    output of a relaxation (or prediction) job that failed arrives as None and the defect is
    stored as failed.

    Parameters
    ----------
    entry
        The defect.
    from_unrelaxed, from_predicted
        ``RelaxResult`` of the two relaxations, None where the job failed.
    predicted_structure, prediction_time_s, checkpoint_sha256
        From the prediction job (None where it failed).
    engine
        The engine of both relaxations (for the key of a failed document).
    results_store
        Results store (connected here, so it must be reachable from the worker).
    expected_checkpoint_sha256
        sha256 of the checkpoint when the flow was built (used when the prediction failed).
    rmsd_tol, energy_tol, store_structures, out_of_distribution
        See :meth:`definet_flows.schemas.ValidationDoc.from_results`.

    Returns
    -------
    dict
        ``key``, ``defect_id``, ``status``, ``error``, steps and converged flags of both
        starts, and ``written`` (documents inserted or replaced).
    """
    from definet_flows.stores import upsert_validation_docs, writing

    doc = _validation_doc(
        entry,
        from_unrelaxed,
        from_predicted,
        predicted_structure,
        prediction_time_s,
        checkpoint_sha256 or expected_checkpoint_sha256,
        engine,
        rmsd_tol,
        energy_tol,
        store_structures,
        out_of_distribution,
    )
    with writing(results_store):
        written = upsert_validation_docs(results_store, [doc])
    record = {
        "key": doc.key,
        "defect_id": doc.defect_id,
        "status": doc.status,
        "error": doc.error,
        "steps_unrelaxed": doc.from_unrelaxed.n_ionic_steps,
        "steps_predicted": doc.from_predicted.n_ionic_steps,
        "converged_unrelaxed": doc.from_unrelaxed.converged,
        "converged_predicted": doc.from_predicted.converged,
        "written": written,
    }
    logger.info(
        "validated %s (%s): steps %s from unrelaxed, %s from predicted%s",
        doc.defect_id,
        ",".join(doc.defect_names),
        record["steps_unrelaxed"],
        record["steps_predicted"],
        f" - FAILED: {doc.error}" if doc.error else "",
        extra={RECORD_ATTR: record},
    )
    return record


# -- the flow Maker ------------------------------------------------------------------------


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _label(entry: DefectEntry) -> str:
    return f"{'+'.join(entry.defect_names)} [{entry.defect_id[:8]}]"


@dataclass
class ValidationFlowMaker(Maker):
    """Maker of the DefiNet validation flow of one host.

    Defects are generated when the flow is made (cheap, and it lets finished defects be
    skipped before anything runs); DefiNet predicts them in batched jobs; every defect is
    relaxed from its unrelaxed and from its predicted structure by the *same*
    ``relax_maker`` (identical engine settings), then one job stores its ValidationDoc.

    Parameters
    ----------
    name
        Name of the flow.
    defect_maker
        Makes the defect supercells (its ``make`` runs at flow-build time).
    predict_maker
        DefiNet prediction job Maker (checkpoint, batch size, device).
    relax_maker
        Relaxation Maker used for both starts; swap the engine by passing another one, e.g.
        ``EngineRelaxMaker(engine=RelaxEngine("cp2k", {"fmax": 0.05}))``.
    results_store
        Where the ValidationDocs go (default: the embedded store in ``definet_results``).
    max_defects
        Keep at most this many defects (single defects first, then multi-defect draws).
    skip_finished
        Leave out defects whose key is already in ``results_store``.
    retry_failed
        With ``skip_finished``, still rebuild defects whose stored document failed.
    predict_chunk
        Defects per prediction job. Each defect's two jobs that read its prediction load the
        whole chunk's output, so this is a trade-off between loading the checkpoint per job
        and decoding the chunk per defect (``benchmarks/flow_overhead.py``: a 20-structure
        chunk of 107-atom cells cost 0.25 s per load on 2 busy cores).
    rmsd_tol, energy_tol
        Tolerances (A, eV) of "same minimum".
    store_structures
        Keep the four structures in each ValidationDoc.
    """

    name: str = "definet validation"
    defect_maker: DefectSupercellMaker = field(default_factory=DefectSupercellMaker)
    predict_maker: DefiNetPredictMaker = field(default_factory=DefiNetPredictMaker)
    relax_maker: EngineRelaxMaker = field(default_factory=EngineRelaxMaker)
    results_store: Store | None = None
    max_defects: int | None = None
    skip_finished: bool = True
    retry_failed: bool = False
    predict_chunk: int = 16
    rmsd_tol: float = 0.1
    energy_tol: float = 0.01
    store_structures: bool = True

    @property
    def engine(self) -> RelaxEngine:
        """The engine of ``relax_maker``: name and settings enter every key."""
        return self.relax_maker.engine

    def defect_entries(self, host: str | Path | Structure) -> list[DefectEntry]:
        """Generate the defects of ``host`` now (``defect_maker``), at most ``max_defects``."""
        entries = DefectSupercellMaker.make.original(self.defect_maker, host)
        return entries[: self.max_defects] if self.max_defects is not None else entries

    def finished(self) -> set[str]:
        """Keys already in the results store (failed ones left out with ``retry_failed``)."""
        from definet_flows.stores import finished_keys

        with self._store() as store:
            return finished_keys(store, retry_failed=self.retry_failed)

    def _store(self) -> Store:
        if self.results_store is not None:
            return self.results_store
        from definet_flows.stores import default_store

        return default_store(Path("definet_results").resolve())

    def make(
        self,
        host: str | Path | Structure | None = None,
        entries: Sequence[DefectEntry] | None = None,
        unrelaxed_results: dict[str, RelaxResult] | None = None,
    ) -> Flow:
        """Make the validation flow.

        Parameters
        ----------
        host
            Host name, structure file or Structure (defects made by ``defect_maker``).
        entries
            Ready-made defects instead of ``host``.
        unrelaxed_results
            defect_id -> relaxation from the unrelaxed start already done with this engine
            and these settings (e.g. by ``definet generate``): used instead of relaxing
            again. A result with other settings raises ValueError.

        Returns
        -------
        Flow
            Sub-flows in run order: a prediction chunk [predict], then per defect of the
            chunk [relax from unrelaxed, relax from predicted, store doc]. Its output is the list of the store jobs' outputs;
            ``flow.metadata`` holds ``keys`` (all defects), ``pending`` (keys with jobs),
            ``n_skipped`` and ``checkpoint_sha256``.
        """
        from definet.checkpoint import file_sha256

        if (host is None) == (entries is None):
            raise ValueError("give exactly one of host or entries")
        engine = self.engine
        if self.relax_maker.check:
            engine.check_available()  # a missing package/binary fails before any work
        ckpt = checkpoint_path(self.predict_maker.checkpoint)
        sha = file_sha256(ckpt)
        predict_maker = replace(self.predict_maker, checkpoint=str(ckpt))
        entries = list(entries) if entries is not None else self.defect_entries(host)
        keys = {
            e.defect_id: make_key(e.defect_id, engine.name, engine.settings_hash, sha)
            for e in entries
        }
        known = dict(unrelaxed_results or {})
        for defect_id, result in known.items():
            if result.settings_hash != engine.settings_hash:
                raise ValueError(
                    f"unrelaxed result of {defect_id} was made with other engine settings "
                    f"({result.settings_hash[:12]} != {engine.settings_hash[:12]})"
                )
        done = self.finished() if self.skip_finished else set()
        pending = [e for e in entries if keys[e.defect_id] not in done]
        store = self._store()

        jobs: list[Any] = []
        outputs = []
        chunks = list(_chunks(pending, max(1, self.predict_chunk)))
        for k, chunk in enumerate(chunks):
            predict = predict_maker.make(list(chunk))
            predict.name = f"{predict_maker.name} {k + 1}/{len(chunks)}"
            jobs.append(Flow([predict], output=predict.output, name=predict.name))
            for i, entry in enumerate(chunk):
                label = _label(entry)
                relax_u = None
                if entry.defect_id not in known:
                    relax_u = self.relax_maker.make(entry.defect_structure)
                    relax_u.append_name(f" {label} from unrelaxed")
                relax_p = self.relax_maker.make(predict.output.structures[i])
                relax_p.append_name(f" {label} from predicted")
                doc = store_validation_doc(
                    entry,
                    relax_u.output if relax_u is not None else known[entry.defect_id],
                    relax_p.output,
                    predict.output.structures[i],
                    predict.output.time_per_structure_s,
                    predict.output.checkpoint_sha256,
                    engine,
                    store,
                    sha,
                    rmsd_tol=self.rmsd_tol,
                    energy_tol=self.energy_tol,
                    store_structures=self.store_structures,
                    out_of_distribution=predict.output.out_of_distribution[i],
                )
                doc.name = f"validation doc {label}"
                doc.config.on_missing_references = OnMissing.NONE
                parts = [j for j in (relax_u, relax_p, doc) if j is not None]
                jobs.append(Flow(parts, output=doc.output, name=f"validate {label}"))
                outputs.append(doc.output)
        return Flow(
            jobs,
            output=outputs,
            name=self.name,
            metadata={
                "keys": [keys[e.defect_id] for e in entries],
                "pending": [keys[e.defect_id] for e in pending],
                "n_skipped": len(entries) - len(pending),
                "checkpoint": str(ckpt),
                "checkpoint_sha256": sha,
            },
        )

    @classmethod
    def from_spec(cls, spec: ValidationSpec, **kwargs: Any) -> ValidationFlowMaker:
        """The flow Maker of a :class:`~definet_flows.spec.ValidationSpec`."""
        return cls(
            defect_maker=spec.defect_maker(),
            predict_maker=DefiNetPredictMaker(
                checkpoint=spec.checkpoint, batch_size=spec.batch_size
            ),
            relax_maker=EngineRelaxMaker(name=f"{spec.engine} relax", engine=spec.relax_engine()),
            results_store=spec.results_store(),
            max_defects=spec.n,
            **kwargs,
        )


def build_validation_flow(
    spec: ValidationSpec,
    entries: Sequence[DefectEntry] | None = None,
    unrelaxed_results: dict[str, RelaxResult] | None = None,
    **kwargs: Any,
) -> Flow:
    """Return the validation Flow of ``spec`` (finished defects left out).

    ``entries``: ready-made defects instead of the spec's (e.g. a held-out set);
    ``unrelaxed_results``: see :meth:`ValidationFlowMaker.make`; ``kwargs`` go to
    :class:`ValidationFlowMaker` (e.g. ``retry_failed=True``).
    """
    maker = ValidationFlowMaker.from_spec(spec, **kwargs)
    if entries is not None:
        return maker.make(entries=entries, unrelaxed_results=unrelaxed_results)
    return maker.make(spec.host, unrelaxed_results=unrelaxed_results)


# -- running it --------------------------------------------------------------------------------


class _ProgressHandler(logging.Handler):
    """Advances a rich progress bar on each stored ValidationDoc."""

    def __init__(self, progress: Any, task: Any) -> None:
        super().__init__(level=logging.INFO)
        self.progress, self.task = progress, task
        self.failed = 0

    def emit(self, record: logging.LogRecord) -> None:
        info = getattr(record, RECORD_ATTR, None)
        if info is None:
            return
        self.failed += info["status"] == "failed"
        note = f" ({self.failed} failed)" if self.failed else ""
        self.progress.update(
            self.task,
            advance=1,
            description=f"validated {info['defect_id'][:8]}: steps "
            f"{info['steps_unrelaxed']} -> {info['steps_predicted']}{note}",
        )


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[None]:
    """A rich progress bar over the defects while jobflow runs (INFO records of this module)."""
    if not enabled or not total:
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    old_level = logger.level
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task(f"relaxing {total} defects from both starts", total=total)
        handler = _ProgressHandler(progress, task)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)


def run_validation(
    spec: ValidationSpec,
    progress: bool = True,
    retry_failed: bool = False,
    work_dir: str | Path | None = None,
    keep_job_outputs: bool | None = None,
    entries: Sequence[DefectEntry] | None = None,
    build_summaries: bool = True,
    unrelaxed_results: dict[str, RelaxResult] | None = None,
    **maker_options: Any,
) -> dict[str, Any]:
    """Run the validation of ``spec`` locally and return its summary.

    Builds the flow (finished defects left out), runs it with ``jobflow.run_locally`` on a
    JobStore from :func:`~definet_flows.stores.make_jobstore` (one call per prediction chunk
    and per defect, in flow order, so each defect is stored as soon as its two relaxations
    end), updates the summaries with the maggma builder and returns the figures of the
    spec's defects.

    Parameters
    ----------
    spec
        The validation spec.
    progress
        Show a progress bar (stderr).
    retry_failed
        Rerun defects whose stored document failed.
    work_dir
        Where the job folders go (default: ``jobs`` in the store directory, or
        ``definet_jobs`` when the store is a config file).
    keep_job_outputs
        Keep jobflow's job outputs (atomate2 task documents, predictions) in collections
        next to the results store. None (default): yes for a configured store (MongoDB),
        no for the embedded store, where the JobStore is in memory: montydb has no indexes
        and every reference lookup decodes every stored task document, which made the run
        quadratic in the number of jobs (``benchmarks/flow_overhead.py``: 8 s of overhead
        per defect at 20 defects on disk). Everything the project reads is in the
        ValidationDocs either way.
    entries
        Ready-made defects to validate instead of those the spec generates (the spec
        still gives the engine, weights and store).
    unrelaxed_results
        Relaxations from the unrelaxed start already made with the same engine settings
        (defect_id -> RelaxResult), reused instead of relaxing again.
    build_summaries
        Run the summary builder over the store at the end (leave it to one process when
        several validate into the same embedded store at once).
    **maker_options
        More :class:`ValidationFlowMaker` fields (``predict_chunk``, ``rmsd_tol``, ...).

    Returns
    -------
    dict
        See :func:`validation_summary`, plus ``n_requested``, ``n_run``, ``n_skipped``,
        ``wall_time_s`` of this run and ``failures_log``, the file holding the tracebacks of
        the jobs that failed in it (None when none did).
    """
    from jobflow import run_locally
    from maggma.stores import MemoryStore

    from definet_flows.stores import make_jobstore

    start = time.perf_counter()
    store = spec.results_store()
    flow = build_validation_flow(
        spec, entries, unrelaxed_results, retry_failed=retry_failed, **maker_options
    )
    meta = flow.metadata
    failures = None
    if meta["pending"]:
        work_dir = job_work_dir(spec.store, work_dir)
        if keep_job_outputs is None:
            keep_job_outputs = spec.store_is_config
        jobstore = make_jobstore(store if keep_job_outputs else MemoryStore("definet_jobs"))
        log_path = work_dir / FAILURE_LOG
        logged_before = log_path.stat().st_size if log_path.is_file() else 0
        with (
            failure_log(work_dir),
            _progress(len(meta["pending"]), progress),
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", "cd is deprecated", FutureWarning)  # jobflow's
            # One run_locally per part, in flow order (prediction chunk, then its defects one
            # by one): run_locally on the whole flow would go generation by generation
            # (every relaxation first, every document last), storing nothing until the end.
            for part in flow.jobs:
                run_locally(
                    part,
                    store=jobstore,
                    create_folders=True,
                    root_dir=work_dir,
                    log=False,
                    ensure_success=False,
                    allow_external_references=True,
                )
                if not keep_job_outputs and not _is_prediction(part):
                    _forget(jobstore, part)
        remove_empty_job_dirs(work_dir)
        if log_path.is_file() and log_path.stat().st_size > logged_before:
            failures = str(log_path)
    not_stored = _not_stored(store, meta["pending"])
    summary = validation_summary(store, meta["keys"], build=build_summaries)
    summary.update(
        n_requested=len(meta["keys"]),
        n_run=len(meta["pending"]),
        not_stored=not_stored,
        n_skipped=meta["n_skipped"],
        checkpoint=meta["checkpoint"],
        checkpoint_sha256=meta["checkpoint_sha256"],
        engine=spec.engine,
        engine_settings=spec.relax_engine().settings,
        settings_hash=spec.relax_engine().settings_hash,
        store=spec.store,
        failures_log=failures,
        wall_time_s=time.perf_counter() - start,
    )
    return summary


def _not_stored(store: Store, pending: Sequence[str]) -> list[str]:
    """Keys that ran but have no document (their store job crashed); logged as errors."""
    from definet_flows.stores import finished_keys, writing

    with writing(store):
        missing = sorted(set(pending) - finished_keys(store, {"key": {"$in": list(pending)}}))
    for key in missing:
        logger.error("defect %s ran but no document was stored; it will run again", key)
    return missing


def _is_prediction(part: Flow) -> bool:
    return len(part.jobs) == 1 and isinstance(part.jobs[0].function.__self__, DefiNetPredictMaker)


def _forget(jobstore: Any, flow: Flow) -> None:
    """Drop the job outputs of a finished defect from the in-memory JobStore."""
    uuids = list(flow.job_uuids)
    jobstore.remove_docs({"uuid": {"$in": uuids}})
    for extra in jobstore.additional_stores.values():
        extra.remove_docs({"job_uuid": {"$in": uuids}})


def flatten_summary(figures: dict[str, Any]) -> dict[str, Any]:
    """Flat figures from :func:`definet_flows.builders.summarize` output."""
    out: dict[str, Any] = {
        "n_defects": figures["count"],
        "n_failed": figures["n_failed"],
        "n_out_of_distribution": figures["n_out_of_distribution"],
    }
    for start in ("unrelaxed", "predicted"):
        steps = figures[f"steps_{start}"]
        out[f"median_steps_{start}"] = steps.median
        out[f"mean_steps_{start}"] = steps.mean
        out[f"p90_steps_{start}"] = steps.p90
    for start in ("unrelaxed", "predicted"):
        out[f"share_converged_{start}"] = figures[f"share_converged_{start}"]
        out[f"share_within_3_steps_{start}"] = figures[f"share_within_3_{start}"]
    for key in (
        "share_same_minimum",
        "mean_energy_difference",
        "mean_definet_mae",
        "mean_baseline_mae",
    ):
        out[key] = figures[key]
    return out


def validation_summary(store: Store, keys: Sequence[str], build: bool = True) -> dict[str, Any]:
    """Summary of the stored ValidationDocs with these ``keys``.

    Runs the maggma :class:`~definet_flows.builders.ValidationSummaryBuilder` over the whole
    results store first (``build``; the ``summaries`` collection next to it), then computes
    the same figures for ``keys`` only, overall, per host and per defect type.

    Returns
    -------
    dict
        ``n_defects`` (documents found), ``n_failed``, ``median/mean/p90_steps_<start>``,
        ``share_converged_<start>``, ``share_within_3_steps_<start>`` (converged within 3
        ionic steps), ``share_same_minimum``, ``mean_energy_difference``,
        ``mean_definet_mae``, ``mean_baseline_mae``, ``per_host`` and ``per_defect_type``
        (the same figures per group), ``n_summaries_built``.
    """
    from collections import defaultdict

    from definet_flows.builders import SUMMARY_FIELDS, group_values, summarize
    from definet_flows.results import build_summaries
    from definet_flows.stores import summary_store

    n_built = build_summaries(store, summary_store(store)) if build else 0
    wanted = set(keys)
    with store:
        docs = [d for d in store.query(properties=SUMMARY_FIELDS) if d["key"] in wanted]
    out = flatten_summary(summarize(docs))
    for group_by, name in (("host", "per_host"), ("defect_type", "per_defect_type")):
        groups: dict[str, list] = defaultdict(list)
        for d in docs:
            for g in group_values(d, group_by):
                groups[g].append(d)
        out[name] = {
            g: flatten_summary(summarize(members)) for g, members in sorted(groups.items())
        }
    out["n_summaries_built"] = n_built
    return out
