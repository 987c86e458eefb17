"""Cluster submission: the `jf flow submit` plugin (jobflow-remote) and FireWorks.

What runs against what: jobflow-remote 1.0.1's real CLI (``jobflow_remote.cli.jf.app``,
in-process through typer's CliRunner), its ConfigManager reading a project YAML from a
temporary projects folder, ``submit_flow``, ``JobController`` and (slow test) its
``Runner`` with a local worker whose shell scheduler executes each job in a subprocess
(``jf execution run``). The queue and output stores are MongoStores on an in-process fake
MongoDB (mongomock clients sharing one server, see ``fake_mongo.py``): no MongoDB server can
be installed here. FireWorks 2.1.4's LaunchPad runs on the same fake server.

The flows are real validation flows: a Cu host (CIF), 2x2x2 supercell, two defects, EMT
relaxations, a tiny randomly initialised DefiNet checkpoint.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.flows.fake_mongo import FakeMongoServers

runner = CliRunner()
MONGO = {"type": "MongoStore", "host": "localhost", "port": 27017, "database": "jfr"}


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny randomly initialised DefiNet checkpoint."""
    import torch

    from definet.checkpoint import model_payload, save_atomic
    from definet.data.graphs import GraphSettings
    from definet.nn import DefiNet, DefiNetConfig

    torch.manual_seed(0)
    model = DefiNet(DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    payload = model_payload(model, GraphSettings(4.0, 12), metadata={"elements": [29]})
    return save_atomic(payload, path)


@pytest.fixture(scope="module")
def cu_cif(tmp_path_factory) -> Path:
    from pymatgen.core import Lattice, Structure

    path = tmp_path_factory.mktemp("host") / "Cu.cif"
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).to(
        filename=str(path)
    )
    return path


def write_spec(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields))
    return path


@pytest.fixture
def spec_file(tmp_path, checkpoint, cu_cif) -> Path:
    """Cu vacancies (2 defects), EMT, embedded results store in tmp_path/results."""
    return write_spec(
        tmp_path / "validate-cu.yaml",
        host=str(cu_cif),
        supercell="2x2x2",
        n=2,
        engine="forcefield",
        engine_settings={"force_field": "EMT", "fmax": 0.1, "max_steps": 50},
        checkpoint=str(checkpoint),
        store=str(tmp_path / "results"),
    )


@pytest.fixture
def servers(monkeypatch) -> FakeMongoServers:
    return FakeMongoServers(down={"down.example"}).install(monkeypatch)


@pytest.fixture
def jfr(tmp_path, monkeypatch, servers):
    """``make(name, workers, queue_host, reset)`` writes a jobflow-remote project YAML."""
    import jobflow_remote

    folder = tmp_path / "jfremote"
    folder.mkdir()
    monkeypatch.setattr(jobflow_remote.SETTINGS, "projects_folder", str(folder))
    monkeypatch.setattr(jobflow_remote.SETTINGS, "project", None)

    def make(name="definet", workers=("local",), queue_host="localhost", reset=True) -> str:
        mongo = MONGO | {"host": queue_host, "database": f"jfr_{name}"}
        project = {
            "name": name,
            "base_dir": str(tmp_path / name),
            "runner": {
                "delay_checkout": 1,
                "delay_check_run_status": 1,
                "delay_advance_status": 1,
                "delta_retry": [1, 2, 5],
            },
            "workers": {
                w: {
                    "type": "local",
                    "scheduler_type": "shell",
                    "work_dir": str(tmp_path / name / "work"),
                    # as on a cluster: the worker's shell must find this environment's `jf`
                    "pre_run": f"export PATH={Path(sys.executable).parent}:$PATH",
                    "resources": {},
                }
                for w in workers
            },
            "exec_config": {"cp2k": {"export": {"OMP_NUM_THREADS": "1"}}},
            "queue": {"store": mongo | {"collection_name": "jobs"}},
            "jobstore": {
                "docs_store": mongo | {"collection_name": "outputs"},
                "additional_stores": {
                    "data": {
                        "type": "GridFSStore",
                        **{k: mongo[k] for k in ("host", "port", "database")},
                        "collection_name": "outputs_data",
                    }
                },
            },
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(project))
        if reset:
            from jobflow_remote.jobs.jobcontroller import JobController

            assert JobController.from_project_name(name).reset()
        return name

    return make


