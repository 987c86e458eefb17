"""Training data from the pipeline: generate relaxed pairs, export them, train on them.

Real components: atomate2's force-field relax maker (EMT on fcc Cu, a bulk host read from a
CIF), jobflow, the embedded MontyStore, the official dataset reader and the Trainer.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from jobflow import run_locally
from pymatgen.core import Structure
from typer.testing import CliRunner

from definet_flows.cli import app
from definet_flows.export import assign_split, export_pairs, pairs_from_store, pairs_from_task_docs
from definet_flows.generate import GenerationPlan, RelaxedPairDoc, pairs_store, run_generation
from definet_flows.stores import open_store

EMT = {"force_field": "EMT", "fmax": 0.05, "max_steps": 200, "optimizer": "BFGS"}


def write_plan(path: Path, cu_cif: Path, store: Path, n: int = 5) -> Path:
    plan = {
        "engine": "forcefield",
        "engine_settings": EMT,
        "store": str(store),
        "sets": [
            {"host": str(cu_cif), "supercell": 2, "n": n, "defect_counts": {"v_Cu": 2}, "seed": 3},
        ],
    }
    path.write_text(yaml.safe_dump(plan))
    return path


def same_sites(cart: np.ndarray, structure: Structure, tol: float = 1e-4) -> bool:
    """Same positions, atom by atom, up to lattice translations (CIFs wrap into the cell)."""
    diff = structure.lattice.get_fractional_coords(cart) - structure.frac_coords
    diff -= np.round(diff)
    return bool(np.abs(structure.lattice.get_cartesian_coords(diff)).max() < tol)


def stored_pairs(store_dir: Path) -> list[dict]:
    store = pairs_store(open_store(store_dir))
    store.connect()
    try:
        return list(store.query())
    finally:
        store.close()


@pytest.fixture(scope="module")
def generated(cu_cif, tmp_path_factory) -> tuple[GenerationPlan, Path, dict]:
    """Five Cu vacancy configurations relaxed with EMT by two worker processes."""
    root = tmp_path_factory.mktemp("generate")
    plan = GenerationPlan.from_yaml(write_plan(root / "plan.yaml", cu_cif, root / "store"))
    counts = run_generation(plan, workers=2, progress=False)
    return plan, root / "store", counts


def test_generation_stores_every_pair(generated):
    plan, store_dir, counts = generated
    entries = plan.entries()
    assert counts["n_requested"] == len(entries) == 5
    assert counts["n_completed"] == 5 and counts["n_failed"] == 0
    docs = {d["defect_id"]: RelaxedPairDoc(**d) for d in stored_pairs(store_dir)}
    assert set(docs) == {e.defect_id for e in entries}
    for entry in entries:
        doc = docs[entry.defect_id]
        assert doc.relaxation.converged and doc.relaxation.n_ionic_steps >= 1
        relaxed, start = doc.relaxed_structure, entry.defect_structure
        assert [s.symbol for s in relaxed.species] == [s.symbol for s in start.species]
        assert np.allclose(relaxed.lattice.matrix, start.lattice.matrix)  # fixed cell
        moved = np.linalg.norm(relaxed.cart_coords - start.cart_coords, axis=1).max()
        assert 1e-3 < moved < 0.5  # EMT pulls the neighbours of the vacancies


def test_generation_resumes_where_it_stopped(generated):
    plan, store_dir, _ = generated
    again = run_generation(plan, workers=1, progress=False)
    assert again["n_run"] == 0 and again["n_skipped"] == 5
    # lose one document, as if the run had been killed before it was stored
    store = pairs_store(open_store(store_dir))
    store.connect()
    victim = next(iter(store.query(properties=["key"])))["key"]
    store.remove_docs({"key": victim})
    store.close()
    resumed = run_generation(plan, workers=1, progress=False)
    assert resumed["n_run"] == 1 and resumed["n_completed"] == 5
    assert victim in {d["key"] for d in stored_pairs(store_dir)}


def test_plan_errors_name_the_set_and_field(cu_cif, tmp_path):
    path = write_plan(tmp_path / "plan.yaml", cu_cif, tmp_path / "store")
    raw = yaml.safe_load(path.read_text())
    raw["sets"][0]["supercel"] = 2
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"plan.yaml sets\[0\].*supercel.*unknown field"):
        GenerationPlan.from_yaml(path)
    raw["sets"][0].pop("supercel")
    raw["sets"][0]["engine"] = "vasp"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"sets\[0\] sets \['engine'\]"):
        GenerationPlan.from_yaml(path)


def test_split_is_stable_and_follows_fractions():
    fractions = {"train": 0.6, "val": 0.1, "test": 0.3}
    ids = [f"defect-{i}" for i in range(3000)]
    splits = [assign_split(i, fractions) for i in ids]
    assert splits == [assign_split(i, fractions) for i in ids]
    share = {s: splits.count(s) / len(ids) for s in fractions}
    assert share == pytest.approx(fractions, abs=0.03)
    assert splits != [assign_split(i, fractions, seed=1) for i in ids]
    with pytest.raises(ValueError, match="fractions"):
        assign_split("x", {"train": -1.0, "test": 0.5})


def test_export_is_read_by_the_dataset_reader(generated, tmp_path):
    from definet.data.dataset import load_split
    from definet.data.graphs import GraphSettings
    from definet.data.markers import VACANCY

    _, store_dir, _ = generated
    store = pairs_store(open_store(store_dir))
    store.connect()
    pairs = list(pairs_from_store(store))
    store.close()
    out = tmp_path / "dataset"
    fractions = {"train": 0.5, "test": 0.5}
    counts = export_pairs(pairs[:3], out, fractions)  # a first export ...
    counts = export_pairs(pairs, out, fractions)  # ... then everything: nothing moves
    host = pairs[0].host
    assert (out / f"{host}.cif").is_file()
    assert sum(counts[host].values()) == 5
    for split in ("train", "test"):
        rows = list(csv.reader((out / host / f"{split}.csv").open()))
        assert rows[0] == ["atoms_id"]
        assert {r[0] for r in rows[1:]} == {
            p.atoms_id for p in pairs if assign_split(p.atoms_id, fractions) == split
        }
    by_id = {p.atoms_id: p for p in pairs}
    graphs = []
    for split in ("train", "test"):
        if counts[host][split]:
            graphs += load_split(out, split, GraphSettings(), progress=False, cache_dir=tmp_path)
    assert len(graphs) == 5
    # exporting again with other fractions moves no listed pair (a test pair never turns up
    # in train)
    before = {s: (out / host / f"{s}.csv").read_text() for s in ("train", "test")}
    export_pairs(pairs, out, {"train": 1.0})
    assert {s: (out / host / f"{s}.csv").read_text() for s in ("train", "test")} == before
    for g in graphs:
        pair = by_id[g.atoms_id]
        real = g.marker != VACANCY
        assert int((~real).sum()) == 32 - len(pair.unrelaxed)  # vacancies come back as nodes
        assert same_sites(g.pos[real].numpy(), pair.unrelaxed)
        assert same_sites(g.y[real].numpy(), pair.relaxed)


def test_export_refuses_a_pair_whose_cell_changed(generated, tmp_path):
    _, store_dir, _ = generated
    store = pairs_store(open_store(store_dir))
    store.connect()
    pair = next(iter(pairs_from_store(store)))
    store.close()
    strained = pair.relaxed.copy()
    strained.scale_lattice(pair.relaxed.volume * 1.05)
    bad = type(pair)(pair.atoms_id, pair.host, pair.unit_cell, pair.unrelaxed, strained)
    with pytest.raises(ValueError, match=f"pair {pair.atoms_id}: the cell changed"):
        export_pairs([bad], tmp_path / "dataset")


def test_pairs_from_atomate2_task_documents(cu_cif, tmp_path):
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker

    from definet.data.dataset import load_split
    from definet.data.graphs import GraphSettings

    bulk = Structure.from_file(cu_cif) * (2, 2, 2)
    bulk.remove_sites([0])
    maker = ForceFieldRelaxMaker(
        force_field_name={"@module": "ase.calculators.emt", "@callable": "EMT"},
        relax_cell=False,
        relax_kwargs={"fmax": 0.05},
    )
    job = maker.make(bulk)
    responses = run_locally(job, create_folders=True, root_dir=tmp_path, ensure_success=True)
    doc = responses[job.uuid][1].output
    pairs = list(pairs_from_task_docs([doc], cu_cif))
    assert len(pairs) == 1 and pairs[0].host == "Cu" and len(pairs[0].atoms_id) == 16
    export_pairs(pairs, tmp_path / "dataset", {"train": 1.0})
    (graph,) = load_split(
        tmp_path / "dataset", "train", GraphSettings(), progress=False, cache_dir=tmp_path
    )
    assert int((graph.marker == 2).sum()) == 1
    with pytest.raises(ValueError, match="task document 0: expected input.structure"):
        list(pairs_from_task_docs([{"output": {}}], cu_cif))


def test_cli_export_then_finetune(generated, tiny_checkpoint, tmp_path):
    """`definet export` writes a dataset that `definet train --init-from` fine-tunes on."""
    import torch

    from definet.checkpoint import load_model

    _, store_dir, _ = generated
    out = tmp_path / "dataset"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "export",
            "--store",
            str(store_dir),
            "--out",
            str(out),
            "--train",
            "0.6",
            "--val",
            "0.4",
            "--test",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    start, graph, _ = load_model(tiny_checkpoint)
    config = {
        "data_root": str(out),
        "out_dir": str(tmp_path / "ft"),
        "model": start.config.as_dict(),
        "graph": graph.as_dict(),
        "batch_size": 2,
        "epochs": 1,
        "threads": 1,
        "cache_dir": str(tmp_path / "cache"),
    }
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(tmp_path / "ft.yaml"),
            "--init-from",
            str(tiny_checkpoint),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    tuned, _, tuned_meta = load_model(tmp_path / "ft" / "best.pt")
    diffs = [
        (a - b).abs().max().item()
        for a, b in zip(tuned.state_dict().values(), start.state_dict().values(), strict=True)
    ]
    assert 0 < max(diffs) < 1.0  # trained a little, from the tiny model's weights
    assert 29 in tuned_meta["elements"]  # Cu is now a known element
    assert all(torch.isfinite(p).all() for p in tuned.parameters())


def test_cli_export_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["export", "--store", str(tmp_path / "nope"), "--out", "x"])
    assert result.exit_code == 1
    assert "results store not found" in result.output


def test_validation_reuses_stored_unrelaxed_relaxations(generated, tiny_checkpoint, tmp_path):
    from definet_flows.spec import ValidationSpec
    from definet_flows.validation import build_validation_flow, run_validation

    plan, store_dir, _ = generated
    docs = [RelaxedPairDoc(**d) for d in stored_pairs(store_dir)]
    entries = [d.entry for d in docs[:2]]
    known = {d.defect_id: d.relax_result() for d in docs[:2]}
    spec = ValidationSpec(
        host=plan.sets[0]["host"],
        engine="forcefield",
        engine_settings=EMT,
        checkpoint=str(tiny_checkpoint),
        store=str(tmp_path / "results"),
    )
    flow = build_validation_flow(spec, entries, known)
    names = [j.name for part in flow.jobs for j in _jobs(part)]
    assert not any("from unrelaxed" in n for n in names)
    assert sum("from predicted" in n for n in names) >= 2
    summary = run_validation(spec, progress=False, entries=entries, unrelaxed_results=known)
    assert summary["n_defects"] == 2 and summary["n_failed"] == 0
    results = open_store(tmp_path / "results")
    results.connect()
    stored = {d["defect_id"]: d for d in results.query()}
    results.close()
    for d in docs[:2]:
        assert stored[d.defect_id]["from_unrelaxed"]["n_ionic_steps"] == d.relaxation.n_ionic_steps
        assert stored[d.defect_id]["from_unrelaxed"]["energy"] == pytest.approx(d.relaxation.energy)
    other = dict(EMT, fmax=0.01)
    with pytest.raises(ValueError, match="other engine settings"):
        build_validation_flow(spec.model_copy(update={"engine_settings": other}), entries, known)


def _jobs(flow_or_job):
    jobs = getattr(flow_or_job, "jobs", None)
    if jobs is None:
        return [flow_or_job]
    return [j for sub in jobs for j in _jobs(sub)]


def test_export_leaves_out_relaxations_that_hit_the_cap(generated):
    from maggma.stores import MemoryStore

    _, store_dir, _ = generated
    docs = stored_pairs(store_dir)
    docs[0]["relaxation"]["converged"] = False
    memory = MemoryStore("pairs", key="key")
    memory.connect()
    memory.update([{k: v for k, v in d.items() if k != "_id"} for d in docs])
    kept = {p.atoms_id for p in pairs_from_store(memory)}
    assert len(kept) == len(docs) - 1 and docs[0]["defect_id"] not in kept
    assert len(list(pairs_from_store(memory, converged_only=False))) == len(docs)


def test_export_removes_a_rigid_drift_of_the_relaxed_structure(generated, tmp_path):
    from definet.data.dataset import read_structure

    _, store_dir, _ = generated
    store = pairs_store(open_store(store_dir))
    store.connect()
    pair = next(iter(pairs_from_store(store)))
    store.close()
    drifted = pair.relaxed.copy()
    drifted.translate_sites(range(len(drifted)), [1.3, -0.7, 2.1], frac_coords=False)
    moved = type(pair)(pair.atoms_id, pair.host, pair.unit_cell, pair.unrelaxed, drifted)
    export_pairs([moved], tmp_path / "dataset", {"train": 1.0})
    written = read_structure(
        tmp_path / "dataset" / pair.host / "CIF" / f"{pair.atoms_id}_relaxed.cif"
    )
    assert same_sites(written.cart_coords, pair.relaxed, tol=1e-4)


def test_export_again_into_the_same_root_with_a_rotated_cell(tmp_path):
    """CIFs keep lengths and angles, not the orientation: a re-export must still match."""
    from definet_flows.export import RelaxedPair
    from definet_flows.hosts import load_host

    unit = load_host("Si").structure  # fcc primitive: CIF reading rotates it
    supercell = unit * (2, 2, 2)
    pair = RelaxedPair("si-0", "Si", unit, supercell, supercell)
    export_pairs([pair], tmp_path, {"train": 1.0})
    counts = export_pairs([pair], tmp_path, {"train": 1.0})
    assert counts == {"Si": {"train": 1}}
    other = RelaxedPair("si-1", "Si", unit * (1, 1, 2), supercell, supercell)
    with pytest.raises(ValueError, match="holds another unit cell of Si"):
        export_pairs([other], tmp_path, {"train": 1.0})


def test_cli_generate_runs_and_resumes(cu_cif, tmp_path):
    plan = write_plan(tmp_path / "plan.yaml", cu_cif, tmp_path / "store", n=2)
    runner = CliRunner()
    args = ["generate", "--plan", str(plan), "--quiet", "--json", str(tmp_path / "g.json")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 relaxed now" in first.output and "2 completed, 0 failed" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 relaxed now, 2 already stored" in again.output
    missing = runner.invoke(app, ["generate", "--plan", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "generation plan not found" in missing.output


def test_export_names_a_defect_relaxed_with_two_engine_settings(generated, tmp_path):
    import shutil

    _, store_dir, _ = generated
    store_copy = tmp_path / "store"
    shutil.copytree(store_dir, store_copy)
    store = pairs_store(open_store(store_copy))
    store.connect()
    doc = next(iter(store.query({"status": "completed"})))
    other = dict(doc, settings_hash="f" * 64, key=f"{doc['defect_id']}:forcefield:{'f' * 64}")
    other.pop("_id", None)
    store.update([other], key="key")
    store.close()
    runner = CliRunner()
    args = ["export", "--store", str(store_copy), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"defect {doc['defect_id']} was relaxed with two engine settings" in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.csv"))
    # choosing one of them exports every defect once
    result = runner.invoke(app, [*args, "--settings-hash", doc["settings_hash"][:8]])
    assert result.exit_code == 0, result.output
    ids = [
        row[0]
        for split in ("train", "val", "test")
        if (tmp_path / "out" / doc["host"] / f"{split}.csv").is_file()
        for row in csv.reader((tmp_path / "out" / doc["host"] / f"{split}.csv").open())
    ]
    ids = [i for i in ids if i != "atoms_id"]
    original = pairs_store(open_store(store_dir))
    original.connect()
    expected = sorted(p.atoms_id for p in pairs_from_store(original))
    original.close()
    assert sorted(ids) == expected and len(expected) == len(set(expected))
