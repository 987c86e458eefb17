"""The validation flow end to end: defects -> DefiNet -> two relaxations -> stored docs.

EMT on fcc Cu vacancies (fast) and CHGNet on 3x3 MoS2 (capped at 12 steps) run through jobflow's
run_locally with a tiny DefiNet trained here for a few seconds (the shipped weights may not
exist yet); the trained model moves atoms a little, so the two starts differ.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from jobflow import Flow, run_locally
from pymatgen.core import Structure
from typer.testing import CliRunner

from definet_flows.cli import app
from definet_flows.defects import generate_defect_entries
from definet_flows.predict import DefiNetPredictMaker, displacements
from definet_flows.schemas import coordinate_mae, make_key, rmsd
from definet_flows.spec import ValidationSpec
from definet_flows.stores import default_store, finished_keys, make_jobstore
from definet_flows.validation import ValidationFlowMaker, build_validation_flow, run_validation

SUMMARY_KEYS = {
    "n_defects",
    "n_failed",
    "median_steps_unrelaxed",
    "median_steps_predicted",
    "mean_steps_unrelaxed",
    "mean_steps_predicted",
    "p90_steps_unrelaxed",
    "p90_steps_predicted",
    "share_within_3_steps_unrelaxed",
    "share_within_3_steps_predicted",
    "share_converged_unrelaxed",
    "share_converged_predicted",
    "per_host",
    "per_defect_type",
}
# the tiny model never saw Cu: its predictions are (rightly) flagged out of distribution
pytestmark = pytest.mark.filterwarnings("ignore:.*prediction is out of distribution")
EMT_SETTINGS = {"force_field": "EMT", "fmax": 0.05, "max_steps": 200}


# -- fixtures ---------------------------------------------------------------------------------


def cu_spec(cu_cif: Path, checkpoint: Path, store: Path, **overrides) -> ValidationSpec:
    """Cu 2x2x2 (32 sites): the single vacancy + di-vacancy draws, EMT relaxations."""
    fields = {
        "host": str(cu_cif),
        "supercell": 2,
        "n": 4,
        "defect_counts": {"v_Cu": 2},
        "engine": "forcefield",
        "engine_settings": EMT_SETTINGS,
        "checkpoint": str(checkpoint),
        "store": str(store),
    }
    return ValidationSpec(**(fields | overrides))


def stored(store_dir: Path) -> list[dict]:
    store = default_store(store_dir)
    store.connect()
    try:
        return list(store.query())
    finally:
        store.close()


def n_job_outputs(store_dir: Path) -> int:
    jobstore = make_jobstore(default_store(store_dir))
    jobstore.connect()
    try:
        return jobstore.count()
    finally:
        jobstore.close()


def spec_entries(spec: ValidationSpec) -> list:
    """The defects a spec validates (what the flow generates)."""
    return ValidationFlowMaker.from_spec(spec).defect_entries(spec.host)


def as_structure(d) -> Structure:
    return d if isinstance(d, Structure) else Structure.from_dict(d)


class CountingEMT:
    """Factory of EMT subclasses that count calls and crash on chosen start positions."""

    def __init__(self, poison: list[np.ndarray] | None = None, on_start=None) -> None:
        from ase.calculators.emt import EMT

        self.starts: list[np.ndarray] = []
        outer = self

        class Patched(EMT):
            first = True

            def calculate(self, atoms=None, *args, **kwargs):
                if self.first and atoms is not None:
                    self.first = False
                    outer.starts.append(atoms.positions.copy())
                    if on_start is not None:
                        on_start()
                    for bad in poison or []:
                        if bad.shape == atoms.positions.shape and np.allclose(
                            bad, atoms.positions, atol=1e-6
                        ):
                            raise RuntimeError("forced crash of this relaxation")
                return super().calculate(atoms, *args, **kwargs)

        self.cls = Patched


@pytest.fixture
def emt_counter(monkeypatch):
    """``install(poison=None)`` patches ase's EMT (atomate2 imports it by name at run time)."""
    import ase.calculators.emt

    def install(poison=None, on_start=None) -> CountingEMT:
        counter = CountingEMT(poison, on_start)
        monkeypatch.setattr(ase.calculators.emt, "EMT", counter.cls)
        return counter

    return install


