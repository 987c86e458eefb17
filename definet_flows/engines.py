"""Relaxation engines behind one small interface.

The validation flow relaxes the unrelaxed and the DefiNet-predicted structure of each defect
with the *same* engine and the *same* settings, then compares ionic steps. An engine is

- a name (``"forcefield"``, ``"vasp"`` or ``"cp2k"``),
- a dict of **settings** that define the physics (force criterion, step cap, functional, ...),
  hashed into a stable key for stores (:func:`settings_hash`), and
- **run options** that only say how to execute it (binary, MPI ranks): never hashed.

:class:`RelaxEngine` turns that into an atomate2 relax Maker with the cell fixed
(:meth:`RelaxEngine.make_maker`), checks that the engine can run here before any work
(:meth:`RelaxEngine.check_available`), and reads every engine's atomate2 task document into the
same small :class:`RelaxResult` (:func:`relax_result_from_task_doc`).

Every engine uses a force criterion ``fmax`` (eV/A) and a step cap ``max_steps``; a run that
hits the cap is returned with ``converged=False`` instead of being continued or failed (custodian
handlers that would silently extend a capped relaxation are left out, see below).
``n_ionic_steps`` counts energy/force evaluations, the initial structure included, as VASP
counts ionic steps: a structure that is already relaxed takes 1 step.

Examples
--------
>>> engine = RelaxEngine("forcefield", {"force_field": "EMT", "fmax": 0.05})  # doctest: +SKIP
>>> job = engine.make_maker().make(structure)  # doctest: +SKIP
>>> result = engine.result(job_output)  # doctest: +SKIP
>>> flow = EngineRelaxMaker(engine=engine).make(structure)  # output: RelaxResult  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jobflow import Flow, Maker, job
from monty.json import MSONable
from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure

if TYPE_CHECKING:
    from custodian.custodian import ErrorHandler

__all__ = [
    "DEFAULT_SETTINGS",
    "ENGINES",
    "EngineNotAvailableError",
    "EngineRelaxMaker",
    "RelaxEngine",
    "RelaxResult",
    "default_cp2k_data_dir",
    "make_relax_maker",
    "relax_result_from_task_doc",
    "relax_result_job",
    "settings_hash",
]

ENGINES: tuple[str, ...] = ("forcefield", "vasp", "cp2k")

#: 1 Hartree/Bohr in eV/A (CP2K reports forces in atomic units).
HARTREE_PER_BOHR = 51.422067476325886

#: Default settings of each engine; every key may be overridden, no other key is accepted.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "forcefield": {
        "force_field": "CHGNet",  # an atomate2 MLFF name, or an ASE calculator import path
        "fmax": 0.05,  # eV/A, max per-atom force norm
        "max_steps": 500,  # ASE optimizer steps (evaluations <= max_steps + 1)
        "optimizer": "FIRE",
        "calculator_kwargs": {},
    },
    "vasp": {
        "fmax": 0.05,  # EDIFFG = -fmax
        "max_steps": 60,  # NSW
        "ibrion": 2,
        "kpoints": "special",  # atomate2's defect k-point (1/4,1/4,1/4), or "gamma"
        "incar_updates": {},  # anything else for the INCAR (ENCUT, ISPIN, ...)
    },
    "cp2k": {
        "fmax": 0.05,  # MAX_FORCE = RMS_FORCE = fmax (converted to Ha/Bohr); MAX_DR/RMS_DR off
        "max_steps": 100,  # GEO_OPT MAX_ITER (evaluations <= max_steps + 1)
        "optimizer": "BFGS",
        "trust_radius": 0.25,  # Bohr, largest BFGS step (CP2K's default; atomate2 uses 0.1)
        "xc": "PBE",
        "basis": "DZVP-MOLOPT-SR-GTH",
        "potential": "GTH-PBE",
        "cutoff": 300,  # Ry
        "rel_cutoff": 40,  # Ry
        "eps_default": 1e-10,
        "eps_scf": 1e-6,
        "spin_polarized": True,  # UKS; atomate2 0.1.5 cannot parse RKS outputs (see below)
        "input_updates": {},  # more atomate2 Cp2kInputGenerator user_input_settings
    },
}

_MPI_LAUNCHERS = ("mpirun", "mpiexec", "srun", "aprun", "ibrun")

#: Short names for ASE calculators accepted as ``force_field``.
_FORCE_FIELD_ALIASES = {
    "EMT": "ase.calculators.emt.EMT",
    "LennardJones": "ase.calculators.lj.LennardJones",
}

#: MLFF name -> (python module to import, pip package that provides it).
_MLFF_PACKAGES = {
    "CHGNet": ("chgnet", "chgnet"),
    "SevenNet": ("sevenn", "sevenn"),
    "M3GNet": ("matgl", "matgl"),
    "MatPES-PBE": ("matgl", "matgl"),
    "MatPES-r2SCAN": ("matgl", "matgl"),
    "MACE": ("mace", "mace-torch"),
    "MACE-MP-0": ("mace", "mace-torch"),
    "MACE-MPA-0": ("mace", "mace-torch"),
    "MACE-MP-0b3": ("mace", "mace-torch"),
    "GAP": ("quippy", "quippy-ase"),
    "NEP": ("calorine", "calorine"),
    "Nequip": ("nequip", "nequip"),
    "Allegro": ("nequip", "nequip"),
    "DeepMD": ("deepmd", "deepmd-kit"),
    "FAIRChem": ("fairchem.core", "fairchem-core"),
    "MatterSim": ("mattersim", "mattersim"),
    "UPET": ("upet", "upet"),
}


class EngineNotAvailableError(RuntimeError):
    """An engine's package, binary or data files are missing on this machine."""


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


