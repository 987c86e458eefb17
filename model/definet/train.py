"""Training loop: AdamW (amsgrad, optionally sharpness-aware), ReduceLROnPlateau or cosine,
clipping, EMA, early stopping, resume. Settings: :mod:`definet.train_config`; losses:
:mod:`definet.losses`.

A run directory holds ``last.pt`` (full training state, written every ``checkpoint_every`` steps
and at the end of each epoch), ``best.pt`` (EMA weights of the best validation score) and
``log.jsonl``. Restarting with the same directory resumes exactly where the last checkpoint left
off: the same batches follow, in the same order, and torch's random stream (dropout, noise)
goes on from where it was, so a killed run ends with the weights of an uninterrupted one. A
restart with other settings than the run's (:func:`changed_settings`) is refused.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from definet.allocator import keep_freed_memory
from definet.checkpoint import FORMAT_VERSION, model_payload, read_checkpoint, save_atomic
from definet.data.hosts import graph_host_kind
from definet.data.markers import DATASET_MARKERS, VACANCY
from definet.forcefield_loss import ForceFieldLoss, ForceFieldTerms
from definet.inference import (
    evaluate_graphs,
    pick_device,
    predict_batch,
    predict_layer_positions,
)
from definet.losses import host_loss_weights, training_loss
from definet.nn import DefiNet, load_pretrained
from definet.train_config import TrainConfig

log = logging.getLogger(__name__)


#: Settings a resumed run may change: where things are and when to stop, not what is trained.
RESUMABLE_CHANGES = frozenset(
    {
        "data_root",
        "out_dir",
        "cache_dir",
        "threads",
        "device",
        "skip_bad",
        "epochs",
        "max_steps",
        "max_hours",
        "early_stop_patience",
        "checkpoint_every",
    }
)


def changed_settings(stored: dict[str, Any], config: TrainConfig) -> list[str]:
    """``"name: old -> new"`` for each setting of ``config`` that differs from the ``stored``
    one of a run's ``last.pt`` (settings added since count as their defaults), apart from
    :data:`RESUMABLE_CHANGES`."""
    defaults = TrainConfig().as_dict()
    current = config.as_dict()
    changed = []
    for key, value in current.items():
        if key in RESUMABLE_CHANGES:
            continue
        old = stored.get(key, defaults[key])
        if isinstance(value, dict):  # model and graph: key by key
            old = {**defaults[key], **(old or {})}
            changed += [
                f"{key}.{k}: {old.get(k)!r} -> {v!r}" for k, v in value.items() if old.get(k) != v
            ]
        elif old != value:
            changed.append(f"{key}: {old!r} -> {value!r}")
    return changed


def cosine_lr(step: int, config: TrainConfig) -> float:
    """Learning rate at ``step`` of a cosine schedule: a pure function of the step, so resuming
    (or extending ``max_steps``) needs no scheduler state."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    total = max(1, (config.max_steps or 1) - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / total)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def noisy_start(batch: Data, sigma: float) -> torch.Tensor:
    """Unrelaxed coordinates with Gaussian noise of ``sigma`` A on every real atom (a new
    tensor: the dataset's graphs are never changed); vacancy nodes stay at their sites."""
    real = (batch.marker != VACANCY).unsqueeze(-1).to(batch.pos.dtype)
    return batch.pos + sigma * torch.randn_like(batch.pos) * real


def denoising_start(batch: Data, fraction: float, sigma: float) -> torch.Tensor:
    """Starting coordinates where a random ``fraction`` of the batch's structures start from
    their relaxed coordinates plus Gaussian noise of ``sigma`` A on every real atom (a new
    tensor); the others, and every vacancy node, keep their unrelaxed start."""
    chosen = torch.rand(batch.num_graphs, device=batch.pos.device) < fraction
    moved = (chosen[batch.batch] & (batch.marker != VACANCY)).unsqueeze(-1)
    noisy = batch.y.to(batch.pos.dtype) + sigma * torch.randn_like(batch.pos)
    return torch.where(moved, noisy, batch.pos)


def path_start(batch: Data, fraction: float) -> torch.Tensor:
    """Starting coordinates where a random ``fraction`` of the batch's structures start at a
    uniformly drawn point of the straight path from their unrelaxed to their relaxed
    coordinates (a new tensor); the others, and every vacancy node, keep their start."""
    n = batch.num_graphs
    chosen = torch.rand(n, device=batch.pos.device) < fraction
    t = torch.rand(n, device=batch.pos.device, dtype=batch.pos.dtype) * chosen
    t = torch.where(batch.marker != VACANCY, t[batch.batch], 0.0).unsqueeze(-1)
    return batch.pos + t * (batch.y.to(batch.pos.dtype) - batch.pos)