# -- DefiNet prediction job ---------------------------------------------------------------------


def test_predict_maker_one_job_for_a_batch(tiny_checkpoint, tmp_path):
    from definet.checkpoint import file_sha256

    entries = generate_defect_entries(
        "MoS2", supercell="3x3", defect_counts={"v_S": 2}, n_configs=2, seed=1
    )
    assert any(2 in e.structure.site_properties["defect_marker"] for e in entries)
    job = DefiNetPredictMaker(checkpoint=str(tiny_checkpoint), batch_size=3).make(entries)
    jobstore = make_jobstore(directory=tmp_path / "store")
    responses = run_locally(job, store=jobstore, ensure_success=True, log=False)
    out = responses[job.uuid][1].output

    assert out.checkpoint_sha256 == file_sha256(tiny_checkpoint)
    assert Path(out.checkpoint) == tiny_checkpoint.resolve()
    assert out.n_structures == len(entries) == len(out.structures)
    assert out.defect_ids == [e.defect_id for e in entries]
    assert out.wall_time_s >= out.predict_time_s > 0
    assert out.out_of_distribution == [None] * len(entries)  # trained on MoS2 layers
    for entry, pred, dmax, dmean in zip(
        entries, out.structures, out.max_displacement, out.mean_displacement, strict=True
    ):
        start = entry.defect_structure  # vacancy nodes dropped, real atoms in this order
        assert [s.species_string for s in pred] == [s.species_string for s in start]
        assert np.allclose(pred.lattice.matrix, start.lattice.matrix)
        moved = displacements(entry.structure, pred)
        assert dmax == pytest.approx(moved.max()) and dmean == pytest.approx(moved.mean())
        assert 0 < dmean <= dmax < 1.0  # the tiny model moves atoms, a little
    # the structures went to the data store, not into the output document
    jobstore.connect()
    raw = jobstore.docs_store.query_one({"uuid": job.uuid})
    assert "blob_uuid" in json.dumps(raw["output"]["structures"], default=str)


# -- spec ---------------------------------------------------------------------------------------


def test_spec_errors_name_field_and_valid_values(tmp_path):
    with pytest.raises(ValueError, match="valid hosts: MoS2"):
        ValidationSpec(host="Unobtainium")
    with pytest.raises(ValueError, match="valid engines: forcefield, vasp, cp2k"):
        ValidationSpec(host="MoS2", engine="lammps")
    with pytest.raises(ValueError, match="(?s)engine_settings.*valid settings"):
        ValidationSpec(host="MoS2", engine_settings={"fmx": 0.1})
    with pytest.raises(ValueError, match="(?s)dopants.*'Xx'"):
        ValidationSpec(host="MoS2", dopants=["W", "Xx"])
    with pytest.raises(ValueError, match="supercell"):
        ValidationSpec(host="MoS2", supercell="4x4x2")  # 2D: c is never repeated
    # elements named as host sites must be the host's, checked before any defect is made
    for fields, message in [
        ({"dopants": {"Ti": ["W"]}}, "field 'dopants': Ti not in host MoS2 (elements Mo, S)"),
        ({"vacancies": ["Ga"]}, "field 'vacancies': Ga not in host MoS2"),
        ({"defect_counts": {"v_X": 1}}, "field 'defect_counts': v_X: host supercell has no X"),
        ({"defect_density": {"Qq_S": 0.1}}, "field 'defect_density': Dopant 'Qq' is not"),
    ]:
        spec_file = tmp_path / "elements.yaml"
        spec_file.write_text(yaml.safe_dump({"host": "MoS2", **fields}))
        with pytest.raises(ValueError, match=re.escape(f"{spec_file}: {message}")):
            ValidationSpec.from_yaml(spec_file)
    bad = tmp_path / "bad.yaml"
    bad.write_text("host: MoS2\nn: 0\nengin: cp2k\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*'n'.*'engin': unknown field"):
        ValidationSpec.from_yaml(bad)
    bad.write_text("host: [MoS2\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: not valid YAML"):
        ValidationSpec.from_yaml(bad)
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        ValidationSpec.from_yaml(tmp_path / "nowhere.yaml")