def default_cp2k_data_dir() -> Path:
    """Where ``scripts/install_cp2k.sh`` writes pymatgen's CP2K data files."""
    if path := os.environ.get("DEFINET_CP2K_DATA_DIR"):
        return Path(path).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return cache / "definet" / "cp2k-data"


def ensure_cp2k_env() -> None:
    """Set pymatgen's CP2K environment defaults where unset (data dir, functional, basis)."""
    os.environ.setdefault("CP2K_DATA_DIR", str(default_cp2k_data_dir()))
    os.environ.setdefault("DEFAULT_CP2K_FUNCTIONAL", "PBE")
    os.environ.setdefault("DEFAULT_CP2K_BASIS_TYPE", "DZVP-MOLOPT")


@dataclass
class RelaxEngine(MSONable):
    """A relaxation engine: name + settings (hashed) + run options (not hashed).

    Parameters
    ----------
    name : str
        One of :data:`ENGINES`.
    settings : dict
        Overrides of :data:`DEFAULT_SETTINGS` ``[name]``; unknown keys raise ``ValueError``.
        After construction it holds the complete, canonical settings.
    run_options : dict
        How to run, never part of the key. ``forcefield``: none. ``vasp``: ``vasp_cmd``
        (default atomate2's ``VASP_CMD``). ``cp2k``: ``cp2k_cmd`` (full command, overrides
        the next two), ``cp2k_binary`` (default ``cp2k.psmp``, else ``cp2k.popt``),
        ``mpi_procs`` (default $DEFINET_CP2K_MPI_PROCS, else 2 where ``mpirun`` exists, else 1; run with
        ``OMP_NUM_THREADS=1``).
    """

    name: str = "forcefield"
    settings: dict[str, Any] = field(default_factory=dict)
    run_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate the engine name and complete the settings with defaults."""
        if self.name not in ENGINES:
            raise ValueError(
                f"unknown relaxation engine {self.name!r}; valid engines: {', '.join(ENGINES)}"
            )
        defaults = DEFAULT_SETTINGS[self.name]
        unknown = sorted(set(self.settings) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown} for engine {self.name!r}; "
                f"valid settings: {', '.join(sorted(defaults))}"
            )
        settings = json.loads(json.dumps({**defaults, **self.settings}, default=str))
        if self.name == "forcefield":
            settings["force_field"] = _canonical_force_field(self.settings.get("force_field"))
            if settings["optimizer"] not in ("FIRE", "BFGS", "LBFGS", "BFGSLineSearch", "MDMin"):
                raise ValueError(f"unsupported ASE optimizer {settings['optimizer']!r}")
        if self.name == "vasp" and settings["kpoints"] not in ("special", "gamma"):
            raise ValueError("vasp setting 'kpoints' must be 'special' or 'gamma'")
        if self.name == "cp2k" and not settings["spin_polarized"]:
            # atomate2 0.1.5 CalculationInput.cleanup_dft calls .upper() on every value of the
            # parsed DFT section; for a restricted (RKS) run the first is not "UKS" and an int
            # follows, so the task document cannot be built.
            raise ValueError(
                "cp2k spin_polarized=False is not supported: atomate2 0.1.5 cannot parse "
                "restricted (RKS) CP2K outputs"
            )
        if not settings["fmax"] > 0 or int(settings["max_steps"]) < 1:
            raise ValueError("fmax must be > 0 and max_steps >= 1")
        self.settings = settings

    @property
    def settings_hash(self) -> str:
        """Stable store key of this engine (see :func:`settings_hash`)."""
        return settings_hash(self.name, self.settings)

    def check_available(self) -> None:
        """Raise :class:`EngineNotAvailableError` if the engine cannot run on this machine."""
        if self.name == "forcefield":
            module, package = _force_field_module(self.settings["force_field"])
            if not _module_exists(module):
                raise EngineNotAvailableError(
                    f"force field {self.settings['force_field']!r} needs the python module "
                    f"{module!r}, which is not installed: pip install {package}"
                )
        elif self.name == "vasp":
            cmd = self._vasp_cmd()
            if not _command_exists(cmd):
                raise EngineNotAvailableError(
                    f"VASP executable not found (command {cmd!r}): install VASP (licensed) and "
                    "put vasp_std on PATH, or pass run_options={'vasp_cmd': ...}"
                )
        else:
            cmd = self._cp2k_cmd()
            if not _command_exists(cmd):
                raise EngineNotAvailableError(
                    f"CP2K executable not found (command {cmd!r}): run scripts/install_cp2k.sh "
                    "(apt-get install cp2k), or pass run_options={'cp2k_cmd': ...}"
                )
            data_dir = Path(os.environ.get("CP2K_DATA_DIR", default_cp2k_data_dir()))
            if not (data_dir / "Si").is_file():
                raise EngineNotAvailableError(
                    f"pymatgen CP2K data files not found in {data_dir}: run "
                    "scripts/install_cp2k.sh (or set CP2K_DATA_DIR)"
                )

    def make_maker(self, check: bool = True) -> Maker:
        """Build the atomate2 relax Maker for this engine (cell fixed).

        Parameters
        ----------
        check : bool
            Check first that the engine can run here (:meth:`check_available`). Pass False
            when the job will run on another machine (e.g. a jobflow-remote worker).

        Returns
        -------
        jobflow.Maker
            ``ForceFieldRelaxMaker``, atomate2 VASP ``RelaxMaker`` or :class:`Cp2kRelaxMaker`.
        """
        if check:
            self.check_available()
        return {"forcefield": self._forcefield, "vasp": self._vasp, "cp2k": self._cp2k}[self.name]()

    def result(self, doc: Any) -> RelaxResult:
        """Read a task document of this engine's maker (see :func:`relax_result_from_task_doc`)."""
        return relax_result_from_task_doc(doc, engine=self)

    # -- makers ---------------------------------------------------------------------------

    def _forcefield(self) -> Maker:
        from atomate2.forcefields.jobs import ForceFieldRelaxMaker

        s = self.settings
        force_field: str | dict = s["force_field"]
        if "." in force_field:
            module, callable_name = force_field.rsplit(".", 1)
            force_field = {"@module": module, "@callable": callable_name}
        return ForceFieldRelaxMaker(
            name=f"{_short_ff_name(s['force_field'])} relax",
            force_field_name=force_field,
            relax_cell=False,
            steps=int(s["max_steps"]),
            relax_kwargs={"fmax": float(s["fmax"])},
            optimizer_kwargs={"optimizer": s["optimizer"]},
            calculator_kwargs=dict(s["calculator_kwargs"]),
        )

    def _vasp(self) -> Maker:
        from atomate2.vasp.jobs.core import RelaxMaker
        from atomate2.vasp.sets.defect import SPECIAL_KPOINT, ChargeStateRelaxSetGenerator
        from pymatgen.io.vasp.inputs import Kpoints

        s = self.settings
        incar = {
            **s["incar_updates"],
            "ISIF": 2,  # ions only, cell fixed
            "IBRION": int(s["ibrion"]),
            "EDIFFG": -float(s["fmax"]),  # negative: force criterion
            "NSW": int(s["max_steps"]),
        }
        # atomate2's ChargeStateRelaxSetGenerator uses a Kpoints object as default_factory,
        # so its default cannot be built: always pass the k-points explicitly.
        if s["kpoints"] == "gamma":
            kpoints = Kpoints.gamma_automatic((1, 1, 1))
        else:
            kpoints = Kpoints.from_dict(SPECIAL_KPOINT.as_dict())
        generator_kwargs = {"user_incar_settings": incar, "user_kpoints_settings": kpoints}
        run_vasp_kwargs: dict[str, Any] = {"handlers": _vasp_handlers()}
        if "vasp_cmd" in self.run_options:
            run_vasp_kwargs["vasp_cmd"] = self.run_options["vasp_cmd"]
        return RelaxMaker(
            name="vasp defect relax",
            input_set_generator=ChargeStateRelaxSetGenerator(**generator_kwargs),
            run_vasp_kwargs=run_vasp_kwargs,
            # a capped (unconverged) relaxation is a result, not an error
            stop_children_kwargs={"handle_unsuccessful": False},
        )

    def _cp2k(self) -> Maker:
        from atomate2.cp2k.sets.core import RelaxSetGenerator

        from definet_flows.engine_makers import Cp2kCompletedValidator, Cp2kRelaxMaker

        s = self.settings
        fmax_au = float(s["fmax"]) / HARTREE_PER_BOHR
        user_input_settings = {
            "xc_functionals": [s["xc"]],
            "cutoff": s["cutoff"],
            "rel_cutoff": s["rel_cutoff"],
            "eps_default": s["eps_default"],
            "eps_pgf_orb": None,  # CP2K default (derived from eps_default)
            "eps_scf": s["eps_scf"],
            "ngrids": 4,
            "rotation": False,
            "spin_polarized": bool(s["spin_polarized"]),
            "activate_motion": {
                "optimizer": s["optimizer"],
                "max_iter": int(s["max_steps"]),
                "max_force": fmax_au,
                "rms_force": fmax_au,
                "max_drift": 1.0,  # Bohr: displacement criteria off, force criterion only
                "rms_drift": 1.0,
                "trust_radius": float(s["trust_radius"]),
            },
            **s["input_updates"],
        }
        generator = RelaxSetGenerator(
            user_input_settings=user_input_settings,
            user_kpoints_settings=None,  # Gamma only (no &KPOINTS section)
        )
        return Cp2kRelaxMaker(
            name="cp2k defect relax",
            input_set_generator=generator,
            basis=s["basis"],
            potential=s["potential"],
            omp_threads=1 if _launcher(self._cp2k_cmd()) else None,
            run_cp2k_kwargs={
                "cp2k_cmd": self._cp2k_cmd(),
                "handlers": _cp2k_handlers(),
                "validators": [Cp2kCompletedValidator()],
            },
            stop_children_kwargs={"handle_unsuccessful": False},
        )

    def _vasp_cmd(self) -> str:
        from atomate2 import SETTINGS

        return str(self.run_options.get("vasp_cmd", SETTINGS.VASP_CMD))

    def _cp2k_cmd(self) -> str:
        if "cp2k_cmd" in self.run_options:
            return str(self.run_options["cp2k_cmd"])
        binary = self.run_options.get("cp2k_binary") or next(
            (b for b in ("cp2k.psmp", "cp2k.popt") if shutil.which(b)), "cp2k.psmp"
        )
        default = os.environ.get("DEFINET_CP2K_MPI_PROCS", 2 if shutil.which("mpirun") else 1)
        procs = int(self.run_options.get("mpi_procs", default))
        if procs > 1:
            allow_root = " --allow-run-as-root" if os.geteuid() == 0 else ""
            return f"mpirun{allow_root} -np {procs} {binary}"
        return str(binary)


