"""Submit the validation flow to a cluster: jobflow-remote or FireWorks.

Everything that can be checked is checked before anything is written: the spec, the
jobflow-remote project, worker, execution config and job store (or the FireWorks LaunchPad
file), and that the databases answer. Only then is the flow built and handed to
``jobflow_remote.submit_flow`` or ``LaunchPad.add_wf``; a failed check raises
:class:`SubmissionError` with a one-line message and leaves every database untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fireworks import LaunchPad, Workflow
    from jobflow import Flow
    from jobflow_remote.config.base import Project
    from maggma.core import Store

    from definet_flows.spec import ValidationSpec

__all__ = [
    "JobflowRemoteTarget",
    "SubmissionError",
    "build_flow",
    "check_jobflow_remote",
    "db_timeout_ms",
    "describe",
    "load_launchpad",
    "load_spec",
    "parse_mapping",
    "ping_store",
    "submit_fireworks",
    "submit_jobflow_remote",
    "to_workflow",
]

#: default time (ms) to wait for a database before calling it unreachable
DEFAULT_DB_TIMEOUT_MS = 5000


class SubmissionError(RuntimeError):
    """A check before submission failed; nothing was submitted."""


def db_timeout_ms() -> int:
    """Server-selection timeout for the reachability checks (``DEFINET_DB_TIMEOUT_MS``)."""
    return int(os.environ.get("DEFINET_DB_TIMEOUT_MS", DEFAULT_DB_TIMEOUT_MS))


# -- spec and flow ---------------------------------------------------------------------------


#: Spec fields that say the same thing two ways: an option given replaces the file's other one.
_ALTERNATIVES = {
    "supercell": "min_length",
    "min_length": "supercell",
    "defect_counts": "defect_density",
    "defect_density": "defect_counts",
}


def load_spec(spec_file: str | Path | None = None, **options: Any) -> ValidationSpec:
    """Return the validation spec from a YAML file and/or ``definet validate`` options.

    Options that are None are left out; the others override the file's fields, as in
    ``definet validate``: ``engine_settings`` are merged into the file's, and an option
    replaces the file's alternative to it (``supercell`` / ``min_length``, ``defect_counts``
    / ``defect_density``).

    Raises
    ------
    SubmissionError
        Missing file or invalid spec (one line naming the file and every bad field).
    """
    from definet_flows.spec import ValidationSpec

    given = {k: v for k, v in options.items() if v is not None}
    try:
        if spec_file is None:
            if "host" not in given:
                raise ValueError("give a spec file (--spec) or at least --host")
            return ValidationSpec.from_dict(given, source="options")
        base = ValidationSpec.from_yaml(spec_file).model_dump(exclude_unset=True)
        if not given:
            return ValidationSpec.from_dict(base, source=str(spec_file))
        if "engine_settings" in given:
            given["engine_settings"] = {
                **base.get("engine_settings", {}),
                **given["engine_settings"],
            }
        for option, replaced in _ALTERNATIVES.items():  # an option replaces its alternative
            if option in given:
                base.pop(replaced, None)
        return ValidationSpec.from_dict(base | given, source=f"{spec_file} + options")
    except (ValueError, FileNotFoundError) as exc:
        raise SubmissionError(f"invalid validation spec: {exc}") from None


def _for_cluster(spec: ValidationSpec) -> ValidationSpec:
    """The spec with absolute paths (jobs run in their own folders, maybe elsewhere) and, for
    the DFT engines, the run command of the machine each job runs on."""
    update = {"store": str(Path(spec.store).expanduser().resolve())}
    if spec.checkpoint is not None and Path(spec.checkpoint).expanduser().is_file():
        update["checkpoint"] = str(Path(spec.checkpoint).expanduser().resolve())
    # else a shipped name (``definet-chgnet``), which the cluster's definet resolves itself
    if Path(spec.host).expanduser().is_file():
        update["host"] = str(Path(spec.host).expanduser().resolve())
    if spec.engine in ("vasp", "cp2k"):  # the compute node's command, not this machine's
        update["run_options"] = {"command_from_settings": True, **spec.run_options}
    return spec.model_copy(update=update)


def ping_store(store: Store, what: str, timeout_ms: int | None = None) -> None:
    """Connect ``store`` and, for MongoDB, ping the server with a short timeout.

    Embedded stores (MontyStore, MemoryStore, JSONStore) only need to open.

    Raises
    ------
    SubmissionError
        If the store cannot be opened or MongoDB does not answer.
    """
    from maggma.stores import MemoryStore, MongoStore

    timeout_ms = timeout_ms or db_timeout_ms()
    is_mongo = isinstance(store, MongoStore) and not isinstance(store, MemoryStore)
    if is_mongo:
        store.mongoclient_kwargs = {
            "serverSelectionTimeoutMS": timeout_ms,
            **(store.mongoclient_kwargs or {}),
        }
    try:
        store.connect()
        if is_mongo:
            store._collection.database.command("ping")
    except Exception as exc:  # pymongo, montydb, OS errors: all mean "cannot use it"
        raise SubmissionError(f"cannot reach the {what} ({_where(store)}): {_short(exc)}") from None
    finally:
        with contextlib.suppress(Exception):  # closing a store that never opened
            store.close()


def _short(exc: Exception) -> str:
    """The gist of a (pymongo) error: first line, without the topology dump."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(" (configured timeouts")[0].split(", Timeout:")[0][:300]


def _where(store: Store) -> str:
    for attr in ("uri", "host", "database_path", "paths"):
        value = getattr(store, attr, None)
        if value:
            if attr == "uri":  # hide credentials
                value = value.split("@")[-1]
            port = getattr(store, "port", None) if attr == "host" else None
            return f"{value}:{port}" if port else str(value)
    return type(store).__name__


def build_flow(spec: ValidationSpec, check_engine: bool = True) -> Flow:
    """Build the validation flow of ``spec`` for a cluster (absolute paths).

    The results store is pinged first: the flow builder reads the finished keys from it.

    Parameters
    ----------
    spec
        The validation spec.
    check_engine
        Check that the engine runs on this machine (its binary or package). Turn off when
        submitting from a machine without the engine (e.g. CP2K only on the cluster).

    Raises
    ------
    SubmissionError
        Unreachable results store, or the flow cannot be built.
    """
    from definet_flows.validation import ValidationFlowMaker, build_validation_flow

    spec = _for_cluster(spec)
    ping_store(spec.results_store(), "results store")
    try:
        if check_engine:
            return build_validation_flow(spec)
        maker = ValidationFlowMaker.from_spec(spec)
        maker.relax_maker = dataclasses.replace(maker.relax_maker, check=False)
        return maker.make(spec.host)
    except (ValueError, FileNotFoundError, RuntimeError, ImportError, OSError) as exc:
        raise SubmissionError(f"cannot build the validation flow: {exc}") from None


def parse_mapping(text: str | None, what: str = "resources") -> dict[str, Any] | None:
    """Parse a JSON/YAML mapping given inline or as a file path (None stays None).

    Raises
    ------
    SubmissionError
        If ``text`` is not a mapping.
    """
    if text is None:
        return None
    import yaml

    path = Path(text).expanduser()
    try:
        raw = path.read_text() if path.is_file() else text
        value = yaml.safe_load(raw)  # YAML is a superset of JSON
    except (yaml.YAMLError, OSError) as exc:
        raise SubmissionError(f"--{what}: not JSON/YAML ({exc})") from None
    if not isinstance(value, Mapping):
        raise SubmissionError(
            f'--{what}: expected a mapping such as \'{{"nodes": 1, "time": "02:00:00"}}\''
            f" or a YAML file, got {text!r}"
        )
    return dict(value)


# -- jobflow-remote --------------------------------------------------------------------------


@dataclasses.dataclass
class JobflowRemoteTarget:
    """Where a flow goes in jobflow-remote (all names checked against the project)."""

    project: Project
    worker: str
    exec_config: str | None = None
    jobstore: str | None = None


def check_jobflow_remote(
    worker: str | None = None,
    project: str | None = None,
    exec_config: str | None = None,
    jobstore: str | None = None,
) -> JobflowRemoteTarget:
    """Check the jobflow-remote configuration and that its queue database answers.

    Parameters
    ----------
    worker
        Worker name; may be left out only when the project has exactly one worker.
    project
        Project name (default: jobflow-remote's current project, ``jf -p`` or the only one).
    exec_config
        Name of an execution config of the project.
    jobstore
        Name of one of the project's ``optional_jobstores`` (default: its ``jobstore``).

    Raises
    ------
    SubmissionError
        Unknown project, worker, exec config or job store; unreachable or uninitialised
        queue database.
    """
    from jobflow_remote import SETTINGS
    from jobflow_remote.config.base import ConfigError
    from jobflow_remote.config.manager import ConfigManager

    try:
        cm = ConfigManager()
    except ConfigError as exc:
        raise SubmissionError(f"jobflow-remote configuration: {exc}") from None
    known = sorted(cm.projects_data)
    folder = cm.projects_folder
    if not known:
        raise SubmissionError(
            f"no jobflow-remote project in {folder}; copy and edit "
            "workflows/jobflow-remote/definet.yaml there (see `jf project list -w`)"
        )
    name = project or SETTINGS.project
    if name is None:
        if len(known) > 1:
            raise SubmissionError(
                f"several jobflow-remote projects ({', '.join(known)}): choose one with "
                "--project (or `jf -p NAME`)"
            )
        name = known[0]
    if name not in cm.projects_data:
        raise SubmissionError(
            f"jobflow-remote project {name!r} not found in {folder} "
            f"(known: {', '.join(known)}; parsing errors: `jf project list -w`)"
        )
    proj = cm.projects_data[name].project
    workers = sorted(proj.workers)
    if worker is None:
        if len(workers) != 1:
            raise SubmissionError(
                f"project {name!r} has "
                + (
                    f"workers {', '.join(workers)}: choose one with --worker"
                    if workers
                    else "no worker"
                )
            )
        worker = workers[0]
    elif worker not in proj.workers:
        raise SubmissionError(
            f"worker {worker!r} not in project {name!r} (workers: {', '.join(workers) or 'none'})"
        )
    if exec_config is not None and exec_config not in proj.exec_config:
        raise SubmissionError(
            f"exec config {exec_config!r} not in project {name!r} "
            f"(exec configs: {', '.join(sorted(proj.exec_config)) or 'none'})"
        )
    if jobstore is not None and jobstore not in (proj.optional_jobstores or {}):
        raise SubmissionError(
            f"job store {jobstore!r} not in the optional_jobstores of project {name!r}"
        )
    ping_store(proj.get_queue_store(), f"queue database of project {name!r}")
    _check_queue_initialised(proj)
    return JobflowRemoteTarget(proj, worker, exec_config, jobstore)


def _check_queue_initialised(proj: Project) -> None:
    store = proj.get_queue_store()
    with store:
        aux = store._collection.database[proj.queue.auxiliary_collection]
        ready = aux.find_one({"next_id": {"$exists": True}}) is not None
    if not ready:
        raise SubmissionError(
            f"the queue database of project {proj.name!r} is not initialised: run "
            f"`jf -p {proj.name} admin reset` once"
        )


def submit_jobflow_remote(
    spec: ValidationSpec,
    worker: str | None = None,
    project: str | None = None,
    exec_config: str | None = None,
    resources: dict[str, Any] | None = None,
    priority: int = 0,
    jobstore: str | None = None,
    check_engine: bool = True,
    dry_run: bool = False,
) -> tuple[Flow, list[str]]:
    """Check everything, build the flow and submit it with ``jobflow_remote.submit_flow``.

    Parameters
    ----------
    spec
        The validation spec (its results store must be reachable from the workers: a
        MongoDB store config, or a directory on a shared file system).
    worker, project, exec_config, jobstore
        See :func:`check_jobflow_remote`.
    resources
        Scheduler resources (qtoolkit), e.g. ``{"nodes": 1, "time": "02:00:00"}``.
    priority
        Priority of the jobs in the queue.
    check_engine
        See :func:`build_flow`.
    dry_run
        Check and build, but submit nothing.

    Returns
    -------
    tuple
        The flow and the db_ids of its jobs (empty for a dry run or when every defect is
        already in the results store).

    Raises
    ------
    SubmissionError
        Any failed check; nothing was inserted in the queue.
    """
    from jobflow_remote import submit_flow
    from jobflow_remote.config.base import ConfigError

    target = check_jobflow_remote(worker, project, exec_config, jobstore)
    flow = build_flow(spec, check_engine=check_engine)
    if dry_run or not flow.jobs:
        return flow, []
    try:
        ids = submit_flow(
            flow,
            worker=target.worker,
            project=target.project.name,
            exec_config=target.exec_config,
            resources=resources,
            priority=priority,
            jobstore=target.jobstore,
        )
    except ConfigError as exc:  # raised by submit_flow's own checks, before inserting
        raise SubmissionError(str(exc)) from None
    return flow, ids


# -- FireWorks -------------------------------------------------------------------------------


def load_launchpad(launchpad_file: str | Path | None = None) -> LaunchPad:
    """Return the LaunchPad of a ``my_launchpad.yaml`` (default: FireWorks' own lookup).

    The server must answer a ping within :func:`db_timeout_ms`.

    Raises
    ------
    SubmissionError
        Missing or invalid file, unreachable MongoDB.
    """
    from fireworks import LaunchPad

    if launchpad_file is None:
        from fireworks.fw_config import LAUNCHPAD_LOC

        if not LAUNCHPAD_LOC:
            raise SubmissionError(
                "no LaunchPad file: pass --launchpad my_launchpad.yaml "
                "(or set LAUNCHPAD_LOC in FW_config.yaml)"
            )
        launchpad_file = LAUNCHPAD_LOC
    path = Path(launchpad_file).expanduser()
    if not path.is_file():
        raise SubmissionError(f"LaunchPad file not found: {path}")
    from monty.serialization import loadfn

    try:
        config = loadfn(path)
        if not isinstance(config, dict) or "host" not in config:
            raise ValueError("expected a mapping with at least 'host' (and 'name')")
        kwargs = dict(config.get("mongoclient_kwargs") or {})
        kwargs.setdefault("serverSelectionTimeoutMS", db_timeout_ms())
        config["mongoclient_kwargs"] = kwargs
        lp = LaunchPad.from_dict(config)
    except Exception as exc:
        raise SubmissionError(f"invalid LaunchPad file {path}: {exc}") from None
    try:
        lp.db.command("ping")
    except Exception as exc:
        where = lp.host.split("@")[-1]  # no credentials from a URI
        raise SubmissionError(
            f"cannot reach the LaunchPad database ({where}): {_short(exc)}"
        ) from None
    return lp


def to_workflow(
    flow: Flow, fworker: str | None = None, category: str | None = None, priority: int | None = None
) -> Workflow:
    """Convert ``flow`` with jobflow's ``flow_to_workflow``; pin fireworks if asked.

    The jobs write to the JobStore of the machine that runs them (``JOB_STORE`` of its
    ``jobflow.yaml``), see ``workflows/jobflow.yaml``.
    """
    from jobflow.managers.fireworks import flow_to_workflow

    wf = flow_to_workflow(flow, name=flow.name, metadata=dict(flow.metadata or {}))
    for fw in wf.fws:
        if fworker:
            fw.spec["_fworker"] = fworker
        if category:
            fw.spec["_category"] = category
        if priority is not None:
            fw.spec["_priority"] = priority
    return wf


def submit_fireworks(
    spec: ValidationSpec,
    launchpad_file: str | Path | None = None,
    fworker: str | None = None,
    category: str | None = None,
    priority: int | None = None,
    check_engine: bool = True,
    dry_run: bool = False,
) -> tuple[Flow, dict[int, int]]:
    """Check everything, convert the flow to a Workflow and add it to the LaunchPad.

    Parameters
    ----------
    spec
        The validation spec.
    launchpad_file
        ``my_launchpad.yaml`` (default: FireWorks' ``LAUNCHPAD_LOC``).
    fworker
        Run only on the FireWorker of this name (``_fworker`` in each spec).
    category
        Run only on FireWorkers of this category (``_category``).
    priority
        FireWorks ``_priority`` of the fireworks.
    check_engine, dry_run
        See :func:`submit_jobflow_remote`.

    Returns
    -------
    tuple
        The flow and the LaunchPad's ``{temporary fw_id: fw_id}`` mapping (empty for a dry
        run or when every defect is already stored).
    """
    lp = load_launchpad(launchpad_file)
    flow = build_flow(spec, check_engine=check_engine)
    if not flow.jobs:
        return flow, {}
    wf = to_workflow(flow, fworker=fworker, category=category, priority=priority)
    if dry_run:
        return flow, {}
    return flow, lp.add_wf(wf)


def describe(flow: Flow) -> str:
    """One line on what the flow holds (defects to run, skipped, jobs)."""
    meta = flow.metadata or {}
    n_jobs = len(list(flow.iterflow())) if flow.jobs else 0  # an empty graph cannot compose
    return (
        f"{len(meta.get('pending', []))} defects to validate "
        f"({meta.get('n_skipped', 0)} already stored), {n_jobs} jobs"
    )
