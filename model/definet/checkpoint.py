"""Checkpoint files: model weights + config + format version, loaded with ``weights_only=True``."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from definet.data.graphs import GraphSettings
from definet.nn import (
    DefiNet,
    DefiNetConfig,
    DensityRoutedDefiNet,
    EnsembleDefiNet,
    NeighbourCapped,
)
from definet.scope import shared_record

FORMAT_VERSION = 1
#: ``kind`` of a checkpoint holding several models routed by defect density.
ROUTED_KIND = "definet-routed"
#: ``kind`` of a checkpoint holding several models whose predictions are averaged.
ENSEMBLE_KIND = "definet-ensemble"


class CheckpointError(ValueError):
    """A checkpoint is unreadable, of another format, or does not fit the model."""


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_atomic(payload: dict[str, Any], path: str | Path) -> Path:
    """Write through a temporary file so a kill never leaves a half-written checkpoint.

    Through a file object, so that the archive is named the same whatever the temporary file is
    called (torch names it after the file): the same payload gives the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")  # writers never collide
    try:
        with tmp.open("wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before it takes the name (power loss too)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves nothing behind
    return path


def model_payload(
    model: DefiNet,
    graph: GraphSettings,
    state_dict: dict | None = None,
    metadata: dict | None = None,
) -> dict[str, Any]:
    """What a model checkpoint holds (weights are the EMA ones when training)."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": "definet-model",
        "model_config": model.config.as_dict(),
        "graph_settings": graph.as_dict(),
        "state_dict": state_dict if state_dict is not None else model.state_dict(),
        "metadata": metadata or {},
    }


def _serving_graph_settings(members: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The graph settings that serve every member payload (one graph per structure): their own
    where they share them, else the widest, from which each member takes its nearest edges
    (:meth:`GraphSettings.cap_within`)."""
    settings = [m["graph_settings"] for m in members]
    for candidate in settings:
        served = GraphSettings(**candidate)
        try:
            for own in settings:
                GraphSettings(**own).cap_within(served)
        except ValueError:
            continue
        return candidate
    raise CheckpointError(
        f"members of {kind} checkpoint differ in graph settings and no one graph serves them "
        f"all (same cutoff needed; whole shells and defect edges only where all share them): "
        f"{settings}"
    )


def ensemble_payload(members: list[dict[str, Any]], metadata: dict | None = None) -> dict[str, Any]:
    """One checkpoint of several :func:`model_payload` dicts, averaged by :class:`EnsembleDefiNet`."""
    settings = _serving_graph_settings(members, "an ensemble")
    EnsembleDefiNet([_definet_from_payload(m) for m in members])  # checks member count, embeddings
    return {
        "format_version": FORMAT_VERSION,
        "kind": ENSEMBLE_KIND,
        "graph_settings": settings,
        "members": members,
        "metadata": metadata or {},
    }


def ensemble_from_files(paths: list[str | Path]) -> dict[str, Any]:
    """An :func:`ensemble_payload` of single-model checkpoints (``best.pt`` or training
    ``last.pt`` files, which give their EMA weights). Its metadata names each member file with
    its sha256 and keeps the elements, host kinds and defect markers every member saw (so a
    prediction warns about anything one of them never saw) and the hosts any member was trained
    on."""
    members, sources, recorded, hosts = [], [], [], set()
    for path in paths:
        model, graph, metadata = load_model(path)
        if not isinstance(model, DefiNet):
            raise CheckpointError(
                f"{path}: combines several models (routed or averaged); average the "
                "single-model checkpoints it was built from"
            )
        members.append(model_payload(model, graph, metadata=metadata))
        sources.append({"checkpoint": str(path), "sha256": file_sha256(path)})
        recorded.append(metadata)
        hosts |= set(metadata.get("hosts", []))
    metadata = {"members": sources, "hosts": sorted(hosts), **shared_record(recorded)}
    return ensemble_payload(members, metadata)


def load_averaged(
    paths: Sequence[str | Path],
) -> tuple[DefiNet | DensityRoutedDefiNet | EnsembleDefiNet, GraphSettings, dict[str, Any]]:
    """:func:`load_model` of one file, or the mean of several single-model checkpoints (the
    model of :func:`ensemble_from_files`, without writing it)."""
    if len(paths) == 1:
        return load_model(paths[0])
    payload = ensemble_from_files(list(paths))
    model = _definet_from_payload(payload).eval()
    return model, GraphSettings(**payload["graph_settings"]), payload["metadata"]


def routed_payload(
    members: list[dict[str, Any]],
    max_defect_fraction: list[float],
    metadata: dict | None = None,
    member_hosts: list[list[list[int]] | None] | None = None,
) -> dict[str, Any]:
    """One checkpoint of several model payloads, served by :class:`DensityRoutedDefiNet`.

    ``members`` are :func:`model_payload` (or :func:`ensemble_payload`) dicts from the lowest to
    the highest defect density; one graph per structure serves every member
    (:func:`_serving_graph_settings`); ``member_hosts`` as in :class:`DensityRoutedDefiNet`.
    """
    settings = _serving_graph_settings(members, "a routed")
    routed = DensityRoutedDefiNet(  # checks member count against bounds, ascending bounds
        [_definet_from_payload(m) for m in members], max_defect_fraction, member_hosts
    )
    return {
        "format_version": FORMAT_VERSION,
        "kind": ROUTED_KIND,
        "graph_settings": settings,
        "members": members,
        "max_defect_fraction": [float(f) for f in max_defect_fraction],
        "member_hosts": routed.member_hosts,
        "metadata": metadata or {},
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely, with a clear error for corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable DefiNet checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a DefiNet checkpoint (no format_version)")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {payload['format_version']}, "
            f"this definet reads version {FORMAT_VERSION}"
        )
    return payload


def _definet_from_payload(
    payload: dict[str, Any], served: GraphSettings | None = None
) -> DefiNet | EnsembleDefiNet | NeighbourCapped:
    """A DefiNet, or the ensemble of an :func:`ensemble_payload`, with its weights; capped to
    its own neighbours when ``served`` graphs keep more (:func:`serve_on`)."""
    own = GraphSettings(**payload["graph_settings"])
    if payload.get("kind") == ENSEMBLE_KIND:
        model = EnsembleDefiNet([_definet_from_payload(m, own) for m in payload["members"]])
    else:
        model = DefiNet(DefiNetConfig(**payload["model_config"]))
        model.load_state_dict(payload.get("ema_state_dict") or payload["state_dict"])
    return model if served is None else serve_on(model, own, served)


def serve_on(model: torch.nn.Module, own: GraphSettings, served: GraphSettings) -> torch.nn.Module:
    """``model`` (trained on ``own`` graphs) as it runs on graphs built with ``served``: itself,
    or capped to its own nearest neighbours. Raises ValueError when ``served`` cannot serve it."""
    cap = own.cap_within(served)
    if cap is None:
        return model
    return NeighbourCapped(model, cap, own.cutoff if served.defect_cutoff else None)


def load_model(
    path: str | Path,
) -> tuple[DefiNet | DensityRoutedDefiNet | EnsembleDefiNet, GraphSettings, dict[str, Any]]:
    """Model (eval mode), graph settings and metadata from a model, routed, ensemble or training
    checkpoint."""
    payload = read_checkpoint(path)
    try:
        graph = GraphSettings(**payload["graph_settings"])
        if payload.get("kind") == ROUTED_KIND:
            model = DensityRoutedDefiNet(
                [_definet_from_payload(m, graph) for m in payload["members"]],
                payload["max_defect_fraction"],
                payload.get("member_hosts"),  # files from before session 44: any host
            )
        else:
            model = _definet_from_payload(payload)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not fit the DefiNet model ({exc})") from exc
    model.eval()
    return model, graph, payload.get("metadata", {})
