"""ValidationSpec: everything one validation run needs, from Python, YAML or the CLI.

    spec = ValidationSpec.from_yaml("workflows/validate-mos2.yaml")
    spec = ValidationSpec(host="MoS2", supercell="4x4", n=20, engine="forcefield")

Names (host, dopants, engine, engine settings) are checked when the spec is made, so a typo
fails before any defect is generated or any model is loaded; each error names the field (and
the file, from YAML) and lists the valid values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pymatgen.core import Element

if TYPE_CHECKING:
    from maggma.core import Store

    from definet_flows.defects import DefectSupercellMaker
    from definet_flows.engines import RelaxEngine

__all__ = ["ValidationSpec", "default_defect_counts"]


def default_defect_counts(
    vacancies: bool | list[str], dopants: list[str] | dict[str, list[str]] | None, elements
) -> dict[str, int]:
    """Multi-defect draw used when a spec gives neither ``defect_counts`` nor a density.

    One defect of each requested single kind per supercell (``v_X`` for each vacancy element,
    ``D_X`` for each dopant D on host element X); twice that kind when only one is requested,
    so that the draws differ from the single defects.
    """
    elements = sorted(elements)
    vac = elements if vacancies is True else list(vacancies or [])
    counts = {f"v_{el}": 1 for el in vac if el in elements}
    if isinstance(dopants, dict):
        pairs = [(d, el) for el, ds in dopants.items() for d in ds]
    else:
        pairs = [(d, el) for d in dopants or [] for el in elements if d != el]
    counts |= {f"{d}_{el}": 1 for d, el in pairs}
    if len(counts) == 1:
        counts = {name: 2 for name in counts}
    return counts


class ValidationSpec(BaseModel):
    """A DefiNet validation run: which defects, which engine, which weights, which store."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        description="Built-in host name (MoS2, WSe2, hBN, GaSe, InSe, BP, Si, GaN) or a "
        "structure file (CIF, POSCAR, ...) of the host unit cell."
    )
    supercell: str | int | list | None = Field(
        None,
        description="Supercell, e.g. '4x4' (2D hosts are never repeated along c), '3x3x3' or "
        "a 3x3 integer matrix; None picks the smallest cell with min_length.",
    )
    min_length: float = Field(
        10.0, gt=0, description="Minimum distance (A) between periodic images (no supercell)."
    )
    n: int = Field(
        20,
        ge=1,
        description="Number of defect supercells to validate: the symmetry-distinct single "
        "defects first, then random multi-defect draws.",
    )
    vacancies: bool | list[str] = Field(
        True, description="Single vacancies: True for every element, a list of elements, False."
    )
    dopants: list[str] | dict[str, list[str]] | None = Field(
        None,
        description="Substitutions: dopants on every host element, or {host_element: [dopants]}.",
    )
    defect_counts: dict[str, int] | None = Field(
        None,
        description="Multi-defect draws, e.g. {'v_S': 2, 'W_Mo': 1}; when neither this nor "
        "defect_density is given, one of each requested single kind per draw.",
    )
    defect_density: dict[str, float] | None = Field(
        None, description="Multi-defect draws by sublattice fraction, e.g. {'v_S': 0.05}."
    )
    seed: int = Field(0, description="Seed of the multi-defect draws.")
    engine: str = Field("forcefield", description="Relaxation engine: forcefield, vasp or cp2k.")
    engine_settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the engine's default settings (identical for both starts), "
        "e.g. {'force_field': 'CHGNet', 'fmax': 0.05, 'max_steps': 500}.",
    )
    run_options: dict[str, Any] = Field(
        default_factory=dict,
        description="How the engine runs where the jobs run, never part of a key, e.g. "
        "{'cp2k_cmd': 'srun cp2k.psmp'} or {'vasp_cmd': 'srun vasp_std'} (see "
        "definet_flows.engines.RUN_OPTIONS). Cluster submissions without a command take "
        "atomate2's VASP_CMD / CP2K_CMD setting of the compute node.",
    )
    checkpoint: str | None = Field(
        None,
        description="DefiNet checkpoint file or shipped weights name (e.g. definet-chgnet); "
        "None uses the shipped default weights.",
    )
    batch_size: int = Field(32, ge=1, description="Structures per DefiNet forward pass.")
    store: str = Field(
        "definet_results",
        description="Directory of the embedded results store, or a store config file "
        "(YAML/JSON, e.g. MongoDB; see definet_flows.stores.store_from_config).",
    )

    # -- validation -----------------------------------------------------------------------

    @field_validator("host")
    @classmethod
    def _known_host(cls, value: str) -> str:
        from definet_flows.hosts import get_host

        if Path(value).expanduser().is_file():
            return value
        if any(sep in value for sep in ("/", "\\")) or Path(value).suffix:
            raise ValueError(f"host structure file not found: {value}")
        get_host(value)  # raises, listing the built-in hosts
        return value

    @field_validator("supercell", mode="before")
    @classmethod
    def _integer_supercell(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)  # "3" from the CLI means 3x3x3 (3x3 for 2D hosts)
        return value

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        from definet_flows.engines import ENGINES

        if value not in ENGINES:
            raise ValueError(
                f"unknown relaxation engine {value!r}; valid engines: {', '.join(ENGINES)}"
            )
        return value

    @field_validator("dopants")
    @classmethod
    def _elements(cls, value: Any) -> Any:
        symbols = [d for ds in value.values() for d in ds] if isinstance(value, dict) else value
        symbols = list(symbols or []) + (list(value) if isinstance(value, dict) else [])
        bad = [s for s in symbols if not Element.is_valid_symbol(s)]
        if bad:
            raise ValueError(f"not chemical elements: {', '.join(map(repr, bad))}")
        return value

    @field_validator("vacancies")
    @classmethod
    def _vacancy_elements(cls, value: Any) -> Any:
        if isinstance(value, list):
            bad = [s for s in value if not Element.is_valid_symbol(s)]
            if bad:
                raise ValueError(f"not chemical elements: {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="after")
    def _check_engine_settings_and_supercell(self) -> ValidationSpec:
        from definet_flows.engines import RelaxEngine, check_run_options

        try:
            RelaxEngine(self.engine, dict(self.engine_settings))  # unknown settings raise
        except ValueError as exc:
            raise ValueError(f"field 'engine_settings': {exc}") from None
        try:
            check_run_options(self.engine, self.run_options)
        except ValueError as exc:
            raise ValueError(f"field 'run_options': {exc}") from None
        self._check_defect_elements()
        if self.supercell is not None:
            from definet_flows.defects import parse_supercell
            from definet_flows.hosts import HOSTS, get_host

            builtin = not Path(self.host).expanduser().is_file()
            two_d = builtin and HOSTS[get_host(self.host).name][1]
            try:
                parse_supercell(self.supercell, is_2d=two_d)
            except ValueError as exc:
                raise ValueError(f"field 'supercell': {exc}") from None
        return self

    def _check_defect_elements(self) -> None:
        """Every element the defect fields name as a host site is one of the host's."""
        from definet_flows.defects import parse_defect_name
        from definet_flows.hosts import load_host

        host = load_host(self.host)
        elements = sorted(host.structure.symbol_set)
        named = {
            "vacancies": self.vacancies if isinstance(self.vacancies, list) else [],
            "dopants": list(self.dopants) if isinstance(self.dopants, dict) else [],
        }
        for field, sites in named.items():
            missing = [el for el in sites if el not in elements]
            if missing:
                raise ValueError(
                    f"field '{field}': {', '.join(missing)} not in host {host.name} "
                    f"(elements {', '.join(elements)})"
                )
        for field in ("defect_counts", "defect_density"):
            for name in getattr(self, field) or {}:
                try:
                    parse_defect_name(name, elements)
                except ValueError as exc:
                    raise ValueError(f"field '{field}': {exc}") from None

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | Path) -> ValidationSpec:
        """Read a spec from a YAML file (keys are the fields of this class).

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            Unreadable YAML, not a mapping, or invalid fields; the message names the file
            and every offending field.
        """
        raw = read_yaml_mapping(path, "validation spec", "a mapping of spec fields")
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "validation spec") -> ValidationSpec:
        """Validate a dict of fields; errors name ``source`` and each offending field."""
        try:
            return cls(**raw)
        except ValidationError as exc:
            raise ValueError(f"{source}: {_describe(exc)}") from None
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    # -- what the spec builds -------------------------------------------------------------

    def relax_engine(self) -> RelaxEngine:
        """The relaxation engine with its complete settings."""
        from definet_flows.engines import RelaxEngine

        return RelaxEngine(self.engine, dict(self.engine_settings), dict(self.run_options))

    def multi_defect_counts(self) -> dict[str, int] | None:
        """``defect_counts``, or the default draw (see :func:`default_defect_counts`)."""
        if self.defect_counts or self.defect_density:
            return self.defect_counts
        from definet_flows.hosts import load_host

        elements = load_host(self.host).structure.symbol_set
        return default_defect_counts(self.vacancies, self.dopants, elements) or None

    def defect_maker(self) -> DefectSupercellMaker:
        """The DefectSupercellMaker of this spec (draws ``n`` multi-defect configurations)."""
        from definet_flows.defects import DefectSupercellMaker

        return DefectSupercellMaker(
            supercell=self.supercell,
            min_length=self.min_length,
            vacancies=self.vacancies,
            dopants=self.dopants,
            defect_counts=self.multi_defect_counts(),
            defect_density=self.defect_density,
            n_configs=self.n,
            seed=self.seed,
        )

    @property
    def store_is_config(self) -> bool:
        """Whether ``store`` names a store config file (else a directory)."""
        return Path(self.store).expanduser().is_file()

    def results_store(self) -> Store:
        """The results store (not connected): the embedded store or the configured one."""
        from definet_flows.stores import open_store

        return open_store(self.store)


def read_yaml_mapping(path: str | Path, what: str, expected: str) -> dict[str, Any]:
    """The mapping in a YAML file; errors name the file (``what`` when it is missing)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected {expected}, got {type(raw).__name__}")
    return raw


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            valid = ", ".join(ValidationSpec.model_fields)
            msg = f"unknown field (valid fields: {valid})"
        if err["type"] == "missing":
            msg = "required"
        parts.append(f"field '{loc}': {msg}" if loc else msg)
    return "; ".join(parts)
