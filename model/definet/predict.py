"""Predictor: load a checkpoint once, predict relaxed structures for many inputs, batched."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Element, Structure

from definet.checkpoint import file_sha256, load_model
from definet.data.graphs import structure_to_graph
from definet.data.hosts import structure_host_kind
from definet.data.markers import MARKER_KEY, VACANCY, mark_defects, markers_of
from definet.inference import pick_device, predicted_coordinates
from definet.nn.definet import OutOfDistributionWarning
from definet.scope import TrainingScope

__all__ = [
    "DEFAULT_CHECKPOINT",
    "OutOfDistributionWarning",
    "Predictor",
    "default_checkpoint",
    "resolve_checkpoint",
    "shipped_names",
]

log = logging.getLogger(__name__)
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "definet-default.pt"


def default_checkpoint() -> Path:
    """The shipped model; a clear error where the package ships none."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"no shipped DefiNet weights at {DEFAULT_CHECKPOINT}; pass a checkpoint "
            "(e.g. runs/<name>/best.pt from `definet train`)"
        )
    return DEFAULT_CHECKPOINT


def shipped_names() -> list[str]:
    """Names of the weights shipped in the package (``definet-default``, ``definet-chgnet``)."""
    return sorted(p.stem for p in DEFAULT_CHECKPOINT.parent.glob("*.pt"))


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """A checkpoint file, a shipped weights name (e.g. ``definet-chgnet``) or None (default).

    Raises
    ------
    FileNotFoundError
        Neither a file nor a shipped name; the message lists the shipped names.
    """
    if checkpoint is None:
        return default_checkpoint()
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    name = str(checkpoint)
    if not path.suffix and "/" not in name and "\\" not in name:
        shipped = DEFAULT_CHECKPOINT.with_name(f"{name}.pt")
        if shipped.is_file():
            return shipped
    raise FileNotFoundError(
        f"DefiNet checkpoint not found: {path} (shipped weights: {', '.join(shipped_names())})"
    )


class Predictor:
    """Relaxed structures from DefiNet in one forward pass.

    Parameters
    ----------
    checkpoint
        Model checkpoint; the shipped default model when omitted.
    device
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto") -> None:
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.device = pick_device(device)
        self.model, self.graph_settings, self.metadata = load_model(self.checkpoint)
        self.model.to(self.device)
        self.checkpoint_sha256 = file_sha256(self.checkpoint)
        self.scope = TrainingScope.from_metadata(self.metadata)

    def out_of_distribution(self, structure: Structure) -> str | None:
        """What of a marked structure the model never saw in training (``"element(s) ['Mg'];
        host Ga-N bulk"``), or None. Raises ValueError for elements outside its embedding."""
        return "; ".join(self._unseen(structure)[0]) or None

    def _unseen(self, structure: Structure) -> tuple[list[str], str | None]:
        """What of ``structure`` lies outside the training scope, and its host kind."""
        z = {site.specie.Z for site in structure}
        too_big = {s for s in z if s > self.model.config.max_z}
        if too_big:
            raise ValueError(
                f"{structure.composition.formula}: element(s) "
                f"{sorted(Element.from_Z(s).symbol for s in too_big)} outside the "
                f"model's embedding (Z <= {self.model.config.max_z})"
            )
        kind = structure_host_kind(structure)
        return self.scope.unseen(z, markers_of(structure), kind), kind

    def _warn_out_of_distribution(self, structure: Structure) -> str | None:
        """Warn when ``structure`` is out of distribution; what it names, or None."""
        unseen, kind = self._unseen(structure)
        if not unseen:
            return None
        markers = markers_of(structure)
        real = (s.species for s, m in zip(structure, markers, strict=True) if m != VACANCY)
        warnings.warn(
            f"{sum(real, Composition()).formula}: {'; '.join(unseen)} never seen in training "
            f"by {self.checkpoint.name}{self.scope.hosts_note([kind])}: prediction is out of "
            "distribution",
            OutOfDistributionWarning,
            stacklevel=4,
        )
        return "; ".join(unseen)

    def predict(
        self,
        structures: Sequence[Structure],
        pristine: Sequence[Structure] | None = None,
        batch_size: int = 32,
    ) -> list[Structure]:
        """Relaxed copies of ``structures``.

        Inputs are marked structures (site property ``defect_marker``, vacancy nodes appended);
        unmarked ones are marked against ``pristine`` (one ideal supercell per structure).
        Outputs have no vacancy nodes, real atoms in input order, same cell and site properties.
        """
        return self.predict_checked(structures, pristine, batch_size)[0]

    def predict_checked(
        self,
        structures: Sequence[Structure],
        pristine: Sequence[Structure] | None = None,
        batch_size: int = 32,
    ) -> tuple[list[Structure], list[str | None]]:
        """:meth:`predict`, and what of each structure the model never saw in training
        (:meth:`out_of_distribution`'s text, None where nothing), found in the same pass."""
        structures = list(structures)
        disordered = [s.composition.formula for s in structures if not s.is_ordered]
        if disordered:
            raise ValueError(
                f"partial occupancies in {', '.join(disordered)}: one element per site expected"
            )
        if pristine is not None:
            if len(pristine) != len(structures):
                raise ValueError(f"{len(structures)} structures but {len(pristine)} pristine cells")
            structures = [
                s if MARKER_KEY in s.site_properties else mark_defects(s, p)
                for s, p in zip(structures, pristine, strict=True)
            ]
        graphs, unseen = [], []
        for s in structures:
            unseen.append(self._warn_out_of_distribution(s))  # checks the markers too
            graphs.append(structure_to_graph(s, self.graph_settings))
        coords = predicted_coordinates(self.model, graphs, batch_size, self.device)
        relaxed = [self._relaxed(s, c.numpy()) for s, c in zip(structures, coords, strict=True)]
        return relaxed, unseen

    @staticmethod
    def _relaxed(marked: Structure, coords: np.ndarray) -> Structure:
        real = np.flatnonzero(markers_of(marked) != VACANCY)
        props = {k: [v[i] for i in real] for k, v in marked.site_properties.items()}
        return Structure(
            marked.lattice,
            [marked[i].species for i in real],
            coords[real],
            coords_are_cartesian=True,
            site_properties=props,
        )
