"""What a fixed-cell relaxation cost and where it ended: :class:`RelaxResult`, read from any
engine's atomate2 task document (:func:`relax_result_from_task_doc`).

``n_ionic_steps`` counts energy/force evaluations, the initial structure included, as VASP
counts ionic steps: a structure that is already relaxed takes 1 step. VASP and CP2K input sets
sort the sites by element; :func:`in_site_order` puts a final structure back in the order of
its start.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure

from definet_flows.force_fields import canonical_force_field

if TYPE_CHECKING:
    from definet_flows.engines import RelaxEngine

__all__ = [
    "HARTREE_PER_BOHR",
    "RelaxResult",
    "in_site_order",
    "relax_result_from_task_doc",
    "settings_hash",
]

#: 1 Hartree/Bohr in eV/A (CP2K reports forces in atomic units).
HARTREE_PER_BOHR = 51.422067476325886


class RelaxResult(BaseModel):
    """What one fixed-cell relaxation cost and where it ended, engine-independent."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: str = Field(description="Engine name: forcefield, vasp or cp2k.")
    settings: dict[str, Any] = Field(description="Settings that define the engine.")
    settings_hash: str = Field(description="sha256 of the canonical JSON of engine + settings.")
    n_ionic_steps: int = Field(
        description="Energy/force evaluations, the initial structure included (VASP counting)."
    )
    energy: float = Field(description="Final total energy in eV.")
    energy_per_atom: float = Field(description="Final total energy per atom in eV/atom.")
    max_force: float = Field(description="Final largest per-atom force norm in eV/A.")
    converged: bool = Field(
        description="The engine's force criterion was met (the step cap was not hit)."
    )
    final_structure: Structure = Field(description="Relaxed structure (cell unchanged).")
    wall_time_s: float | None = Field(None, description="Wall time of the relaxation in s.")