def jf(*args: str):
    """Run the real ``jf`` CLI in-process (plugins loaded as by the console script)."""
    import jobflow_remote.cli  # noqa: F401  (registers sub-apps and loads plugins)
    from jobflow_remote.cli.jf import app

    return runner.invoke(app, [str(a) for a in args])


def queue_counts(servers: FakeMongoServers, project: str = "definet") -> tuple[int, int]:
    db = servers.database(f"jfr_{project}")
    return db.flows.count_documents({}), db.jobs.count_documents({})


def one_error_line(output: str) -> str:
    """The error of a failed command: one line, after jf's "selected project" banner only."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    first = next(i for i, line in enumerate(lines) if line.lower().startswith("error:"))
    banner = " ".join(lines[:first])
    assert not banner or banner.startswith("The selected project is"), output
    assert len(lines) == first + 1, output
    assert "Traceback" not in output
    return lines[first]


# -- the plugin -------------------------------------------------------------------------------


def test_entry_point_and_jf_plugin_list():
    eps = importlib.metadata.entry_points().select(group="jobflow_remote.plugins")
    assert {ep.name: ep.value for ep in eps}.get("definet") == "definet_flows.jf_plugin"
    res = jf("plugin", "list")
    assert res.exit_code == 0, res.output
    assert "definet: definet_flows.jf_plugin" in res.output
    assert "Errors discovering plugins" not in res.output
    from jobflow_remote.cli.flow import app_flow

    from definet_flows.jf_plugin import setup_jf_plugin

    setup_jf_plugin()  # `jf plugin list` calls it again: still one command
    assert [c.name for c in app_flow.registered_commands].count("submit") == 1
    res = jf("flow", "submit", "--help")
    assert res.exit_code == 0
    for option in ("--spec", "--worker", "--exec-config", "--resources", "--priority", "--host"):
        assert option in res.output


def test_jf_flow_submit_inserts_the_flow(jfr, servers, spec_file):
    from jobflow_remote.jobs.jobcontroller import JobController

    from definet_flows.spec import ValidationSpec
    from definet_flows.validation import build_validation_flow

    jfr("definet", workers=("local", "cluster"))
    res = jf(
        "-p", "definet", "flow", "submit", "--spec", spec_file, "--worker", "cluster",
        "--exec-config", "cp2k", "--resources", '{"nodes": 1, "time": "00:30:00"}',
        "--priority", "7",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "submitted flow" in res.output and "2 defects to validate" in res.output

    expected = build_validation_flow(ValidationSpec.from_yaml(spec_file))
    names = sorted(job.name for job, _ in expected.iterflow())
    jc = JobController.from_project_name("definet")
    assert jc.count_flows() == 1
    infos = jc.get_jobs_info()
    assert sorted(j.name for j in infos) == names
    assert {j.worker for j in infos} == {"cluster"}
    assert {j.priority for j in infos} == {7}
    assert {j.state.value for j in infos} == {"READY", "WAITING"}
    doc = jc.jobs.find_one({"job.name": {"$regex": "^definet predict"}})
    assert doc["resources"] == {"nodes": 1, "time": "00:30:00"}
    assert doc["exec_config"] == "cp2k"
    assert doc["state"] == "READY"
    flow_doc = jc.flows.find_one({})
    assert flow_doc["name"] == expected.name
    # the flow keeps the keys of the defects it will store (for `definet results`)
    assert len(jc.get_flows_info()[0].job_ids) == len(names)

    listed = jf("-p", "definet", "job", "list")
    assert listed.exit_code == 0, listed.output
    assert "READY" in listed.output and "WAITING" in listed.output  # names wrap at 80 cols


def test_submit_api_returns_db_ids_and_dry_run_inserts_nothing(jfr, servers, spec_file):
    from definet_flows.submit import load_spec, submit_jobflow_remote

    jfr("definet")
    spec = load_spec(spec_file)
    flow, ids = submit_jobflow_remote(spec, dry_run=True)
    assert ids == [] and flow.metadata["pending"]
    assert queue_counts(servers) == (0, 0)
    flow, ids = submit_jobflow_remote(spec)  # the only worker is taken
    assert len(ids) == len(list(flow.iterflow())) == queue_counts(servers)[1]
    assert queue_counts(servers)[0] == 1


def test_options_instead_of_a_spec(jfr, servers, checkpoint, cu_cif, tmp_path):
    jfr("definet")
    res = jf(
        "flow", "submit", "--host", cu_cif, "--supercell", "2x2x2", "--n", "1",
        "--engine", "forcefield", "--force-field", "EMT", "--max-steps", "20",
        "--checkpoint", checkpoint, "--store", tmp_path / "res",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "1 defects to validate" in res.output
    flows, jobs = queue_counts(servers)
    assert flows == 1 and jobs > 3


BAD = {
    "no worker among several": (
        {"workers": ("a", "b")},
        [],
        "workers a, b: choose one with --worker",
    ),
    "unknown worker": ({}, ["--worker", "nope"], "worker 'nope' not in project 'definet'"),
    "unknown project": ({}, ["--project", "nope"], "project 'nope' not found"),
    "unknown exec config": ({}, ["--exec-config", "nope"], "exec config 'nope' not in project"),
    "bad resources": ({}, ["--resources", "[1, 2]"], "--resources: expected a mapping"),
    "queue database down": (
        {"queue_host": "down.example", "reset": False},
        [],
        "cannot reach the queue database of project 'definet' (down.example:27017)",
    ),
    "queue not initialised": ({"reset": False}, [], "run `jf -p definet admin reset` once"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_configuration_is_one_line_and_inserts_nothing(jfr, servers, spec_file, case):
    project, args, message = BAD[case]
    jfr("definet", **project)
    res = jf("flow", "submit", "--spec", spec_file, *args)
    assert res.exit_code == 1
    assert message in one_error_line(res.output)
    assert queue_counts(servers) == (0, 0)


def test_no_project_at_all(jfr, servers, spec_file):
    res = jf("flow", "submit", "--spec", spec_file)
    assert res.exit_code == 1
    assert "no jobflow-remote project in" in one_error_line(res.output)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": "Unobtainium"}, "field 'host'"),
        ({"engine": "gaussian"}, "unknown relaxation engine 'gaussian'"),
        ({"engine_settings": {"fmaxx": 1}}, "field 'engine_settings'"),
        ({"colour": "red"}, "field 'colour': unknown field"),
        ({"checkpoint": "/no/such.pt"}, "DefiNet checkpoint not found"),
    ],
)
def test_invalid_spec_is_one_line_and_inserts_nothing(
    jfr, servers, spec_file, tmp_path, fields, message
):
    jfr("definet")
    spec = yaml.safe_load(spec_file.read_text()) | fields
    bad = write_spec(tmp_path / "bad.yaml", **spec)
    res = jf("flow", "submit", "--spec", bad)
    assert res.exit_code == 1
    line = one_error_line(res.output)
    assert message in line, line
    assert queue_counts(servers) == (0, 0)


def test_missing_spec_file_and_no_host(jfr, servers, tmp_path):
    jfr("definet")
    res = jf("flow", "submit", "--spec", tmp_path / "missing.yaml")
    assert "validation spec not found" in one_error_line(res.output)
    res = jf("flow", "submit", "--n", "3")
    assert "give a spec file (--spec) or at least --host" in one_error_line(res.output)
    assert queue_counts(servers) == (0, 0)


def test_unreachable_results_store_inserts_nothing(jfr, servers, spec_file, tmp_path):
    jfr("definet")
    config = tmp_path / "store.yaml"
    config.write_text("type: MongoURIStore\nuri: mongodb://u:secret@down.example:27017/definet\n")
    res = jf("flow", "submit", "--spec", spec_file, "--store", config)
    assert res.exit_code == 1
    line = one_error_line(res.output)
    assert "cannot reach the results store (down.example:27017/definet)" in line
    assert "secret" not in res.output
    assert queue_counts(servers) == (0, 0)


@pytest.mark.slow
def test_runner_executes_the_submitted_flow(jfr, servers, spec_file, tmp_path):
    """jobflow-remote's Runner runs every job (subprocesses) and the docs reach the store.

    About 90-100 s on 2 cores: each of the 11 jobs starts a `jf execution run` process.
    """
    from jobflow_remote.jobs.jobcontroller import JobController
    from jobflow_remote.jobs.runner import Runner

    from definet_flows.results import query_docs
    from definet_flows.stores import default_store

    jfr("definet")
    res = jf("flow", "submit", "--spec", spec_file)
    assert res.exit_code == 0, res.output
    Runner(project_name="definet").run_all_jobs(max_seconds=400)
    jc = JobController.from_project_name("definet")
    states = {j.name: j.state.value for j in jc.get_jobs_info()}
    assert set(states.values()) == {"COMPLETED"}, states
    store = default_store(tmp_path / "results")
    store.connect()
    rows = query_docs(store)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}
    assert all(r["steps_unrelaxed"] >= 1 and r["steps_predicted"] >= 1 for r in rows)
    # a second submission finds both defects stored and submits nothing
    res = jf("flow", "submit", "--spec", spec_file)
    assert res.exit_code == 0, res.output
    assert "nothing to submit" in res.output
    assert jc.count_flows() == 1


# -- FireWorks --------------------------------------------------------------------------------


@pytest.fixture
def launchpad_file(tmp_path, servers) -> Path:
    """A my_launchpad.yaml on the fake server, reset as `lpad reset` would."""
    from fireworks import LaunchPad

    path = tmp_path / "my_launchpad.yaml"
    path.write_text("host: localhost\nport: 27017\nname: fireworks_test\nlogdir: null\n")
    LaunchPad.from_file(str(path)).reset("", require_password=False)
    return path


def fireworks_count(servers) -> int:
    return servers.database("fireworks_test").fireworks.count_documents({})


def test_fireworks_submit_adds_the_workflow(launchpad_file, servers, spec_file):
    from fireworks import LaunchPad

    from definet_flows.cli import app
    from definet_flows.spec import ValidationSpec
    from definet_flows.validation import build_validation_flow

    res = runner.invoke(
        app,
        ["fireworks", "submit", "--spec", str(spec_file), "--launchpad", str(launchpad_file),
         "--fworker", "cluster", "--priority", "3"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "added workflow with" in res.output
    lp = LaunchPad.from_file(str(launchpad_file))
    expected = build_validation_flow(ValidationSpec.from_yaml(spec_file))
    fw_ids = lp.get_fw_ids()
    assert len(fw_ids) == len(list(expected.iterflow()))
    wf = lp.get_wf_by_fw_id(fw_ids[0])
    assert wf.name == expected.name
    assert sorted(fw.name for fw in wf.fws) == sorted(j.name for j, _ in expected.iterflow())
    for fw in wf.fws:
        assert fw.spec["_fworker"] == "cluster" and fw.spec["_priority"] == 3
        assert [t.__class__.__name__ for t in fw.tasks] == ["JobFiretask"]
    ready = {lp.get_fw_by_id(i).name for i in lp.get_fw_ids({"state": "READY"})}
    assert any(name.startswith("definet predict") for name in ready)
    assert not any(name.startswith("validation doc") for name in ready)  # wait for parents


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--launchpad", "missing.yaml"], "LaunchPad file not found"),
        (["--host", "Unobtainium"], "field 'host'"),
    ],
)
def test_fireworks_bad_input_adds_nothing(launchpad_file, servers, spec_file, args, message):
    from definet_flows.cli import app

    base = ["fireworks", "submit", "--spec", str(spec_file), "--launchpad", str(launchpad_file)]
    res = runner.invoke(app, [*base, *args])
    assert res.exit_code == 1
    assert message in one_error_line(res.output)
    assert fireworks_count(servers) == 0


def test_fireworks_unreachable_launchpad(spec_file, tmp_path, monkeypatch):
    """Real pymongo (no fake server) against a closed port: one line after the timeout."""
    from definet_flows.cli import app

    monkeypatch.setenv("DEFINET_DB_TIMEOUT_MS", "300")
    path = tmp_path / "lp.yaml"
    path.write_text("host: 127.0.0.1\nport: 9\nname: fireworks_test\n")
    res = runner.invoke(
        app, ["fireworks", "submit", "--spec", str(spec_file), "--launchpad", str(path)]
    )
    assert res.exit_code == 1
    assert "cannot reach the LaunchPad database (127.0.0.1)" in one_error_line(res.output)


def test_fireworks_rapidfire_runs_the_workflow(launchpad_file, servers, spec_file, tmp_path):
    """FireWorks' rocket launcher runs every firework in-process; docs reach the store.

    About 5 s: jobs run in this process, outputs go to jobflow's default JOB_STORE.
    """
    import os

    from fireworks import FWorker, LaunchPad
    from fireworks.core.rocket_launcher import rapidfire

    from definet_flows.results import query_docs
    from definet_flows.stores import default_store
    from definet_flows.submit import load_spec, submit_fireworks

    _, ids = submit_fireworks(load_spec(spec_file), launchpad_file=launchpad_file)
    lp = LaunchPad.from_file(str(launchpad_file))
    launches = tmp_path / "launches"
    launches.mkdir()
    cwd = os.getcwd()
    try:
        rapidfire(lp, FWorker(), m_dir=str(launches), nlaunches=0, sleep_time=0)
    finally:
        os.chdir(cwd)
    states = {lp.get_fw_by_id(i).state for i in ids.values()}
    assert states == {"COMPLETED"}
    store = default_store(tmp_path / "results")
    store.connect()
    assert {r["status"] for r in query_docs(store)} == {"completed"}
    assert store.count() == 2


# -- the example configs in workflows/ --------------------------------------------------------

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def test_example_jobflow_remote_project_is_valid():
    from jobflow_remote.config.base import Project

    project = Project.model_validate(
        yaml.safe_load((WORKFLOWS / "jobflow-remote" / "definet.yaml").read_text())
    )
    assert project.name == "definet"
    slurm = project.workers["slurm"]
    assert slurm.type == "remote" and slurm.scheduler_type == "slurm"
    assert {"cp2k", "vasp"} <= set(project.exec_config)
    assert project.get_queue_store().collection_name == "jobs"
    jobstore = project.get_jobstore()
    assert type(jobstore.additional_stores["data"]).__name__ == "GridFSStore"


def test_example_jobflow_yaml_and_store_config():
    from jobflow import JobStore

    from definet_flows.stores import store_from_config

    spec = yaml.safe_load((WORKFLOWS / "jobflow.yaml").read_text())["JOB_STORE"]
    jobstore = JobStore.from_dict_spec(spec)
    assert jobstore.docs_store.database == "definet"
    assert type(jobstore.additional_stores["data"]).__name__ == "GridFSStore"
    store = store_from_config(WORKFLOWS / "store-mongodb.yaml")
    assert type(store).__name__ == "MongoStore" and store.collection_name == "validation"


def test_example_fireworks_files_load(servers):
    from fireworks import FWorker, LaunchPad
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter
    from monty.serialization import loadfn

    lp = LaunchPad.from_dict(loadfn(WORKFLOWS / "fireworks" / "my_launchpad.yaml"))
    assert lp.uri_mode and lp.name == "fireworks"
    assert FWorker.from_file(str(WORKFLOWS / "fireworks" / "my_fworker.yaml")).name == "cluster"
    adapter = CommonAdapter.from_file(str(WORKFLOWS / "fireworks" / "my_qadapter.yaml"))
    script = adapter.get_script_str("/scratch/x")
    assert "#SBATCH --ntasks=16" in script and "rlaunch" in script
    assert "JOBFLOW_CONFIG_FILE" in script


def test_cluster_spec_keeps_shipped_weight_names_and_makes_files_absolute(checkpoint, tmp_path):
    from definet_flows.spec import ValidationSpec
    from definet_flows.submit import _for_cluster

    shipped = _for_cluster(
        ValidationSpec.from_dict({"host": "MoS2", "checkpoint": "definet-chgnet"})
    )
    assert shipped.checkpoint == "definet-chgnet"  # the cluster's definet resolves the name
    relative = os.path.relpath(checkpoint)
    own = _for_cluster(ValidationSpec.from_dict({"host": "MoS2", "checkpoint": relative}))
    assert own.checkpoint == str(Path(checkpoint).resolve())
    assert Path(own.store).is_absolute()
    assert own.run_options == {}  # force fields need no command


def test_cluster_dft_jobs_take_the_command_of_their_node():
    from definet_flows.spec import ValidationSpec
    from definet_flows.submit import _for_cluster

    cp2k = _for_cluster(ValidationSpec.from_dict({"host": "MoS2", "engine": "cp2k"}))
    assert cp2k.run_options == {"command_from_settings": True}
    assert "cp2k_cmd" not in cp2k.relax_engine().make_maker(check=False).run_cp2k_kwargs
    named = ValidationSpec.from_dict(
        {"host": "MoS2", "engine": "cp2k", "run_options": {"cp2k_cmd": "srun cp2k.psmp"}}
    )
    maker = _for_cluster(named).relax_engine().make_maker(check=False)
    assert maker.run_cp2k_kwargs["cp2k_cmd"] == "srun cp2k.psmp"
    with pytest.raises(ValueError, match="field 'run_options': unknown run option"):
        ValidationSpec.from_dict({"host": "MoS2", "engine": "cp2k", "run_options": {"x": 1}})
