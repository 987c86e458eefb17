"""Force-field names: atomate2's MLFF names, ASE calculator import paths and their aliases,
and the python package each needs."""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_FORCE_FIELD", "canonical_force_field", "force_field_module", "short_name"]

#: The force field of the ``forcefield`` engine when none is named.
DEFAULT_FORCE_FIELD = "CHGNet"

#: Short names for ASE calculators accepted as ``force_field``.
FORCE_FIELD_ALIASES = {
    "EMT": "ase.calculators.emt.EMT",
    "LennardJones": "ase.calculators.lj.LennardJones",
}

#: MLFF name -> (python module to import, pip package that provides it).
MLFF_PACKAGES = {
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


def canonical_force_field(spec: Any) -> str:
    """'CHGNet', 'MLFF.CHGNet', {'@module': m, '@callable': c} or 'm.c' -> one string."""
    if spec is None:
        return DEFAULT_FORCE_FIELD
    if isinstance(spec, dict):
        cls_key = "@callable" if "@callable" in spec else "@class"
        return f"{spec['@module']}.{spec[cls_key]}"
    spec = str(getattr(spec, "value", spec))
    spec = FORCE_FIELD_ALIASES.get(spec, spec)
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
        f"an ASE calculator import path, or one of {sorted(FORCE_FIELD_ALIASES)}"
    )


def short_name(force_field: str) -> str:
    """The last part of a force field's name (``ase.calculators.emt.EMT`` -> ``EMT``)."""
    return force_field.rsplit(".", 1)[-1]


def force_field_module(force_field: str) -> tuple[str, str]:
    """Python module a force field needs and the pip package that provides it."""
    if force_field in MLFF_PACKAGES:
        return MLFF_PACKAGES[force_field]
    module = force_field.rsplit(".", 1)[0]
    return module, module.split(".", 1)[0]
