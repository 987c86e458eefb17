"""Training settings: :class:`TrainConfig`, read from YAML with ``extends`` chains resolved."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from definet.data.graphs import GraphSettings
from definet.forcefield_loss import FORCE_FIELDS, ForceFieldTerms
from definet.losses import COORDINATE_LOSSES
from definet.nn import DefiNetConfig

#: Learning-rate schedules: ``plateau`` halves on stalled validation MAE; ``cosine`` decays from
#: ``lr`` to ``min_lr`` over ``max_steps`` (after ``warmup_steps`` of linear warm-up).
SCHEDULES = ("plateau", "cosine")


@dataclass
class TrainConfig:
    """Everything a training run needs; ``definet train --config FILE.yaml`` reads this."""

    data_root: str = "../shared/data/definet-dataset"
    out_dir: str = "runs/definet"
    hosts: list[str] | None = None
    max_per_host: int | None = None
    model: DefiNetConfig = field(default_factory=DefiNetConfig)
    graph: GraphSettings = field(default_factory=GraphSettings)
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 100
    max_steps: int | None = None
    max_hours: float | None = None
    grad_clip: float = 10.0
    ema_decay: float = 0.999
    schedule: str = "plateau"
    warmup_steps: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    min_lr: float = 1e-5
    early_stop_patience: int = 10
    val_every: int | None = None
    checkpoint_every: int = 200
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    cache_dir: str | None = None
    skip_bad: bool = False
    init_from: str | None = None
    #: Weight of :func:`definet.losses.bond_loss` added to the coordinate loss (0: coordinates
    #: only). Forces follow from neighbour separations, so stiff hosts (hBN) need them more
    #: precise than MAE.
    bond_loss_weight: float = 0.0
    #: How each atom's coordinate error enters the loss (:data:`definet.losses.COORDINATE_LOSSES`):
    #: ``l1``, the metric's own per-component absolute error, or ``euclidean``, the length of
    #: the atom's error vector.
    coordinate_loss: str = "l1"
    #: Standard deviation (A) of Gaussian noise added to the unrelaxed coordinates of the real
    #: atoms of every training batch (targets unchanged; 0: none). Every epoch then shows the
    #: model new starting points around each structure, a regulariser against memorising them.
    position_noise: float = 0.0
    #: Divide each training atom's error by its host's do-nothing MAE on the training structures
    #: (rescaled so that doing nothing still scores the overall do-nothing MAE). The loss then
    #: follows the per-host ratio the accuracy target is stated in, instead of favouring the
    #: hosts whose atoms move most; validation scores the mean per-host ratio to match.
    host_balanced_loss: bool = False
    #: Weights of the force-field terms (:mod:`definet.forcefield_loss`) under
    #: ``loss_force_field``: the predictions' energy above the target (A per eV/atom) and their
    #: mean residual force (A per eV/A). Errors along stiff modes cost more. Use them only where
    #: that force field made the targets (pipeline data relaxed with CHGNet), not on DFT data.
    energy_loss_weight: float = 0.0
    force_loss_weight: float = 0.0
    loss_force_field: str = "CHGNet"
    #: Denoising examples: this fraction of each batch's structures starts from its relaxed
    #: coordinates plus Gaussian noise of ``denoise_noise`` A on every real atom (target still
    #: the relaxed structure), so the model also learns to restore relaxed environments
    #: (0: none).
    denoise_fraction: float = 0.0
    denoise_noise: float = 0.1
    #: Partly relaxed starts: this fraction of each batch's structures starts at a random point
    #: of the straight path from its unrelaxed to its relaxed coordinates (a fraction drawn
    #: uniformly from [0, 1) per structure; target still the relaxed structure), so the model
    #: also learns to finish a relaxation that is under way (0: none).
    path_fraction: float = 0.0
    #: Sharpness-aware minimisation (Foret et al., ICLR 2021): radius of the weight step up the
    #: gradient at which each batch's gradient is taken (0: plain AdamW). Flatter minima are
    #: meant to generalise better; each step costs two forward and backward passes.
    sam_rho: float = 0.0
    #: Deep supervision: the coordinate loss of every layer but the last, averaged over those
    #: layers, is added with this weight, so that each layer's coordinates aim at the relaxed
    #: structure (0: the last layer's only).
    layer_loss_weight: float = 0.0
    #: Checkpoint(s) of a teacher (several are averaged): ``teacher_copies`` defect-shuffled
    #: copies of every training structure (:mod:`definet.distill`), labelled by its
    #: predictions, join the DFT-labelled ones, their errors weighted by ``teacher_weight``.
    teacher: str | list[str] | None = None
    teacher_copies: int = 4
    teacher_weight: float = 1.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(
                f"unknown training setting(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        raw = dict(raw)
        raw["model"] = DefiNetConfig(**raw.get("model", {}))
        raw["graph"] = GraphSettings(**raw.get("graph", {}))
        config = cls(**raw)
        if config.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {config.schedule!r}")
        if config.coordinate_loss not in COORDINATE_LOSSES:
            raise ValueError(
                f"coordinate_loss must be one of {COORDINATE_LOSSES}, "
                f"got {config.coordinate_loss!r}"
            )
        for name in (
            "bond_loss_weight",
            "energy_loss_weight",
            "force_loss_weight",
            "position_noise",
            "sam_rho",
            "layer_loss_weight",
            "denoise_fraction",
            "denoise_noise",
            "path_fraction",
            "teacher_copies",
            "teacher_weight",
        ):
            if getattr(config, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
        for name in ("batch_size", "checkpoint_every", "epochs"):
            if getattr(config, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
        reach = max(config.graph.cutoff, config.graph.defect_cutoff)
        if config.model.cutoff < reach:
            raise ValueError(
                f"model cutoff {config.model.cutoff} A is shorter than the graph's edges "
                f"({reach} A): give the model the graph's cutoff (model: {{cutoff: {reach}}}), "
                "or edges beyond it would still send messages through the radial bias"
            )
        if config.teacher and config.graph.defect_cutoff:
            raise ValueError(
                "teacher copies move the defects but keep each graph's edges: not with "
                "graph.defect_cutoff, whose edges start at the defects"
            )
        for name in ("denoise_fraction", "path_fraction"):
            if getattr(config, name) > 1:
                raise ValueError(f"{name} must be <= 1, got {getattr(config, name)}")
        if config.uses_force_field and config.loss_force_field not in FORCE_FIELDS:
            raise ValueError(
                f"loss_force_field must be one of {FORCE_FIELDS}, got {config.loss_force_field!r}"
            )
        if config.schedule == "cosine" and not config.max_steps:
            raise ValueError("schedule 'cosine' needs max_steps (the length of the decay)")
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML config. ``extends: <file>`` (relative to this one) starts from another
        config and overrides its keys; ``model`` and ``graph`` are merged key by key."""
        path = Path(path)
        raw = read_config_settings(path)
        try:
            config = cls.from_dict(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        if not Path(config.data_root).is_absolute():
            config.data_root = (
                str((path.parent / config.data_root).resolve())
                if (path.parent / config.data_root).exists()
                else config.data_root
            )
        return config

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def uses_force_field(self) -> bool:
        return bool(self.energy_loss_weight or self.force_loss_weight)

    def force_field_objective(self, terms: ForceFieldTerms) -> torch.Tensor | float:
        """The weighted force-field terms added to the coordinate loss."""
        total = self.energy_loss_weight * terms.excess_energy
        if self.force_loss_weight:
            total = total + self.force_loss_weight * terms.residual_force
        return total


def read_config_settings(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The settings of a YAML training config with its ``extends`` chain resolved."""
    if path.resolve() in seen:
        raise ValueError(f"{path}: 'extends' loops back to this file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read training config ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a training config is a mapping of settings")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    merged = read_config_settings(path.parent / base, (*seen, path.resolve()))
    for key, value in raw.items():
        nested = key in ("model", "graph") and isinstance(value, dict)
        merged[key] = {**merged.get(key, {}), **value} if nested else value
    return merged