class Trainer:
    """Owns the loop; ``fit()`` trains from scratch or resumes from ``out_dir/last.pt``."""

    def __init__(
        self,
        config: TrainConfig,
        train_graphs: Sequence[Data],
        val_graphs: Sequence[Data],
        progress: bool = True,
    ) -> None:
        if not train_graphs:
            raise ValueError("no training structures")
        if not val_graphs:
            raise ValueError("no validation structures")
        self.config = config
        self.train_graphs = list(train_graphs)
        self.val_graphs = list(val_graphs)
        self.progress = progress
        self.out_dir = Path(config.out_dir)
        self.device = pick_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        keep_freed_memory()
        torch.manual_seed(config.seed)
        self.model = DefiNet(config.model).to(self.device)
        if config.init_from:
            from definet.checkpoint import load_model

            pretrained, _, pretrained_meta = load_model(config.init_from)
            if not isinstance(pretrained, DefiNet):
                raise ValueError(
                    f"init_from: {config.init_from} combines several models (routed or averaged); "
                    "fine-tune from one of them (e.g. a training checkpoint named in its model card)"
                )
            load_pretrained(self.model, pretrained, source=f"init_from: {config.init_from}")
        self.force_field = (
            ForceFieldLoss.named(config.loss_force_field, self.device)
            if config.uses_force_field
            else None
        )
        self.host_weights = (
            host_loss_weights(self.train_graphs) if config.host_balanced_loss else None
        )
        self.n_teacher_labelled = 0
        if config.teacher:
            self.add_teacher_labelled()
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay, amsgrad=True
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=config.plateau_factor,
            patience=config.plateau_patience,
            min_lr=config.min_lr,
        )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_val = math.inf
        self.bad_validations = 0
        self.elapsed = 0.0
        self.history_hosts = sorted({g.host for g in self.train_graphs})
        self.elements = sorted({int(z) for g in self.train_graphs for z in g.z.unique()})
        self.host_kinds: list[str] | None = sorted(
            {graph_host_kind(g) for g in self.train_graphs} - {None}
        )
        self.markers = sorted({int(m) for g in self.train_graphs for m in g.marker.unique()})
        if config.init_from:  # a fine-tuned model still knows what it was pre-trained on
            self.history_hosts = sorted(
                set(self.history_hosts) | set(pretrained_meta.get("hosts", []))
            )
            self.elements = sorted(set(self.elements) | set(pretrained_meta.get("elements", [])))
            # a pre-trained model that recorded no host kinds knows its hosts by folder name
            # only: record none, so that predictions check both by folder name
            pretrained_kinds = pretrained_meta.get("host_kinds")
            self.host_kinds = (
                None
                if pretrained_kinds is None
                else sorted(set(self.host_kinds) | set(pretrained_kinds))
            )
            self.markers = sorted(
                set(self.markers) | set(pretrained_meta.get("markers", DATASET_MARKERS))
            )

    def add_teacher_labelled(self) -> None:
        """Join the teacher-labelled copies (cached in ``out_dir``) to the training graphs;
        every training graph gets its loss weight (1 for DFT targets, ``teacher_weight``)."""
        from definet.distill import cached_teacher_labelled

        c = self.config
        labelled = cached_teacher_labelled(
            self.out_dir / "teacher-labels.pt",
            c.teacher,
            self.train_graphs,
            c.teacher_copies,
            c.graph,
            c.seed,
        )
        dft = [g.clone() for g in self.train_graphs]
        for graphs, weight in ((dft, 1.0), (labelled, c.teacher_weight)):
            for g in graphs:
                g.target_weight = torch.tensor([weight])
        self.train_graphs = dft + labelled
        self.n_teacher_labelled = len(labelled)

    # ----------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": "definet-train-state",
            "model_config": self.config.model.as_dict(),
            "graph_settings": self.config.graph.as_dict(),
            "state_dict": self.model.state_dict(),
            "ema_state_dict": self.ema.module.state_dict(),
            "ema_n_averaged": self.ema.n_averaged.clone(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_val": self.best_val,
            "bad_validations": self.bad_validations,
            "elapsed": self.elapsed,
            "rng_state": torch.get_rng_state(),
            "train_config": json.dumps(self.config.as_dict()),
            "metadata": self.metadata(),
        }

    def load_state(self, path: Path) -> None:
        payload = read_checkpoint(path)
        changed = changed_settings(json.loads(payload["train_config"]), self.config)
        if changed:
            raise ValueError(
                f"{path}: this run was started with other settings ({'; '.join(changed)}); "
                "resume it with its own config, or train into another out_dir"
            )
        self.model.load_state_dict(payload["state_dict"])
        self.ema.module.load_state_dict(payload["ema_state_dict"])
        self.ema.n_averaged.copy_(payload["ema_n_averaged"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        for key in ("step", "epoch", "batch_in_epoch", "best_val", "bad_validations", "elapsed"):
            setattr(self, key, payload[key])
        if "rng_state" in payload:  # dropout and noise go on as if never interrupted
            torch.set_rng_state(payload["rng_state"])
        log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.epoch)

    def metadata(self, val: dict | None = None) -> dict[str, Any]:
        kinds = {} if self.host_kinds is None else {"host_kinds": self.host_kinds}
        return {
            "hosts": self.history_hosts,
            "elements": self.elements,
            **kinds,
            "markers": self.markers,
            "n_train": len(self.train_graphs) - self.n_teacher_labelled,
            "n_teacher_labelled": self.n_teacher_labelled,
            "n_val": len(self.val_graphs),
            "steps": self.step,
            "epochs": self.epoch,
            "train_seconds": round(self.elapsed, 1),
            "n_parameters": sum(p.numel() for p in self.model.parameters()),
            "validation": val or {},
        }

    def save_last(self) -> None:
        save_atomic(self.state(), self.out_dir / "last.pt")

    def log(self, record: dict[str, Any]) -> None:
        record = {"time": time.time(), "step": self.step, "epoch": self.epoch, **record}
        with open(self.out_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ loop
    def epoch_loader(self, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return DataLoader(
            self.train_graphs, batch_size=self.config.batch_size, shuffle=True, generator=generator
        )

    def validation_force_field_terms(self) -> dict[str, float]:
        """Force-field terms of the EMA model's validation predictions (means per structure)."""
        self.ema.module.eval()
        forces = bool(self.config.force_loss_weight)
        totals = {"val_excess_energy": 0.0, "val_residual_force": 0.0}
        for batch in DataLoader(self.val_graphs, batch_size=16):
            batch = batch.to(self.device)
            with torch.no_grad():
                pred = predict_batch(self.ema.module, batch)
            with torch.enable_grad():  # forces are gradients of the force field's energy
                terms = self.force_field(pred, batch, forces)
            totals["val_excess_energy"] += terms.excess_energy.item() * batch.num_graphs
            if forces:
                totals["val_residual_force"] += terms.residual_force.item() * batch.num_graphs
        n = len(self.val_graphs)
        return {k: v / n for k, v in totals.items() if forces or k == "val_excess_energy"}

    def validate(self) -> dict:
        """Score the EMA model on the validation split; keep it as ``best.pt`` if it improved.

        The score is the validation MAE plus the weighted force-field terms when they are
        trained on: the training objective, measured on held-out data.
        """
        result = evaluate_graphs(self.ema.module, self.val_graphs, device=self.device)
        val_mae = result["overall"]["mae"]
        extra: dict[str, float] = {}
        score = result["overall"]["mean_host_ratio"] if self.host_weights else val_mae
        if self.force_field:
            extra = self.validation_force_field_terms()
            terms = ForceFieldTerms(extra["val_excess_energy"], extra.get("val_residual_force"))
            score = val_mae + float(self.config.force_field_objective(terms))
            extra["val_score"] = score
        if self.config.schedule == "plateau":
            self.scheduler.step(score)
        improved = score < self.best_val
        if improved:
            self.best_val = score
            self.bad_validations = 0
            payload = model_payload(
                self.ema.module,
                self.config.graph,
                state_dict=self.ema.module.state_dict(),
                metadata=self.metadata(result),
            )
            save_atomic(payload, self.out_dir / "best.pt")
        else:
            self.bad_validations += 1
        self.log(
            {
                "event": "val",
                "val_mae": val_mae,
                **extra,
                "improved": improved,
                "lr": self.optimizer.param_groups[0]["lr"],
                "hosts": result["hosts"],
            }
        )
        return result

    def batch_loss(self, batch: Data) -> tuple[torch.Tensor, ForceFieldTerms | None]:
        """The training objective of one batch, and its force-field terms when trained on."""
        c = self.config
        if c.layer_loss_weight:
            *inner, pred = predict_layer_positions(self.model, batch)
        else:
            inner, pred = [], predict_batch(self.model, batch)
        loss = training_loss(pred, batch, c.bond_loss_weight, self.host_weights, c.coordinate_loss)
        if inner:
            inner_loss = sum(
                training_loss(x, batch, 0.0, self.host_weights, c.coordinate_loss) for x in inner
            )
            loss = loss + c.layer_loss_weight * inner_loss / len(inner)
        terms = (
            self.force_field(pred, batch, forces=bool(c.force_loss_weight))
            if self.force_field
            else None
        )
        if terms is not None:
            loss = loss + c.force_field_objective(terms)
        return loss, terms

    def sharpness_aware_gradient(self, batch: Data) -> None:
        """Replace the gradients by those taken ``sam_rho`` up the gradient (SAM's step);
        the weights are restored, only their gradients change."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        scale = self.config.sam_rho / (norm + 1e-12)
        with torch.no_grad():
            ascent = [p.grad * scale for p in params]
            for p, e in zip(params, ascent, strict=True):
                p.add_(e)
        self.optimizer.zero_grad(set_to_none=True)
        self.batch_loss(batch)[0].backward()
        with torch.no_grad():
            for p, e in zip(params, ascent, strict=True):
                p.sub_(e)

    def train_step(
        self, batch: Data, mark: Callable[[str], None] | None = None
    ) -> tuple[torch.Tensor, ForceFieldTerms | None]:
        """One optimisation step on ``batch`` (on the device): the config's learning rate and
        perturbed starts, forward and loss, backward (SAM's second pass included), clipping and
        AdamW, EMA update. ``mark(phase)`` is called after each of ``forward``, ``backward``,
        ``optimizer`` and ``ema`` (``benchmarks/model_speed.py`` times them)."""
        c = self.config
        mark = mark or (lambda _phase: None)
        if c.schedule == "cosine":
            for group in self.optimizer.param_groups:
                group["lr"] = cosine_lr(self.step, c)
        if c.position_noise:
            batch.pos = noisy_start(batch, c.position_noise)
        if c.denoise_fraction:
            batch.pos = denoising_start(batch, c.denoise_fraction, c.denoise_noise)
        if c.path_fraction:
            batch.pos = path_start(batch, c.path_fraction)
        loss, terms = self.batch_loss(batch)
        mark("forward")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if c.sam_rho:
            self.sharpness_aware_gradient(batch)
        mark("backward")
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        mark("optimizer")
        self.ema.update_parameters(self.model)
        mark("ema")
        self.step += 1
        return loss, terms

    def done(self) -> bool:
        c = self.config
        return (
            self.epoch >= c.epochs
            or (c.max_steps is not None and self.step >= c.max_steps)
            or (c.max_hours is not None and self.elapsed >= c.max_hours * 3600)
            or self.bad_validations >= c.early_stop_patience
        )

    def fit(self) -> Path:
        """Train until done; returns the path of the best (EMA) model checkpoint."""
        from definet.progress import progress_bar

        self.out_dir.mkdir(parents=True, exist_ok=True)
        last = self.out_dir / "last.pt"
        if last.exists():
            self.load_state(last)
        else:
            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(self.config.as_dict()))
            if self.host_weights:
                self.log({"event": "host_weights", "weights": self.host_weights})
        c = self.config
        bar = progress_bar(enabled=self.progress, total=c.max_steps, initial=self.step, unit="step")
        while not self.done():
            self.model.train()
            loader = self.epoch_loader(self.epoch)
            for i, batch in enumerate(loader):
                if i < self.batch_in_epoch:
                    continue  # resuming mid-epoch: skip what was already trained on
                start = time.perf_counter()
                loss, terms = self.train_step(batch.to(self.device))
                self.batch_in_epoch = i + 1
                self.elapsed += time.perf_counter() - start
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", epoch=self.epoch, refresh=False)
                if self.step % 20 == 0:
                    self.log(
                        {
                            "event": "train",
                            "loss": loss.item(),
                            "lr": self.optimizer.param_groups[0]["lr"],
                        }
                        | (
                            {k: v.item() for k, v in terms._asdict().items() if v is not None}
                            if terms is not None
                            else {}
                        )
                    )
                if c.val_every and self.step % c.val_every == 0:
                    self.validate()
                if self.step % c.checkpoint_every == 0:
                    self.save_last()
                if self.done():
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
                if not c.val_every:
                    self.validate()
            self.save_last()
        bar.close()
        if not (self.out_dir / "best.pt").exists():
            self.validate()
        return self.out_dir / "best.pt"


def train_from_config(config: TrainConfig, progress: bool = True) -> Path:
    """Load the data named by ``config`` and train; returns the best checkpoint's path."""
    from definet.data.dataset import load_split

    cache = Path(config.cache_dir) if config.cache_dir else None
    common = dict(
        settings=config.graph,
        hosts=config.hosts,
        cache_dir=cache,
        skip_bad=config.skip_bad,
        progress=progress,
    )
    train = load_split(config.data_root, "train", **common)
    val = load_split(config.data_root, "val", **common)
    if config.max_per_host:
        train, val = (
            _cap_per_host(train, config.max_per_host, config.seed),
            _cap_per_host(val, max(1, config.max_per_host // 8), config.seed),
        )
    return Trainer(config, train, val, progress=progress).fit()


def _cap_per_host(graphs: Sequence[Data], cap: int, seed: int) -> list[Data]:
    rng = np.random.default_rng(seed)
    by_host: dict[str, list[Data]] = {}
    for g in graphs:
        by_host.setdefault(g.host, []).append(g)
    out = []
    for items in by_host.values():
        idx = rng.permutation(len(items))[:cap]
        out.extend(items[i] for i in sorted(idx))
    return out
