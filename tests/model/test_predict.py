"""Predictor and the predict/evaluate commands."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.util.coord import pbc_diff
from typer.testing import CliRunner

from definet.checkpoint import load_model
from definet.data.dataset import load_split
from definet.data.markers import MARKER_KEY, VACANCY, mark_defects, pristine_supercell
from definet.evaluate import evaluate_checkpoint
from definet.inference import predicted_coordinates
from definet.predict import OutOfDistributionWarning, Predictor
from definet_flows.cli import app

from .conftest import make_defect_pair, mos2_unit_cell, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    meta = {"elements": [16, 42, 74], "hosts": ["MoS2_500"]}
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", metadata=meta)


def marked_pair(seed: int) -> tuple[Structure, Structure]:
    unrelaxed, _ = make_defect_pair(n=3, seed=seed)
    ideal = pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice)
    return unrelaxed, ideal


def test_predict_keeps_order_cell_and_properties(checkpoint: Path) -> None:
    predictor = Predictor(checkpoint)
    pairs = [marked_pair(s) for s in range(3)]
    inputs = []
    for unrelaxed, ideal in pairs:
        s = unrelaxed.copy()
        s.add_site_property("tag", list(range(len(s))))
        inputs.append(mark_defects(s, ideal))
    out = predictor.predict(inputs, batch_size=2)
    for (unrelaxed, _), relaxed in zip(pairs, out, strict=True):
        assert len(relaxed) == len(unrelaxed)  # vacancy node dropped
        assert [s.symbol for s in relaxed.species] == [s.symbol for s in unrelaxed.species]
        assert relaxed.site_properties["tag"] == list(range(len(unrelaxed)))
        assert np.allclose(relaxed.lattice.matrix, unrelaxed.lattice.matrix)
        moved = np.linalg.norm(relaxed.cart_coords - unrelaxed.cart_coords, axis=1)
        assert 0 < moved.max() < 2.0
    # batching does not change answers
    single = predictor.predict(inputs[1:2], batch_size=1)[0]
    assert np.allclose(single.cart_coords, out[1].cart_coords, atol=1e-5)
    assert len(predictor.checkpoint_sha256) == 64


def test_unmarked_inputs_are_marked_against_pristine(checkpoint: Path) -> None:
    unrelaxed, ideal = marked_pair(5)
    predictor = Predictor(checkpoint)
    a = predictor.predict([unrelaxed], pristine=[ideal])[0]
    b = predictor.predict([mark_defects(unrelaxed, ideal)])[0]
    assert np.allclose(a.cart_coords, b.cart_coords)
    with pytest.raises(ValueError, match=MARKER_KEY):
        predictor.predict([unrelaxed])


def test_out_of_distribution_elements(checkpoint: Path) -> None:
    unrelaxed, ideal = marked_pair(1)
    odd = unrelaxed.copy()
    odd.replace(0, "Te")
    with pytest.warns(OutOfDistributionWarning, match="Te"):
        Predictor(checkpoint).predict([odd], pristine=[ideal])
    odd.replace(0, "Og")  # Z = 118 > max_z
    with pytest.raises(ValueError, match="Og.*outside the model's embedding"):
        Predictor(checkpoint).predict([odd], pristine=[ideal])


def bulk_mos2_vacancy() -> tuple[Structure, Structure]:
    """(3x3 MoS2 with an S vacancy, its ideal cell), c = 6 A: no vacuum gap, so bulk."""
    unit = mos2_unit_cell()
    unit = Structure(
        Lattice.hexagonal(unit.lattice.a, 6.0),
        unit.species,
        unit.cart_coords,
        coords_are_cartesian=True,
    )
    ideal = unit * (3, 3, 1)
    defect = ideal.copy()
    defect.remove_sites([1])
    return defect, ideal


def test_out_of_distribution_hosts_and_defect_kinds(tmp_path: Path) -> None:
    meta = {
        "elements": [16, 42, 74],
        "hosts": ["MoS2_500"],
        "host_kinds": ["Mo-S layer"],
        "markers": [0, 1, 2],
    }
    predictor = Predictor(tiny_checkpoint(tmp_path / "kinds.pt", metadata=meta))
    unrelaxed, ideal = marked_pair(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDistributionWarning)
        predictor.predict([unrelaxed], pristine=[ideal])  # what it was trained on: no warning

    bulk, bulk_ideal = bulk_mos2_vacancy()
    with pytest.warns(OutOfDistributionWarning) as record:
        predictor.predict([bulk], pristine=[bulk_ideal])
    message = str(record[0].message)
    assert message.startswith(f"{bulk.composition.formula}: host Mo-S bulk never seen")
    assert "(its hosts: Mo-S layer)" in message
    assert record[0].filename == __file__  # names the caller's line, not the package's

    marked_bulk = mark_defects(bulk, bulk_ideal)
    with pytest.warns(OutOfDistributionWarning):
        relaxed, unseen = predictor.predict_checked([mark_defects(unrelaxed, ideal), marked_bulk])
    assert unseen == [None, "host Mo-S bulk"]
    assert unseen[1] == predictor.out_of_distribution(marked_bulk)
    assert len(relaxed) == 2 and len(relaxed[1]) == len(bulk)

    crowded = unrelaxed.copy()  # an S atom between the layers' sites: an interstitial
    crowded.append("S", crowded.lattice.get_fractional_coords([0.0, 0.0, 0.0]) + [1 / 6, 1 / 6, 0])
    crowded.translate_sites([len(crowded) - 1], [0, 0, unrelaxed.frac_coords[:, 2].mean()])
    with pytest.warns(OutOfDistributionWarning, match=r"defect kind\(s\) \['interstitial'\]"):
        predictor.predict([crowded], pristine=[ideal])


def test_shipped_model_names_a_host_it_never_saw() -> None:
    gan = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.19, 5.19),
        ["Ga", "N"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]],
    ) * (2, 2, 2)
    vacancy = gan.copy()
    vacancy.remove_sites([next(i for i, site in enumerate(gan) if site.specie.symbol == "N")])
    predictor = Predictor()  # Ga and N are in its training data, bulk GaN is not
    with pytest.warns(OutOfDistributionWarning) as record:
        predictor.predict([vacancy], pristine=[gan])
    message = str(record[0].message)
    assert "host Ga-N bulk never seen in training by definet-default.pt" in message
    assert "element" not in message and "Mo-S layer" in message
    unrelaxed, ideal = marked_pair(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDistributionWarning)
        predictor.predict([unrelaxed], pristine=[ideal])


def test_checkpoints_without_host_kinds_know_their_hosts_by_folder_name(checkpoint: Path) -> None:
    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]) * 2
    vacancy = si.copy()
    vacancy.remove_sites([0])
    with pytest.warns(OutOfDistributionWarning, match=r"Si15: element\(s\) \['Si'\]; host Si bulk"):
        Predictor(checkpoint).predict([vacancy], pristine=[si])
    # the folder name MoS2_500 tells the system, not whether it was a layer: no warning
    bulk, bulk_ideal = bulk_mos2_vacancy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDistributionWarning)
        Predictor(checkpoint).predict([bulk], pristine=[bulk_ideal])


def test_cli_predict_writes_cifs(checkpoint: Path, tmp_path: Path) -> None:
    unrelaxed, _ = marked_pair(2)
    src = tmp_path / "defect.cif"
    CifWriter(unrelaxed).write_file(src)
    host = tmp_path / "MoS2.cif"
    CifWriter(mos2_unit_cell()).write_file(host)
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(src),
            "--host-cell",
            str(host),
            "--supercell",
            "3x3x1",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    relaxed = Structure.from_file(tmp_path / "out" / "defect_predicted.cif")
    # the CLI writes what the Python API predicts for the same file, not the input
    _, ideal = marked_pair(2)
    expected = Predictor(checkpoint).predict([Structure.from_file(src)], pristine=[ideal])[0]
    assert [s.species_string for s in relaxed] == [s.species_string for s in expected]
    assert np.abs(pbc_diff(relaxed.frac_coords, expected.frac_coords)).max() < 1e-5
    assert np.abs(pbc_diff(relaxed.frac_coords, unrelaxed.frac_coords)).max() > 1e-4


def test_cli_evaluate_on_a_test_only_root(
    checkpoint: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("DEFINET_CACHE_DIR", str(tmp_path / "cache"))
    host = tiny_dataset / "high_density_defects" / "MoS2_500"
    (host / "train.csv").unlink()
    (host / "val.csv").unlink()
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--data-root",
            str(tiny_dataset),
            "--split",
            "test",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    row = report["hosts"]["MoS2_500"]
    assert row["n"] == 2
    # the figures, by hand: per structure the mean |error| over real atoms' components, then
    # the mean over structures
    model, settings, _ = load_model(checkpoint)
    graphs = load_split(tiny_dataset, "test", settings, cache_dir=tmp_path / "c", progress=False)
    predicted = predicted_coordinates(model, graphs)
    real = [g.marker != VACANCY for g in graphs]
    mae = np.mean(
        [(p - g.y)[r].abs().mean() for p, g, r in zip(predicted, graphs, real, strict=True)]
    )
    dummy = np.mean([(g.y - g.pos)[r].abs().mean() for g, r in zip(graphs, real, strict=True)])
    assert row["mae"] == pytest.approx(float(mae), rel=1e-5)
    assert row["dummy_mae"] == pytest.approx(float(dummy), rel=1e-5) and dummy > 0.001
    assert row["ratio"] == pytest.approx(row["mae"] / row["dummy_mae"])
    assert {"local_mae_3A", "local_mae_6A", "displacement_error"} <= set(row)
    assert report["overall"]["n"] == 2
    assert "MoS2_500" in result.output


def test_evaluate_names_what_a_host_folder_holds_outside_training(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("DEFINET_CACHE_DIR", str(tmp_path / "cache"))
    meta = {"elements": [16, 42], "hosts": ["WSe2_500"], "host_kinds": ["Se-W layer"]}
    other = tiny_checkpoint(tmp_path / "wse2.pt", metadata=meta)
    with pytest.warns(OutOfDistributionWarning) as record:
        evaluate_checkpoint(tiny_dataset, "test", other, progress=False)
    assert [str(w.message) for w in record] == [
        "MoS2_500: element(s) ['W']; host Mo-S layer never seen in training by wse2.pt "
        "(its hosts: Se-W layer): its figures are out of distribution"
    ]
    seen = tiny_checkpoint(tmp_path / "mos2.pt", metadata=meta | {"host_kinds": ["Mo-S layer"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDistributionWarning)
        with pytest.raises(
            OutOfDistributionWarning, match=r"^MoS2_500: element\(s\) \['W'\] never"
        ):
            evaluate_checkpoint(tiny_dataset, "test", seen, progress=False)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("junk")
    result = CliRunner().invoke(
        app, ["evaluate", "--checkpoint", str(bad), "--data-root", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output


def test_shipped_weights_resolve_by_name(tmp_path: Path) -> None:
    from definet.predict import DEFAULT_CHECKPOINT, resolve_checkpoint, shipped_names

    assert resolve_checkpoint(None) == DEFAULT_CHECKPOINT
    assert "definet-default" in shipped_names()
    assert resolve_checkpoint("definet-default") == DEFAULT_CHECKPOINT
    own = tmp_path / "mine.pt"
    own.write_bytes(b"x")
    assert resolve_checkpoint(own) == own
    with pytest.raises(FileNotFoundError, match="shipped weights: .*definet-default"):
        resolve_checkpoint("definet-nope")
    with pytest.raises(FileNotFoundError, match="checkpoint not found: /no/such.pt"):
        resolve_checkpoint("/no/such.pt")


def test_shipped_weights_fit_the_size_limit_and_load_safely() -> None:
    """Every shipped checkpoint stays under 25 MB, loads with ``weights_only=True`` and has its
    model card beside it."""
    from definet.checkpoint import load_model
    from definet.predict import DEFAULT_CHECKPOINT

    shipped = sorted(DEFAULT_CHECKPOINT.parent.glob("*.pt"))
    assert DEFAULT_CHECKPOINT in shipped
    for path in shipped:
        assert path.stat().st_size <= 25_000_000, f"{path.name}: over 25 MB"
        assert path.with_suffix(".json").is_file() and path.with_suffix(".md").is_file()
        load_model(path)  # reads through torch.load(weights_only=True)


def test_prediction_and_evaluation_do_not_load_the_trainer() -> None:
    """Predicting goes through :mod:`definet.inference` alone: importing ``Predictor`` and
    ``evaluate_checkpoint`` must not pull in the training loop, its settings or its losses."""
    code = (
        "import sys, definet.predict, definet.evaluate; "
        "print(sorted(m for m in sys.modules if m in "
        "('definet.train', 'definet.train_config', 'definet.losses')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_predict_refuses_inputs_whose_outputs_would_collide(
    checkpoint: Path, tmp_path: Path
) -> None:
    unrelaxed, _ = marked_pair(2)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        CifWriter(unrelaxed).write_file(tmp_path / folder / "POSCAR.cif")
    host = tmp_path / "MoS2.cif"
    CifWriter(mos2_unit_cell()).write_file(host)
    files = [str(tmp_path / f / "POSCAR.cif") for f in ("a", "b")]
    args = ["predict", *files, "--host-cell", str(host), "--checkpoint", str(checkpoint)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "share the name(s) POSCAR" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_partial_occupancies_are_named(checkpoint: Path) -> None:
    unrelaxed, ideal = marked_pair(1)
    disordered = unrelaxed.copy()
    disordered.replace(0, {"Mo": 0.5, "W": 0.5})
    with pytest.raises(ValueError, match="partial occupancies in"):
        Predictor(checkpoint).predict([disordered], pristine=[ideal])