def test_shipped_mos2_spec():
    path = Path(__file__).parents[2] / "workflows" / "validate-mos2.yaml"
    spec = ValidationSpec.from_yaml(path)
    assert (spec.host, spec.supercell, spec.n, spec.engine) == ("MoS2", "4x4", 20, "forcefield")
    assert spec.relax_engine().settings["force_field"] == "CHGNet"
    entries = spec_entries(spec)
    assert len(entries) == 20 and len({e.defect_id for e in entries}) == 20
    assert {e.n_sites for e in entries} <= set(range(40, 49))


def test_flow_shape_and_serialisation(cu_cif, tiny_checkpoint, tmp_path):
    """One prediction job, then per defect two relaxations by one engine and a doc job."""
    from jobflow import OnMissing
    from monty.json import jsanitize

    spec = cu_spec(cu_cif, tiny_checkpoint, tmp_path / "store", n=3)
    flow = build_validation_flow(spec)
    (predict,), *per_defect = [part.jobs for part in flow.jobs]
    assert predict.name.startswith("definet predict") and len(per_defect) == 3
    engine = spec.relax_engine()
    for relax_u, relax_p, doc in per_defect:
        makers = [r.jobs[0].function.__self__.as_dict() for r in (relax_u, relax_p)]
        assert "from unrelaxed" in makers[0].pop("name") and "from predicted" in makers[1].pop(
            "name"
        )
        assert makers[0] == makers[1]  # identical engine settings
        assert makers[0]["relax_kwargs"]["fmax"] == 0.05 and makers[0]["steps"] == 200
        assert isinstance(relax_u.jobs[0].function_args[0], Structure)
        assert relax_p.jobs[0].function_args[0].uuid == predict.uuid  # the prediction
        assert doc.config.on_missing_references == OnMissing.NONE
    assert flow.metadata["keys"] == flow.metadata["pending"]
    entries = predict.function_args[0]
    assert flow.metadata["keys"] == [
        make_key(
            e.defect_id, "forcefield", engine.settings_hash, flow.metadata["checkpoint_sha256"]
        )
        for e in entries
    ]
    # the whole flow survives JSON (jobflow-remote / FireWorks submission)
    again = Flow.from_dict(json.loads(json.dumps(jsanitize(flow.as_dict(), strict=True))))
    assert [j.uuid for j in again.jobs] == [j.uuid for j in flow.jobs]
    assert again.jobs[0].jobs[0].function_args[0][0].defect_id == entries[0].defect_id


# -- the whole flow with EMT ----------------------------------------------------------------------


