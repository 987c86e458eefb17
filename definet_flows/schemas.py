"""Documents stored in the results store: one ValidationDoc per defect, summaries per group."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field
from pymatgen.core import Structure

from definet.data.markers import strip_vacancies

if TYPE_CHECKING:
    from definet_flows.defects import DefectEntry

__all__ = [
    "RelaxOutcome",
    "StepStats",
    "ValidationDoc",
    "ValidationSummaryDoc",
    "coordinate_mae",
    "make_key",
    "rmsd",
]


class RelaxResultLike(Protocol):
    """What ValidationDoc needs from ``definet_flows.relax_results.RelaxResult``."""

    n_ionic_steps: int
    energy: float
    energy_per_atom: float
    max_force: float
    converged: bool
    final_structure: Structure
    engine: str
    settings: dict
    wall_time_s: float
    settings_hash: str


def make_key(defect_id: str, engine: str, settings_hash: str, checkpoint_sha256: str) -> str:
    """Return the store key ``<defect_id>:<engine>:<settings_hash>:<checkpoint_sha[:12]>``.

    The validation flow can compute it before running to skip finished defects.
    """
    return f"{defect_id}:{engine}:{settings_hash}:{checkpoint_sha256[:12]}"


def _displacements(a: Structure, b: Structure) -> np.ndarray:
    """Minimum-image Cartesian displacements b - a of paired atoms (same order and cell)."""
    a, b = strip_vacancies(a), strip_vacancies(b)
    if len(a) != len(b):
        raise ValueError(f"Structures differ in atom count ({len(a)} vs {len(b)})")
    if [s.species_string for s in a] != [s.species_string for s in b]:
        raise ValueError("Structures differ in species order")
    d = b.frac_coords - a.frac_coords
    d -= np.round(d)
    return d @ a.lattice.matrix


def rmsd(a: Structure, b: Structure) -> float:
    """Root-mean-square displacement (A) between paired atoms, rigid translation removed."""
    d = _displacements(a, b)
    d -= d.mean(axis=0)
    return float(np.sqrt((d**2).sum(axis=1).mean()))


def coordinate_mae(a: Structure, b: Structure) -> float:
    """Mean absolute displacement (A): mean over atoms of the minimum-image distance."""
    return float(np.linalg.norm(_displacements(a, b), axis=1).mean())


class RelaxOutcome(BaseModel):
    """The outcome of one relaxation (figures are None when the relaxation failed)."""

    n_ionic_steps: int | None = Field(description="Ionic steps the engine took.")
    energy: float | None = Field(description="Final total energy (eV).")
    energy_per_atom: float | None = Field(description="Final energy per atom (eV/atom).")
    max_force: float | None = Field(description="Largest final force on an atom (eV/A).")
    converged: bool = Field(description="Whether the engine's force criterion was met.")
    wall_time_s: float | None = Field(None, description="Wall time of the relaxation (s).")
    error: str | None = Field(
        None, description="Why the relaxation gave no result (None when it ran)."
    )

    @classmethod
    def failed(cls, error: str) -> RelaxOutcome:
        """The outcome of a relaxation that crashed or never ran: not converged, no figures."""
        return cls(
            n_ionic_steps=None,
            energy=None,
            energy_per_atom=None,
            max_force=None,
            converged=False,
            error=error,
        )

    @classmethod
    def from_result(cls, result: RelaxResultLike) -> RelaxOutcome:
        """Copy the scalar figures of a ``RelaxResult``."""
        return cls(
            n_ionic_steps=result.n_ionic_steps,
            energy=result.energy,
            energy_per_atom=result.energy_per_atom,
            max_force=result.max_force,
            converged=result.converged,
            wall_time_s=result.wall_time_s,
        )


class ValidationDoc(BaseModel):
    """DefiNet validation of one defect: the same engine relaxes from both starts."""

    key: str = Field(description="Store key: defect_id:engine:settings_hash:checkpoint[:12].")
    defect_id: str = Field(description="Stable defect id from DefectSupercellMaker.")
    host: str = Field(description="Host name.")
    host_formula: str | None = Field(None, description="Reduced formula of the host.")
    formula: str = Field(description="Formula of the defect supercell (real atoms).")
    defect_types: list[str] = Field(description="Sorted distinct defect types present.")
    defect_names: list[str] = Field(description="Defect names, e.g. ['v_S', 'W_Mo'].")
    n_defects: int = Field(description="Number of point defects.")
    n_sites: int = Field(description="Number of atoms relaxed (vacancy nodes excluded).")
    engine: str = Field(description="Relaxation engine (e.g. chgnet, cp2k).")
    engine_settings: dict[str, Any] = Field(description="Engine settings used for both starts.")
    settings_hash: str = Field(description="Hash of the engine settings.")
    checkpoint_sha256: str = Field(description="sha256 of the DefiNet weights that predicted.")
    from_unrelaxed: RelaxOutcome = Field(description="Relaxation from the unrelaxed structure.")
    from_predicted: RelaxOutcome = Field(description="Relaxation from the DefiNet prediction.")
    status: Literal["completed", "failed"] = Field(
        "completed",
        description="'failed' when a relaxation (or the prediction) gave no result; the "
        "figures that need both relaxations are then None and same_minimum is False.",
    )
    error: str | None = Field(None, description="What failed (None when completed).")
    steps_saved: int | None = Field(description="Ionic steps from unrelaxed minus from predicted.")
    energy_difference: float | None = Field(
        description="Final energy from predicted start minus from unrelaxed start (eV)."
    )
    rmsd: float | None = Field(
        description="RMSD (A) between the two final structures, rigid translation removed."
    )
    same_minimum: bool = Field(
        description="Both starts reached the same minimum: rmsd <= rmsd_tol and "
        "|energy_difference| <= energy_tol."
    )
    rmsd_tol: float = Field(description="RMSD tolerance (A) for same_minimum.")
    energy_tol: float = Field(description="Energy tolerance (eV) for same_minimum.")
    definet_mae: float | None = Field(
        None,
        description="Mean atomic displacement (A) of the prediction vs relaxed-from-unrelaxed.",
    )
    baseline_mae: float | None = Field(
        None, description="Same for the unrelaxed structure (do-nothing baseline, A)."
    )
    prediction_time_s: float | None = Field(None, description="DefiNet time for this defect (s).")
    out_of_distribution: str | None = Field(
        None,
        description="What of this defect the DefiNet model never saw in training (element, "
        "defect kind, host), None where nothing or unknown.",
    )
    unrelaxed_structure: Structure | None = Field(
        None, description="Marked unrelaxed structure (vacancy nodes at the end)."
    )
    predicted_structure: Structure | None = Field(None, description="DefiNet prediction.")
    final_from_unrelaxed: Structure | None = Field(
        None, description="Relaxed structure from the unrelaxed start."
    )
    final_from_predicted: Structure | None = Field(
        None, description="Relaxed structure from the predicted start."
    )
    last_updated: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="Time the document was made."
    )

    @classmethod
    def from_results(
        cls,
        entry: DefectEntry,
        from_unrelaxed: RelaxResultLike,
        from_predicted: RelaxResultLike,
        checkpoint_sha256: str,
        predicted_structure: Structure | None = None,
        prediction_time_s: float | None = None,
        rmsd_tol: float = 0.1,
        energy_tol: float = 0.01,
        store_structures: bool = True,
        out_of_distribution: str | None = None,
    ) -> ValidationDoc:
        """Build the document from a defect and its two relaxations.

        Parameters
        ----------
        entry
            The defect (``DefectEntry``) both relaxations started from.
        from_unrelaxed, from_predicted
            ``RelaxResult`` of the engine from the unrelaxed and the predicted structure.
        checkpoint_sha256
            Identifies the DefiNet weights (``Predictor.checkpoint_sha256``).
        predicted_structure
            DefiNet prediction; gives ``definet_mae``.
        prediction_time_s
            DefiNet wall time for this defect.
        rmsd_tol, energy_tol
            Tolerances (A, eV) of ``same_minimum``.
        store_structures
            Keep the four structures in the document.
        out_of_distribution
            What of the defect the model never saw (``DefiNetPredictionDoc``).

        Raises
        ------
        ValueError
            If the two relaxations used different engines or settings.
        """
        if (from_unrelaxed.engine, from_unrelaxed.settings_hash) != (
            from_predicted.engine,
            from_predicted.settings_hash,
        ):
            raise ValueError(
                "Both starts must use the same engine and settings: "
                f"{from_unrelaxed.engine}/{from_unrelaxed.settings_hash} vs "
                f"{from_predicted.engine}/{from_predicted.settings_hash}"
            )
        ref = from_unrelaxed.final_structure
        dist = rmsd(ref, from_predicted.final_structure)
        d_e = from_predicted.energy - from_unrelaxed.energy
        unrelaxed = entry.structure
        return cls(
            key=make_key(
                entry.defect_id,
                from_unrelaxed.engine,
                from_unrelaxed.settings_hash,
                checkpoint_sha256,
            ),
            defect_id=entry.defect_id,
            host=entry.host,
            host_formula=entry.host_formula,
            formula=entry.formula,
            defect_types=sorted({d.type for d in entry.defects}),
            defect_names=[d.name for d in entry.defects],
            n_defects=len(entry.defects),
            n_sites=entry.n_sites,
            engine=from_unrelaxed.engine,
            engine_settings=dict(from_unrelaxed.settings),
            settings_hash=from_unrelaxed.settings_hash,
            checkpoint_sha256=checkpoint_sha256,
            from_unrelaxed=RelaxOutcome.from_result(from_unrelaxed),
            from_predicted=RelaxOutcome.from_result(from_predicted),
            steps_saved=from_unrelaxed.n_ionic_steps - from_predicted.n_ionic_steps,
            energy_difference=d_e,
            rmsd=dist,
            same_minimum=bool(dist <= rmsd_tol and abs(d_e) <= energy_tol),
            rmsd_tol=rmsd_tol,
            energy_tol=energy_tol,
            definet_mae=(
                None if predicted_structure is None else coordinate_mae(predicted_structure, ref)
            ),
            baseline_mae=coordinate_mae(unrelaxed, ref),
            prediction_time_s=prediction_time_s,
            out_of_distribution=out_of_distribution,
            unrelaxed_structure=unrelaxed if store_structures else None,
            predicted_structure=predicted_structure if store_structures else None,
            final_from_unrelaxed=ref if store_structures else None,
            final_from_predicted=from_predicted.final_structure if store_structures else None,
        )

    @classmethod
    def from_failure(
        cls,
        entry: DefectEntry,
        engine: str,
        engine_settings: dict[str, Any],
        settings_hash: str,
        checkpoint_sha256: str,
        error: str,
        from_unrelaxed: RelaxResultLike | RelaxOutcome | None = None,
        from_predicted: RelaxResultLike | RelaxOutcome | None = None,
        predicted_structure: Structure | None = None,
        prediction_time_s: float | None = None,
        rmsd_tol: float = 0.1,
        energy_tol: float = 0.01,
        store_structures: bool = True,
        out_of_distribution: str | None = None,
    ) -> ValidationDoc:
        """Build the document of a defect whose validation failed (stored, never dropped).

        Parameters
        ----------
        entry
            The defect (``DefectEntry``).
        engine, engine_settings, settings_hash
            The engine both starts were (to be) relaxed with; they make the key.
        checkpoint_sha256
            Identifies the DefiNet weights.
        error
            What failed; relaxations given as None are recorded as failed with this error.
        from_unrelaxed, from_predicted
            A ``RelaxResult`` (or ``RelaxOutcome``) of a relaxation that did run, else None.
        predicted_structure, prediction_time_s
            The DefiNet prediction and its time, when the prediction ran.
        rmsd_tol, energy_tol, store_structures, out_of_distribution
            As in :meth:`from_results`.
        """

        def outcome(result: RelaxResultLike | RelaxOutcome | None) -> RelaxOutcome:
            if result is None:
                return RelaxOutcome.failed(error)
            if isinstance(result, RelaxOutcome):
                return result
            return RelaxOutcome.from_result(result)

        def final(result: RelaxResultLike | RelaxOutcome | None) -> Structure | None:
            return getattr(result, "final_structure", None) if store_structures else None

        ref = getattr(from_unrelaxed, "final_structure", None)
        definet_mae = baseline_mae = None
        if ref is not None:
            with suppress(ValueError):  # a failed document is stored whatever the structures
                baseline_mae = coordinate_mae(entry.structure, ref)
                if predicted_structure is not None:
                    definet_mae = coordinate_mae(predicted_structure, ref)
        return cls(
            key=make_key(entry.defect_id, engine, settings_hash, checkpoint_sha256),
            defect_id=entry.defect_id,
            host=entry.host,
            host_formula=entry.host_formula,
            formula=entry.formula,
            defect_types=sorted({d.type for d in entry.defects}),
            defect_names=[d.name for d in entry.defects],
            n_defects=len(entry.defects),
            n_sites=entry.n_sites,
            engine=engine,
            engine_settings=dict(engine_settings),
            settings_hash=settings_hash,
            checkpoint_sha256=checkpoint_sha256,
            from_unrelaxed=outcome(from_unrelaxed),
            from_predicted=outcome(from_predicted),
            status="failed",
            error=error,
            steps_saved=None,
            energy_difference=None,
            rmsd=None,
            same_minimum=False,
            rmsd_tol=rmsd_tol,
            energy_tol=energy_tol,
            definet_mae=definet_mae,
            baseline_mae=baseline_mae,
            prediction_time_s=prediction_time_s,
            out_of_distribution=out_of_distribution,
            unrelaxed_structure=entry.structure if store_structures else None,
            predicted_structure=predicted_structure if store_structures else None,
            final_from_unrelaxed=final(from_unrelaxed),
            final_from_predicted=final(from_predicted),
        )


class StepStats(BaseModel):
    """Statistics of ionic step counts."""

    median: float | None = Field(None, description="Median number of ionic steps.")
    mean: float | None = Field(None, description="Mean number of ionic steps.")
    p90: float | None = Field(None, description="90th percentile (linear interpolation).")


class ValidationSummaryDoc(BaseModel):
    """Summary of the ValidationDocs of one group (all, one host or one defect type)."""

    summary_id: str = Field(
        description="Key: '<group_by>=<group>|<engine>|<settings_hash>|<checkpoint[:12]>'."
    )
    group_by: str = Field(description="Grouping: 'all', 'host' or 'defect_type'.")
    group: str = Field(description="Value of the grouping field ('all' for the whole set).")
    engine: str = Field(description="Relaxation engine.")
    settings_hash: str = Field(description="Hash of the engine settings.")
    checkpoint_sha256: str = Field(description="sha256 of the DefiNet weights.")
    count: int = Field(description="Number of ValidationDocs in the group.")
    n_failed: int = Field(
        0, description="Documents whose validation failed (a relaxation gave no result)."
    )
    n_out_of_distribution: int = Field(
        0,
        description="Defects with something the model never saw in training (element, "
        "defect kind, host).",
    )
    steps_unrelaxed: StepStats = Field(description="Ionic steps from the unrelaxed start.")
    steps_predicted: StepStats = Field(description="Ionic steps from the predicted start.")
    share_converged_unrelaxed: float | None = Field(
        None, description="Share of relaxations from the unrelaxed start that converged."
    )
    share_converged_predicted: float | None = Field(
        None, description="Share of relaxations from the predicted start that converged."
    )
    share_within_3_unrelaxed: float | None = Field(
        None, description="Share converged within 3 ionic steps from the unrelaxed start."
    )
    share_within_3_predicted: float | None = Field(
        None, description="Share converged within 3 ionic steps from the predicted start."
    )
    mean_energy_difference: float | None = Field(
        None, description="Mean of E(predicted start) - E(unrelaxed start) (eV)."
    )
    share_same_minimum: float | None = Field(
        None, description="Share of defects whose two relaxations reached the same minimum."
    )
    mean_definet_mae: float | None = Field(None, description="Mean DefiNet coordinate MAE (A).")
    mean_baseline_mae: float | None = Field(None, description="Mean do-nothing MAE (A).")
    keys_hash: str = Field(description="sha256 of the sorted source keys (change detection).")
    last_updated: datetime = Field(description="Newest last_updated among the source docs.")
