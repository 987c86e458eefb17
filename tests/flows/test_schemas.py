"""ValidationDoc.from_results: figures, key, same-minimum flag, errors."""

from __future__ import annotations

import numpy as np
import pytest

from definet_flows.engines import RelaxEngine
from definet_flows.schemas import ValidationDoc, coordinate_mae, make_key, rmsd


def test_from_results(mos2_entries, fake_result, displace):
    entry = next(e for e in mos2_entries if len(e.defects) == 2)
    relaxed = displace(entry.structure, 0.05, seed=1)
    unrelaxed = fake_result(40, -100.0, relaxed, wall_time_s=12.0)
    predicted = fake_result(4, -100.004, relaxed.copy(), wall_time_s=2.0)
    prediction = displace(relaxed, 0.03, seed=2)
    doc = ValidationDoc.from_results(entry, unrelaxed, predicted, "c0ffee" * 10, prediction)

    engine = RelaxEngine("forcefield", {"force_field": "EMT"})  # what fake_result reports
    assert doc.key == make_key(entry.defect_id, "forcefield", engine.settings_hash, "c0ffee" * 10)
    assert doc.key.split(":") == [
        entry.defect_id,
        "forcefield",
        engine.settings_hash,
        ("c0ffee" * 10)[:12],
    ]
    assert doc.n_defects == 2 and doc.defect_types == ["vacancy"]
    assert doc.n_sites == entry.n_sites == len(relaxed)
    assert doc.steps_saved == 36
    assert doc.energy_difference == pytest.approx(-0.004)
    assert doc.rmsd == pytest.approx(0.0, abs=1e-9)
    assert doc.same_minimum
    # MAE by hand: mean norm of minimum-image displacements
    d = prediction.frac_coords - relaxed.frac_coords
    d -= np.round(d)
    expected = np.linalg.norm(d @ relaxed.lattice.matrix, axis=1).mean()
    assert doc.definet_mae == pytest.approx(expected)
    assert doc.baseline_mae == pytest.approx(coordinate_mae(entry.structure, relaxed))
    assert doc.from_unrelaxed.wall_time_s == 12.0
    assert doc.unrelaxed_structure is entry.structure


def test_rmsd_ignores_rigid_translation_and_flags_other_minima(mos2_entries, fake_result, displace):
    entry = mos2_entries[0]
    relaxed = displace(entry.structure, 0.05, seed=1)
    shifted = relaxed.copy()
    shifted.translate_sites(range(len(shifted)), [0.3, -0.2, 0.1], frac_coords=False)
    assert rmsd(relaxed, shifted) == pytest.approx(0.0, abs=1e-9)

    other = displace(relaxed, 0.2, seed=3)
    unrelaxed = fake_result(40, -100.0, relaxed)
    predicted = fake_result(4, -100.0, other)
    doc = ValidationDoc.from_results(entry, unrelaxed, predicted, "ab" * 32)
    assert doc.rmsd > doc.rmsd_tol and not doc.same_minimum
    predicted_high = fake_result(4, -99.9, relaxed)
    doc = ValidationDoc.from_results(entry, unrelaxed, predicted_high, "ab" * 32)
    assert doc.rmsd < 1e-9 and not doc.same_minimum  # energy off by 0.1 eV


def test_from_results_rejects_mixed_engines(mos2_entries, fake_result, displace):
    entry = mos2_entries[0]
    relaxed = displace(entry.structure, 0.05, seed=1)
    a = fake_result(40, -100.0, relaxed)
    b = fake_result(
        4, -100.0, relaxed, engine=RelaxEngine("forcefield", {"force_field": "EMT", "fmax": 0.01})
    )
    with pytest.raises(ValueError, match="same engine"):
        ValidationDoc.from_results(entry, a, b, "ab" * 32)


def test_results_in_another_site_order_still_give_a_document(mos2_entries, fake_result, displace):
    """A result the document cannot compare (sites in another order) is stored as failed,
    never lost: from_failure must not raise on it."""
    from pymatgen.core import Structure

    from definet_flows.validation import _validation_doc

    entry = next(e for e in mos2_entries if len(e.defects) == 2)
    relaxed = displace(entry.structure, 0.05, seed=1)
    sorted_relaxed = Structure.from_sites(sorted(relaxed, key=lambda s: s.specie.symbol != "S"))
    assert [s.species_string for s in sorted_relaxed] != [s.species_string for s in relaxed]
    a = fake_result(40, -100.0, sorted_relaxed)
    b = fake_result(4, -100.0, relaxed)
    engine = RelaxEngine("forcefield", {"force_field": "EMT"})
    doc = _validation_doc(entry, a, b, relaxed, 0.1, "ab" * 32, engine, 0.1, 0.01, True)
    assert doc.status == "failed" and "species order" in doc.error
    assert doc.from_unrelaxed.n_ionic_steps == 40 and doc.from_predicted.n_ionic_steps == 4