def test_emt_flow_stores_docs_and_rerun_adds_nothing(
    cu_cif, tiny_checkpoint, tmp_path, emt_counter
):
    store_dir = tmp_path / "store"
    docs_at_start: list[int] = []
    counter = emt_counter(on_start=lambda: docs_at_start.append(len(stored(store_dir))))
    spec = cu_spec(cu_cif, tiny_checkpoint, store_dir)
    summary = run_validation(spec, progress=False)
    # defect by defect: each document is stored before the next defect's relaxations start
    assert docs_at_start == [k // 2 for k in range(2 * spec.n)]

    docs = stored(store_dir)
    assert len(docs) == summary["n_defects"] == spec.n == summary["n_run"]
    assert len(counter.starts) == 2 * spec.n  # two relaxations per defect
    engine = spec.relax_engine()
    for d in docs:
        assert d["status"] == "completed" and d["error"] is None
        assert d["key"] == make_key(
            d["defect_id"], "forcefield", engine.settings_hash, summary["checkpoint_sha256"]
        )
        assert d["engine_settings"] == engine.settings
        assert d["host"] == "Cu" and d["defect_types"] == ["vacancy"]
        assert d["n_sites"] == 32 - d["n_defects"]
        for start in ("from_unrelaxed", "from_predicted"):
            run = d[start]
            assert run["converged"] and run["max_force"] <= 0.05
            assert 1 <= run["n_ionic_steps"] <= 201 and run["wall_time_s"] > 0
        assert d["steps_saved"] == (
            d["from_unrelaxed"]["n_ionic_steps"] - d["from_predicted"]["n_ionic_steps"]
        )
        unrelaxed, predicted = (
            as_structure(d["unrelaxed_structure"]),
            as_structure(d["predicted_structure"]),
        )
        final_u, final_p = (
            as_structure(d["final_from_unrelaxed"]),
            as_structure(d["final_from_predicted"]),
        )
        assert len(predicted) == len(final_u) == d["n_sites"]
        assert d["definet_mae"] == pytest.approx(coordinate_mae(predicted, final_u))
        assert d["baseline_mae"] == pytest.approx(coordinate_mae(unrelaxed, final_u))
        assert d["definet_mae"] != pytest.approx(d["baseline_mae"], abs=1e-6)  # starts differ
        assert d["rmsd"] == pytest.approx(rmsd(final_u, final_p))
        assert d["energy_difference"] == pytest.approx(
            d["from_predicted"]["energy"] - d["from_unrelaxed"]["energy"]
        )
        assert d["same_minimum"] == (
            d["rmsd"] <= d["rmsd_tol"] and abs(d["energy_difference"]) <= d["energy_tol"]
        )
        assert d["prediction_time_s"] > 0
        # the checkpoint was trained on MoS2 layers: each document says what it never saw
        assert d["out_of_distribution"] == "element(s) ['Cu']; host Cu bulk"
        # the engine started once from each structure
        for start in (unrelaxed.cart_coords[: d["n_sites"]], predicted.cart_coords):
            same = [
                s.shape == start.shape and np.allclose(start, s, atol=1e-6) for s in counter.starts
            ]
            assert sum(same) == 1
    # the summary is the figures of these documents
    steps_u = [d["from_unrelaxed"]["n_ionic_steps"] for d in docs]
    steps_p = [d["from_predicted"]["n_ionic_steps"] for d in docs]
    assert summary["median_steps_unrelaxed"] == pytest.approx(np.median(steps_u))
    assert summary["mean_steps_predicted"] == pytest.approx(np.mean(steps_p))
    assert summary["per_host"]["Cu"]["n_defects"] == spec.n
    assert summary["n_failed"] == 0
    assert summary["n_out_of_distribution"] == spec.n

    # rerun: no job, no relaxation, no write
    outputs = n_job_outputs(store_dir)
    stamps = {d["key"]: d["last_updated"] for d in docs}
    again = run_validation(spec, progress=False)
    assert again["n_run"] == 0 and again["n_skipped"] == spec.n
    assert len(counter.starts) == 2 * spec.n
    assert n_job_outputs(store_dir) == outputs
    assert {d["key"]: d["last_updated"] for d in stored(store_dir)} == stamps
    assert again["median_steps_unrelaxed"] == summary["median_steps_unrelaxed"]
    assert len(build_validation_flow(spec).jobs) == 0
    # one more defect requested: only it runs
    more = run_validation(cu_spec(cu_cif, tiny_checkpoint, store_dir, n=5), progress=False)
    assert more["n_run"] == 1 and more["n_defects"] == 5 and len(stored(store_dir)) == 5
    assert len(counter.starts) == 2 * 5


def test_crashed_relaxation_is_stored_as_failed(cu_cif, tiny_checkpoint, tmp_path, emt_counter):
    store_dir = tmp_path / "store"
    spec = cu_spec(cu_cif, tiny_checkpoint, store_dir)
    entries = spec_entries(spec)
    victim = entries[1]
    emt_counter(poison=[victim.defect_structure.cart_coords])
    summary = run_validation(spec, progress=False)

    docs = {d["defect_id"]: d for d in stored(store_dir)}
    assert set(docs) == {e.defect_id for e in entries}  # nothing dropped
    bad = docs[victim.defect_id]
    assert bad["status"] == "failed" and "unrelaxed start failed" in bad["error"]
    assert not bad["from_unrelaxed"]["converged"] and bad["from_unrelaxed"]["n_ionic_steps"] is None
    assert bad["from_predicted"]["converged"]  # the other start of that defect still ran
    assert not bad["same_minimum"] and bad["energy_difference"] is None
    others = [d for k, d in docs.items() if k != victim.defect_id]
    assert all(d["status"] == "completed" for d in others)
    assert summary["n_failed"] == 1 and summary["n_defects"] == spec.n
    assert summary["share_converged_unrelaxed"] == pytest.approx((spec.n - 1) / spec.n)
    # the reason is kept: the crashed job's traceback, in the work folder's failures.log
    log = summary["failures_log"]
    assert log == str(store_dir / "jobs" / "failures.log")
    assert "failed with exception" in Path(log).read_text()
    assert "Traceback" in Path(log).read_text()

    # the report counts it and leaves it out of the plots
    from definet_flows.report import write_report

    text = write_report(default_store(store_dir), tmp_path / "report").read_text()
    assert (
        f"(a relaxation or the prediction gave no result; plots leave them out): 1 of {spec.n}"
        in text
    )

    # a plain rerun leaves the failed defect alone; --retry-failed reruns it alone
    counter = emt_counter()
    assert run_validation(spec, progress=False)["n_run"] == 0 and not counter.starts
    fixed = run_validation(spec, progress=False, retry_failed=True)
    assert fixed["n_run"] == 1 and len(counter.starts) == 2
    assert fixed["n_failed"] == 0 and len(stored(store_dir)) == spec.n
    assert fixed["failures_log"] is None  # nothing failed in this run


def test_a_crashed_store_job_is_reported_not_hidden(cu_cif, tiny_checkpoint, tmp_path, monkeypatch):
    import definet_flows.validation as validation

    spec = cu_spec(cu_cif, tiny_checkpoint, tmp_path / "store", n=2)
    real = validation._validation_doc
    victim = spec_entries(spec)[1].defect_id

    def crash_on_victim(entry, *args, **kwargs):
        if entry.defect_id == victim:
            raise RuntimeError("store job crashed")
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(validation, "_validation_doc", crash_on_victim)
    summary = run_validation(spec, progress=False)
    assert [k.split(":")[0] for k in summary["not_stored"]] == [victim]
    assert {d["defect_id"] for d in stored(tmp_path / "store")} == {spec_entries(spec)[0].defect_id}
    result = CliRunner().invoke(
        app, ["validate", "--spec", str(_spec_file(spec, tmp_path)), "--quiet"]
    )
    assert result.exit_code == 1 and "not stored" in result.output
    monkeypatch.setattr(validation, "_validation_doc", real)
    again = run_validation(spec, progress=False)  # the missing defect runs again
    assert again["n_run"] == 1 and again["not_stored"] == []


def _spec_file(spec: ValidationSpec, tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(exclude_none=True)))
    return path