def settings_hash(engine: str, settings: dict[str, Any]) -> str:
    """Return a stable key for an engine and its settings.

    Parameters
    ----------
    engine : str
        Engine name.
    settings : dict
        Engine settings (JSON-serialisable).

    Returns
    -------
    str
        Hex sha256 of ``{"engine": engine, "settings": settings}`` as canonical JSON
        (sorted keys, no whitespace).
    """
    payload = json.dumps(
        {"engine": engine, "settings": settings},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def relax_result_from_task_doc(
    doc: Any, engine: RelaxEngine | None = None, initial: Structure | None = None
) -> RelaxResult:
    """Read the result of a relaxation from an engine's atomate2 task document.

    Parameters
    ----------
    doc : ForceFieldTaskDocument, emmet TaskDoc, atomate2 CP2K TaskDocument, or dict
        The output of the relax job (a dict as stored in a jobflow store works too).
    engine : RelaxEngine or None
        The engine that made it: its name and settings go into the result. When None, the
        engine is inferred from the document type and the settings are those the document
        records (force criterion, step cap, ...), which may be fewer than the engine's.
    initial : Structure or None
        The structure the relaxation started from. VASP and CP2K input sets sort the sites
        by element; given ``initial``, the final structure is put back in its site order.

    Returns
    -------
    RelaxResult
    """
    kind = _doc_kind(doc)
    if engine is not None and engine.name != kind:
        raise ValueError(f"a {kind} task document cannot come from the {engine.name} engine")
    doc = _as_model(doc, kind)
    parse = {"forcefield": _parse_forcefield, "vasp": _parse_vasp, "cp2k": _parse_cp2k}[kind]
    fields, recorded = parse(doc, engine)
    settings = engine.settings if engine is not None else recorded
    structure = fields.pop("final_structure")
    if initial is not None:
        structure = in_site_order(structure, _engine_input_structure(doc), initial)
    return RelaxResult(
        engine=kind,
        settings=settings,
        settings_hash=settings_hash(kind, settings),
        energy_per_atom=fields["energy"] / len(structure),
        final_structure=structure,
        **fields,
    )


def _doc_kind(doc: Any) -> str:
    get = doc.get if isinstance(doc, dict) else lambda k, d=None: getattr(doc, k, d)
    module = str(get("@module", "") or type(doc).__module__)
    if "forcefield" in module or get("forcefield_name") is not None:
        return "forcefield"
    if "cp2k" in module:
        return "cp2k"
    if "emmet" in module or "vasp" in module:
        return "vasp"
    calcs = get("calcs_reversed") or []
    if calcs:
        first = calcs[0] if isinstance(calcs[0], dict) else calcs[0].model_dump()
        if "cp2k_version" in first or "has_cp2k_completed" in first:
            return "cp2k"
        if "vasp_version" in first or "has_vasp_completed" in first:
            return "vasp"
    raise TypeError(f"cannot tell which engine made a {type(doc).__name__} task document")


def _as_model(doc: Any, kind: str) -> Any:
    if not isinstance(doc, dict):
        return doc
    if kind == "forcefield":
        from atomate2.forcefields.schemas import ForceFieldTaskDocument as Model
    elif kind == "vasp":
        from emmet.core.tasks import TaskDoc as Model
    else:
        from atomate2.cp2k.schemas.task import TaskDocument as Model
    return Model.model_validate({k: v for k, v in doc.items() if not k.startswith("@")})


def _max_norm(forces: Any) -> float:
    forces = np.asarray(forces, dtype=float).reshape(-1, 3)
    return float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0


def _parse_forcefield(doc: Any, engine: RelaxEngine | None) -> tuple[dict, dict]:
    out = doc.output
    # atomate2 counts trajectory frames; AseRelaxer appends the final frame once more after
    # the optimizer returns, so distinct evaluations are one fewer (a static run has 1).
    steps_cap = doc.input.steps
    n_frames = int(out.n_steps or 1)
    n_ionic = n_frames if (steps_cap is not None and steps_cap <= 1) else max(n_frames - 1, 1)
    relax_kwargs = doc.input.relax_kwargs or {}
    try:
        force_field = canonical_force_field(doc.forcefield_name)
    except ValueError:  # a calculator outside atomate2's MLFF list: keep its name
        force_field = str(doc.forcefield_name)
    recorded = {
        "force_field": force_field,
        "fmax": relax_kwargs.get("fmax"),
        "max_steps": steps_cap,
        "optimizer": (doc.input.optimizer_kwargs or {}).get("optimizer", "FIRE"),
    }
    return {
        "n_ionic_steps": n_ionic,
        "energy": float(out.energy),
        "max_force": _max_norm(out.forces),
        "converged": bool(doc.is_force_converged),
        "final_structure": out.structure or doc.structure,
        "wall_time_s": out.elapsed_time,
    }, recorded


def _parse_vasp(doc: Any, engine: RelaxEngine | None) -> tuple[dict, dict]:
    calcs = list(doc.calcs_reversed or [])
    if not calcs:
        raise ValueError("VASP task document has no calcs_reversed")
    if any(c.output.ionic_steps is None for c in calcs):
        raise ValueError(
            "VASP task document has no ionic_steps (made with store_trajectory != 'no'?)"
        )
    last = calcs[0]
    params = last.input.parameters or {}
    nsw = int(params.get("NSW", 0))
    n_last = len(last.output.ionic_steps)
    ediffg = float(params.get("EDIFFG", 0.0))
    max_force = _max_norm(doc.output.forces)
    # VASP stops before NSW only when EDIFFG is met (custodian restarts are disabled); a run
    # that met a force criterion exactly at step NSW converged too.
    met_forces = ediffg < 0 and len(doc.output.forces) > 0 and max_force <= -ediffg + 1e-6
    converged = nsw <= 0 or n_last < nsw or met_forces
    run_stats = (doc.run_stats or {}).get("overall")
    wall = float(run_stats.elapsed_time) if run_stats and run_stats.elapsed_time else None
    recorded = {
        "fmax": abs(float(params.get("EDIFFG", 0.0))),
        "max_steps": nsw,
        "ibrion": params.get("IBRION"),
    }
    return {
        "n_ionic_steps": sum(len(c.output.ionic_steps) for c in calcs),
        "energy": float(doc.output.energy),
        "max_force": max_force,
        "converged": bool(converged),
        "final_structure": doc.output.structure,
        "wall_time_s": wall,
    }, recorded


def _parse_cp2k(doc: Any, engine: RelaxEngine | None) -> tuple[dict, dict]:
    calcs = list(doc.calcs_reversed or [])
    if not calcs or not calcs[0].output.ionic_steps:
        raise ValueError("CP2K task document has no ionic steps")
    last = calcs[0]
    forces_au = np.asarray(last.output.ionic_steps[-1]["forces"], dtype=float).reshape(-1, 3)
    geo_opt = _cp2k_geo_opt_section(last.input.cp2k_input)
    recorded = {
        "fmax": geo_opt.get("MAX_FORCE", 4.5e-4) * HARTREE_PER_BOHR,
        "max_steps": int(geo_opt.get("MAX_ITER", 200)),
    }
    fmax = float(engine.settings["fmax"]) if engine is not None else recorded["fmax"]
    # CP2K's own force criterion: largest component and RMS of the gradient (atomic units)
    max_au = fmax / HARTREE_PER_BOHR
    tol = 1e-9
    converged = (
        float(np.abs(forces_au).max()) <= max_au + tol
        and float(np.sqrt(np.mean(forces_au**2))) <= max_au + tol
    )
    run_stats = (doc.run_stats or {}).get("overall")
    wall = float(run_stats.total_time) if run_stats and run_stats.total_time else None
    # CP2K writes no trajectory frame for the initial structure (its first frame is after
    # optimisation step 1), so each run's evaluations are its ionic steps + 1.
    return {
        "n_ionic_steps": sum(len(c.output.ionic_steps) + 1 for c in calcs),
        "energy": float(last.output.energy),
        "max_force": _max_norm(forces_au) * HARTREE_PER_BOHR,
        "converged": bool(converged),
        "final_structure": last.output.structure,
        "wall_time_s": wall,
    }, recorded


def _cp2k_geo_opt_section(cp2k_input: Any) -> dict[str, float]:
    """MAX_FORCE / MAX_ITER of MOTION/GEO_OPT from a (serialised) CP2K input."""
    from pymatgen.io.cp2k.inputs import Cp2kInput

    values: dict[str, float] = {}
    try:
        ci = cp2k_input if isinstance(cp2k_input, Cp2kInput) else Cp2kInput.from_dict(cp2k_input)
        section = ci["MOTION"]["GEO_OPT"]
        for key in ("MAX_FORCE", "MAX_ITER"):
            if section.get(key) is not None:
                values[key] = float(section.get(key).values[0])
    except Exception:  # noqa: S110 - older/odd inputs: fall back to CP2K defaults
        pass
    return values


def _engine_input_structure(doc: Any) -> Structure | None:
    """The structure as the engine received it (its site order), where the document has it."""
    calcs = getattr(doc, "calcs_reversed", None) or []
    for source in (getattr(doc, "input", None), *(getattr(c, "input", None) for c in calcs[-1:])):
        structure = getattr(source, "structure", None)
        if structure is not None:
            return structure
    return None


def in_site_order(
    final: Structure, engine_input: Structure | None, initial: Structure
) -> Structure:
    """``final`` with its sites in the order of ``initial``.

    ``engine_input`` (the start as the engine saw it, same site order as ``final``) is matched
    site by site to ``initial`` by species and position (periodic, 0.01 A), which gives the
    permutation to undo. Without it, ``final`` must already be in ``initial``'s order.

    Raises
    ------
    ValueError
        The structures cannot be matched (different atoms, or no engine input to match by).
    """
    species = [site.species_string for site in initial]
    if engine_input is None:
        if [site.species_string for site in final] != species:
            raise ValueError(
                "the engine returned the sites in another order and its task document has no "
                "input structure to map them back"
            )
        return final
    if len(engine_input) != len(initial) or len(final) != len(initial):
        raise ValueError(
            f"the engine relaxed {len(engine_input)} sites, the start has {len(initial)}"
        )
    dist = engine_input.lattice.get_all_distances(initial.frac_coords, engine_input.frac_coords)
    order = dist.argmin(axis=1)
    matched = (
        len(set(order.tolist())) == len(order)
        and float(dist[np.arange(len(order)), order].max()) < 0.01
        and [engine_input[j].species_string for j in order] == species
    )
    if not matched:
        raise ValueError("the engine's input structure does not match the start site by site")
    return Structure(
        final.lattice,
        [final[j].species for j in order],
        [final[j].frac_coords for j in order],
        site_properties={k: [v[j] for j in order] for k, v in final.site_properties.items()},
    )
