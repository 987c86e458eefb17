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
same small :class:`RelaxResult` (:mod:`definet_flows.relax_results`).

Every engine uses a force criterion ``fmax`` (eV/A) and a step cap ``max_steps``; a run that
hits the cap is returned with ``converged=False`` instead of being continued or failed (custodian
handlers that would silently extend a capped relaxation are left out, see below).

Examples
--------
>>> engine = RelaxEngine("forcefield", {"force_field": "EMT", "fmax": 0.05})  # doctest: +SKIP
>>> job = engine.make_maker().make(structure)  # doctest: +SKIP
>>> result = engine.result(job_output)  # doctest: +SKIP
>>> flow = EngineRelaxMaker(engine=engine).make(structure)  # output: RelaxResult  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobflow import Flow, Maker, job
from monty.json import MSONable
from pymatgen.core import Structure

from definet_flows.force_fields import (
    DEFAULT_FORCE_FIELD,
    canonical_force_field,
    force_field_module,
    short_name,
)

# RelaxResult and its reader live in relax_results; they are named here too, so that documents
# stored with "@module": "definet_flows.engines" (before the split) still decode
from definet_flows.relax_results import (
    HARTREE_PER_BOHR,
    RelaxResult,
    relax_result_from_task_doc,
    settings_hash,
)

if TYPE_CHECKING:
    from custodian.custodian import ErrorHandler

__all__ = [
    "DEFAULT_SETTINGS",
    "ENGINES",
    "RUN_OPTIONS",
    "EngineNotAvailableError",
    "EngineRelaxMaker",
    "RelaxEngine",
    "check_run_options",
    "RelaxResult",
    "default_cp2k_data_dir",
    "make_relax_maker",
    "relax_result_from_task_doc",
    "relax_result_job",
    "settings_hash",
]

ENGINES: tuple[str, ...] = ("forcefield", "vasp", "cp2k")
#: The ``run_options`` each engine reads (see :class:`RelaxEngine`).
RUN_OPTIONS: dict[str, tuple[str, ...]] = {
    "forcefield": (),
    "vasp": ("vasp_cmd", "command_from_settings"),
    "cp2k": ("cp2k_cmd", "cp2k_binary", "mpi_procs", "command_from_settings"),
}

#: Default settings of each engine; every key may be overridden, no other key is accepted.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "forcefield": {
        "force_field": DEFAULT_FORCE_FIELD,  # an atomate2 MLFF name, or an ASE calculator import path
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


class EngineNotAvailableError(RuntimeError):
    """An engine's package, binary or data files are missing on this machine."""


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
        How to run, never part of the key (:data:`RUN_OPTIONS`). ``forcefield``: none.
        ``vasp``: ``vasp_cmd`` (default atomate2's ``VASP_CMD``). ``cp2k``: ``cp2k_cmd`` (full
        command, overrides the next two), ``cp2k_binary`` (default ``cp2k.psmp``, else
        ``cp2k.popt``), ``mpi_procs`` (default $DEFINET_CP2K_MPI_PROCS, else 2 where ``mpirun``
        exists, else 1; run with ``OMP_NUM_THREADS=1``). Both DFT engines:
        ``command_from_settings`` (true: without a ``*_cmd``, the job takes atomate2's
        ``VASP_CMD`` / ``CP2K_CMD`` setting of the machine it runs on, e.g.
        ``ATOMATE2_CP2K_CMD="srun cp2k.psmp"``, instead of a command worked out where the
        flow is made; cluster submissions set it).
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
        check_run_options(self.name, self.run_options)
        defaults = DEFAULT_SETTINGS[self.name]
        unknown = sorted(set(self.settings) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown} for engine {self.name!r}; "
                f"valid settings: {', '.join(sorted(defaults))}"
            )
        for key, value in self.settings.items():
            _check_setting_type(self.name, key, value, defaults[key])
        settings = json.loads(json.dumps({**defaults, **self.settings}, default=str))
        if self.name == "forcefield":
            settings["force_field"] = canonical_force_field(self.settings.get("force_field"))
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
        if not settings["fmax"] > 0 or settings["max_steps"] != int(settings["max_steps"]):
            raise ValueError(
                f"fmax must be > 0 and max_steps a whole number, got fmax {settings['fmax']!r}, "
                f"max_steps {settings['max_steps']!r}"
            )
        if settings["max_steps"] < 1:
            raise ValueError(f"max_steps must be >= 1, got {settings['max_steps']!r}")
        self.settings = settings

    @property
    def settings_hash(self) -> str:
        """Stable store key of this engine (see :func:`settings_hash`)."""
        return settings_hash(self.name, self.settings)

    def check_available(self) -> None:
        """Raise :class:`EngineNotAvailableError` if the engine cannot run on this machine."""
        if self.name == "forcefield":
            module, package = force_field_module(self.settings["force_field"])
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
            name=f"{short_name(s['force_field'])} relax",
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
        run_cp2k_kwargs: dict[str, Any] = {
            "handlers": _cp2k_handlers(),
            "validators": [Cp2kCompletedValidator()],
        }
        launched = False  # OMP_NUM_THREADS=1 behind an MPI launcher we chose
        if not self._command_from_settings:  # else atomate2's CP2K_CMD where the job runs
            run_cp2k_kwargs["cp2k_cmd"] = self._cp2k_cmd()
            launched = _launcher(run_cp2k_kwargs["cp2k_cmd"])
        return Cp2kRelaxMaker(
            name="cp2k defect relax",
            input_set_generator=generator,
            basis=s["basis"],
            potential=s["potential"],
            omp_threads=1 if launched else None,
            run_cp2k_kwargs=run_cp2k_kwargs,
            stop_children_kwargs={"handle_unsuccessful": False},
        )

    @property
    def _command_from_settings(self) -> bool:
        """Whether the job takes its command from atomate2's settings where it runs."""
        command = "vasp_cmd" if self.name == "vasp" else "cp2k_cmd"
        return bool(self.run_options.get("command_from_settings")) and (
            command not in self.run_options
        )

    def _vasp_cmd(self) -> str:
        from atomate2 import SETTINGS

        return str(self.run_options.get("vasp_cmd", SETTINGS.VASP_CMD))

    def _cp2k_cmd(self) -> str:
        if "cp2k_cmd" in self.run_options:
            return str(self.run_options["cp2k_cmd"])
        if self._command_from_settings:
            from atomate2 import SETTINGS

            return str(SETTINGS.CP2K_CMD)
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


def check_run_options(engine: str, run_options: dict[str, Any]) -> None:
    """Raise ValueError for run options that ``engine`` does not read (:data:`RUN_OPTIONS`)."""
    unknown = sorted(set(run_options) - set(RUN_OPTIONS[engine]))
    if unknown:
        raise ValueError(
            f"unknown run option(s) {unknown} for engine {engine!r}; "
            f"valid run options: {', '.join(RUN_OPTIONS[engine]) or 'none'}"
        )


def _check_setting_type(engine: str, key: str, value: Any, default: Any) -> None:
    """Raise ValueError unless ``value`` has the kind of its default: a number (not a bool)
    for a number, true/false for a flag, a mapping for a mapping (YAML reads ``5e-2`` as a
    string, ``~`` as null)."""
    if isinstance(default, bool):
        expected, ok = "true or false", isinstance(value, bool)
    elif isinstance(default, int | float):
        expected = "a number"
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, dict):
        expected, ok = "a mapping", isinstance(value, dict)
    else:
        return
    if not ok:
        raise ValueError(f"{engine} setting {key!r} must be {expected}, got {value!r}")


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