def test_step_cap_is_stored_as_not_converged(cu_cif, tiny_checkpoint, tmp_path):
    store_dir = tmp_path / "store"
    spec = cu_spec(
        cu_cif,
        tiny_checkpoint,
        store_dir,
        n=2,
        engine_settings=EMT_SETTINGS | {"fmax": 0.002, "max_steps": 2},
    )
    summary = run_validation(spec, progress=False)
    docs = stored(store_dir)
    assert len(docs) == 2
    for d in docs:
        assert d["status"] == "completed"
        for start in ("from_unrelaxed", "from_predicted"):
            assert not d[start]["converged"]
            assert d[start]["n_ionic_steps"] == 3  # the start + two capped optimizer steps
            assert d[start]["max_force"] > 0.002
    assert summary["share_converged_unrelaxed"] == 0 == summary["share_converged_predicted"]
    assert summary["median_steps_unrelaxed"] == 3


def test_prediction_failure_keeps_every_defect(cu_cif, tmp_path, monkeypatch):
    """A broken prediction job: the unrelaxed starts still run and every defect is stored."""
    import definet.predict
    from definet.checkpoint import model_payload, save_atomic
    from definet.data.graphs import GraphSettings
    from definet.nn import DefiNet, DefiNetConfig

    ckpt = save_atomic(
        model_payload(DefiNet(DefiNetConfig(hidden=8, num_layers=1, num_rbf=4)), GraphSettings()),
        tmp_path / "w.pt",
    )

    def boom(*args, **kwargs):
        raise RuntimeError("GPU on fire")

    monkeypatch.setattr(definet.predict.Predictor, "predict_checked", boom)
    store_dir = tmp_path / "store"
    summary = run_validation(cu_spec(cu_cif, ckpt, store_dir, n=2), progress=False)
    docs = stored(store_dir)
    assert len(docs) == 2 == summary["n_failed"]
    for d in docs:
        assert "DefiNet prediction failed" in d["error"]
        assert d["from_unrelaxed"]["converged"] and d["from_predicted"]["n_ionic_steps"] is None
        assert d["baseline_mae"] is not None and d["definet_mae"] is None


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_validate_and_report(cu_cif, tiny_checkpoint, tmp_path):
    store_dir, out = tmp_path / "store", tmp_path / "summary.json"
    args = [
        "validate",
        "--host",
        str(cu_cif),
        "--supercell",
        "2",
        "--n",
        "3",
        "--defect-count",
        "v_Cu=2",
        "--engine",
        "forcefield",
        "--force-field",
        "EMT",
        "--fmax",
        "0.05",
        "--max-steps",
        "100",
        "--checkpoint",
        str(tiny_checkpoint),
        "--store",
        str(store_dir),
        "--json",
        str(out),
        "--quiet",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert set(summary) >= SUMMARY_KEYS
    docs = stored(store_dir)
    assert summary["n_defects"] == len(docs) == 3
    assert summary["engine_settings"]["max_steps"] == 100
    for start in ("unrelaxed", "predicted"):
        steps = [d[f"from_{start}"]["n_ionic_steps"] for d in docs]
        assert summary[f"median_steps_{start}"] == pytest.approx(np.median(steps))
        assert 1 <= summary[f"mean_steps_{start}"] <= 101
        assert summary[f"p90_steps_{start}"] <= max(steps)
        assert 0 <= summary[f"share_within_3_steps_{start}"] <= 1
    assert "DefiNet validation: 3 defects" in result.output and "median steps" in result.output

    report_dir = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["report", "--store", str(store_dir), "--out", str(report_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "3 ValidationDocs" in (report_dir / "report.md").read_text()


def test_cli_errors_are_one_line(cu_cif, tiny_checkpoint, tmp_path, monkeypatch):
    from definet_flows import engines

    runner = CliRunner()
    result = runner.invoke(app, ["validate", "--host", "MoS2", "--engine", "lammps"])
    assert result.exit_code == 1
    assert "valid engines: forcefield, vasp, cp2k" in result.output
    assert "Traceback" not in result.output

    real = engines.find_spec
    monkeypatch.setattr(engines, "find_spec", lambda m: None if m == "chgnet" else real(m))
    store_dir = tmp_path / "store"
    result = runner.invoke(
        app,
        [
            "validate",
            "--host",
            "MoS2",
            "--checkpoint",
            str(tiny_checkpoint),
            "--store",
            str(store_dir),
        ],
    )
    assert result.exit_code == 1 and "pip install chgnet" in result.output
    assert not stored(store_dir)  # failed before any work

    spec = tmp_path / "s.yaml"
    spec.write_text("host: MoS2\nsupercel: 4x4\n")
    result = runner.invoke(app, ["validate", "--spec", str(spec)])
    assert result.exit_code == 1 and "s.yaml" in result.output and "supercel" in result.output


# -- CHGNet on a 2D host (about 11 s on 2 busy cores: 6 short relaxations) -------------------------


def test_chgnet_flow_on_mos2(tiny_checkpoint, tmp_path):
    store_dir = tmp_path / "store"
    spec = ValidationSpec(
        host="MoS2",
        supercell="3x3",
        n=3,
        defect_counts={"v_S": 2},
        engine="forcefield",
        engine_settings={"force_field": "CHGNet", "fmax": 0.1, "max_steps": 12},
        checkpoint=str(tiny_checkpoint),
        store=str(store_dir),
    )
    summary = run_validation(spec, progress=False)
    docs = stored(store_dir)
    assert len(docs) == summary["n_defects"] == 3
    store = default_store(store_dir)
    store.connect()
    assert finished_keys(store) == {d["key"] for d in docs}
    store.close()
    assert {tuple(d["defect_names"]) for d in docs} >= {("v_Mo",), ("v_S",)}
    for d in docs:
        assert d["status"] == "completed" and d["engine_settings"]["force_field"] == "CHGNet"
        assert d["n_sites"] == 27 - d["n_defects"]
        for start in ("from_unrelaxed", "from_predicted"):
            run = d[start]
            assert 1 <= run["n_ionic_steps"] <= 13
            assert run["converged"] == (run["max_force"] <= 0.1)
            assert np.isfinite(run["energy"]) and run["energy_per_atom"] < 0
    assert set(summary["per_defect_type"]) == {"vacancy"}
    assert run_validation(spec, progress=False)["n_run"] == 0