def make_relax_maker(
    engine: str = "forcefield",
    *,
    check: bool = True,
    run_options: dict[str, Any] | None = None,
    **settings: Any,
) -> Maker:
    """Build the atomate2 relax Maker of an engine in one call.

    Parameters
    ----------
    engine : str
        One of :data:`ENGINES`.
    check : bool
        Raise :class:`EngineNotAvailableError` now if the engine cannot run here.
    run_options : dict or None
        See :class:`RelaxEngine`.
    **settings
        Overrides of :data:`DEFAULT_SETTINGS` ``[engine]``.

    Returns
    -------
    jobflow.Maker
        The relax Maker; its ``make(structure)`` returns a job whose output is the
        engine's atomate2 task document.
    """
    return RelaxEngine(engine, settings, run_options or {}).make_maker(check=check)


# -- custodian handler choices -------------------------------------------------------------


def _cp2k_handlers() -> list[ErrorHandler]:
    """atomate2's default CP2K handlers, without the one that extends a capped GEO_OPT."""
    from atomate2.cp2k.run import _DEFAULT_HANDLERS
    from custodian.cp2k.handlers import UnconvergedRelaxationErrorHandler

    return [h for h in _DEFAULT_HANDLERS if not isinstance(h, UnconvergedRelaxationErrorHandler)]


