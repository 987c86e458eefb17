"""DefiNet prediction as a jobflow job: one job relaxes a whole batch of defect structures.

The job loads the checkpoint once and runs :class:`definet.Predictor` batched over every
marked structure it is given; its output records which weights predicted (path and sha256),
how long it took, and how far each structure moved.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field
from pymatgen.core import Structure

from definet.data.markers import strip_vacancies

if TYPE_CHECKING:
    from definet_flows.defects import DefectEntry

__all__ = ["DefiNetPredictMaker", "DefiNetPredictionDoc", "checkpoint_path", "displacements"]


def checkpoint_path(checkpoint: str | Path | None) -> Path:
    """Return the checkpoint file: a path, a shipped weights name, or the default when None.

    Raises
    ------
    FileNotFoundError
        If the file does not exist (or the package ships no such weights).
    """
    from definet.predict import resolve_checkpoint

    return resolve_checkpoint(checkpoint).resolve()


def displacements(start: Structure, predicted: Structure) -> np.ndarray:
    """Minimum-image displacement lengths (A) of the real atoms from ``start`` to ``predicted``.

    ``start`` may be a marked structure with vacancy nodes (they are dropped first).
    """
    start = strip_vacancies(start)
    if len(start) != len(predicted):
        raise ValueError(f"{len(start)} real atoms in the start, {len(predicted)} predicted")
    d = predicted.frac_coords - start.frac_coords
    d -= np.round(d)
    return np.linalg.norm(d @ start.lattice.matrix, axis=1)


class DefiNetPredictionDoc(BaseModel):
    """Output of :class:`DefiNetPredictMaker`: predicted structures and provenance."""

    checkpoint: str = Field(description="Path of the checkpoint file that predicted.")
    checkpoint_sha256: str = Field(description="sha256 of the checkpoint file.")
    device: str = Field(description="Torch device of the prediction.")
    batch_size: int = Field(description="Structures per forward pass.")
    n_structures: int = Field(description="Number of structures predicted.")
    wall_time_s: float = Field(description="Wall time of the job: loading + prediction (s).")
    load_time_s: float = Field(description="Time to load the checkpoint (s).")
    predict_time_s: float = Field(description="Time of the batched prediction (s).")
    time_per_structure_s: float = Field(
        description="predict_time_s / n_structures: the DefiNet cost of one defect (s)."
    )
    defect_ids: list[str | None] = Field(
        description="defect_id of each input (None for plain structures), in input order."
    )
    max_displacement: list[float] = Field(
        description="Largest predicted atomic displacement of each structure (A)."
    )
    mean_displacement: list[float] = Field(
        description="Mean predicted atomic displacement of each structure (A)."
    )
    out_of_distribution: list[str | None] = Field(
        default_factory=list,
        description="What of each input the model never saw in training (element, defect "
        "kind, host; Predictor.out_of_distribution), None where nothing; in input order.",
    )
    structures: list[Structure] = Field(
        description="Predicted structures: vacancy nodes dropped, real atoms in the order of "
        "DefectEntry.defect_structure, cell unchanged, site properties kept."
    )


@dataclass
class DefiNetPredictMaker(Maker):
    """Maker of a job that predicts relaxed structures of many defects with DefiNet.

    Parameters
    ----------
    name
        Name of the job.
    checkpoint
        DefiNet checkpoint file; None uses the weights shipped with the package.
    batch_size
        Structures per forward pass.
    device
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    """

    name: str = "definet predict"
    checkpoint: str | None = None
    batch_size: int = 32
    device: str = "auto"

    @job(data="structures")
    def make(self, entries: Sequence[DefectEntry | Structure]) -> DefiNetPredictionDoc:
        """Predict the relaxed structures of a batch of defects.

        Parameters
        ----------
        entries
            ``DefectEntry`` objects (their marked ``structure`` is predicted) or marked
            structures (site property ``defect_marker``, vacancy nodes appended).

        Returns
        -------
        DefiNetPredictionDoc
            Predicted structures (stored in the ``data`` store) and provenance.
        """
        from definet.predict import Predictor

        start = time.perf_counter()
        path = checkpoint_path(self.checkpoint)
        predictor = Predictor(path, device=self.device)
        loaded = time.perf_counter()
        marked = [e if isinstance(e, Structure) else e.structure for e in entries]
        predicted, unseen = (
            predictor.predict_checked(marked, batch_size=self.batch_size) if marked else ([], [])
        )
        done = time.perf_counter()
        moved = [displacements(m, p) for m, p in zip(marked, predicted, strict=True)]
        return DefiNetPredictionDoc(
            checkpoint=str(path),
            checkpoint_sha256=predictor.checkpoint_sha256,
            device=str(predictor.device),
            batch_size=self.batch_size,
            n_structures=len(predicted),
            wall_time_s=done - start,
            load_time_s=loaded - start,
            predict_time_s=done - loaded,
            time_per_structure_s=(done - loaded) / max(len(predicted), 1),
            defect_ids=[getattr(e, "defect_id", None) for e in entries],
            max_displacement=[float(d.max()) if len(d) else 0.0 for d in moved],
            mean_displacement=[float(d.mean()) if len(d) else 0.0 for d in moved],
            out_of_distribution=unseen,
            structures=predicted,
        )