def _vasp_handlers() -> list[ErrorHandler]:
    """atomate2's default VASP handlers; the unconverged handler fixes SCF failures only.

    custodian's ``UnconvergedErrorHandler`` restarts a relaxation that hit NSW from CONTCAR,
    which would both lift the step cap and hide the first segment's ionic steps.
    """
    from atomate2.vasp.run import DEFAULT_HANDLERS
    from custodian.vasp.handlers import UnconvergedErrorHandler

    from definet_flows.engine_makers import ElectronicUnconvergedErrorHandler

    return [
        ElectronicUnconvergedErrorHandler() if isinstance(h, UnconvergedErrorHandler) else h
        for h in DEFAULT_HANDLERS
    ]


# -- parsing task documents ------------------------------------------------------------------


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
        force_field = _canonical_force_field(doc.forcefield_name)
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
    # VASP stops before NSW only when EDIFFG is met (custodian restarts are disabled).
    converged = nsw <= 0 or n_last < nsw
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
        "max_force": _max_norm(doc.output.forces),
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


# -- jobflow glue ----------------------------------------------------------------------------


@job
def relax_result_job(
    doc: Any, engine: RelaxEngine, initial: Structure | None = None
) -> RelaxResult:
    """Jobflow job: read a relax job's task document into a :class:`RelaxResult`."""
    return relax_result_from_task_doc(doc, engine=engine, initial=initial)


@dataclass
class EngineRelaxMaker(Maker):
    """Relax a structure with an engine and return its :class:`RelaxResult`.

    Parameters
    ----------
    name : str
        The flow name.
    engine : RelaxEngine
        Engine and settings; both starts of a validation pair must use the same one.
    check : bool
        Check that the engine can run here when the flow is made.
    """

    name: str = "engine relax"
    engine: RelaxEngine = field(default_factory=RelaxEngine)
    check: bool = True

    def make(self, structure: Structure, prev_dir: str | Path | None = None) -> Flow:
        """Make the flow: [engine relax job, parse job]; its output is a RelaxResult."""
        relax = self.engine.make_maker(check=self.check).make(structure, prev_dir=prev_dir)
        parse = relax_result_job(relax.output, self.engine, structure)
        parse.name = f"{self.name} result"
        return Flow([relax, parse], output=parse.output, name=self.name)


# -- helpers ---------------------------------------------------------------------------------


def _canonical_force_field(spec: Any) -> str:
    """'CHGNet', 'MLFF.CHGNet', {'@module': m, '@callable': c} or 'm.c' -> one string."""
    if spec is None:
        return DEFAULT_SETTINGS["forcefield"]["force_field"]
    if isinstance(spec, dict):
        cls_key = "@callable" if "@callable" in spec else "@class"
        return f"{spec['@module']}.{spec[cls_key]}"
    spec = str(getattr(spec, "value", spec))
    spec = _FORCE_FIELD_ALIASES.get(spec, spec)
    if spec.startswith("MLFF."):
        spec = spec.split(".", 1)[1]
    if "." in spec:
        return spec
    from atomate2.forcefields.utils import MLFF

    for member in MLFF:
        if spec in (member.name, member.value):
            return member.value
    valid = sorted(m.value for m in MLFF if m.name != "Forcefield")
    raise ValueError(
        f"unknown force field {spec!r}; use an atomate2 MLFF name ({', '.join(valid)}), "
        f"an ASE calculator import path, or one of {sorted(_FORCE_FIELD_ALIASES)}"
    )


def _short_ff_name(force_field: str) -> str:
    return force_field.rsplit(".", 1)[-1]


def _force_field_module(force_field: str) -> tuple[str, str]:
    """Python module a force field needs and the pip package that provides it."""
    if force_field in _MLFF_PACKAGES:
        return _MLFF_PACKAGES[force_field]
    module = force_field.rsplit(".", 1)[0]
    return module, module.split(".", 1)[0]


def _module_exists(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _launcher(cmd: str) -> bool:
    """Whether a command line starts with an MPI launcher."""
    words = shlex.split(os.path.expandvars(cmd))
    return bool(words) and Path(words[0]).name in _MPI_LAUNCHERS


def _command_exists(cmd: str) -> bool:
    """Whether a command line's executable (and, behind an MPI launcher, its program) exist."""
    words = shlex.split(os.path.expandvars(cmd))
    if not words:
        return False
    needed = [words[0]]
    if _launcher(cmd):
        needed += [w for w in words[1:] if "vasp" in w or "cp2k" in w][-1:]
    return all(shutil.which(w) for w in needed)
