"""What a checkpoint saw in training (elements, kinds of defect site, hosts), and what of an
input lies outside it: the basis of every ``OutOfDistributionWarning`` on inputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from definet.data.hosts import SYMBOLS, chemical_system, systems_from_folder_names
from definet.data.markers import DATASET_MARKERS, MARKER_NAMES


@dataclass(frozen=True)
class TrainingScope:
    """Elements (Z), defect markers and host kinds a checkpoint was trained on.

    None where the checkpoint recorded nothing (nothing is checked). Checkpoints from before host
    kinds were recorded know their hosts by dataset folder name only (``host_systems``): their
    inputs are checked by chemical system, not as layer or bulk.
    """

    elements: frozenset[int] | None
    markers: frozenset[int]
    host_kinds: frozenset[str] | None
    host_systems: frozenset[str]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> TrainingScope:
        """The scope recorded in a checkpoint's metadata (as :func:`load_model` returns it)."""
        kinds = metadata.get("host_kinds")
        elements = metadata.get("elements")
        return cls(
            elements=None if elements is None else frozenset(elements),
            markers=frozenset(metadata.get("markers", DATASET_MARKERS)),
            host_kinds=None if kinds is None else frozenset(kinds),
            host_systems=frozenset(
                {chemical_system(k) for k in kinds}
                if kinds is not None
                else systems_from_folder_names(metadata.get("hosts", []))
            ),
        )

    def unseen_host(self, kind: str | None) -> bool:
        """Whether a host kind (``"Ga-N bulk"``; None: a structure without host sites) lies
        outside the scope: another chemical system, or, where the checkpoint recorded host
        kinds, the same system as bulk where only layers were seen (or the reverse)."""
        if kind is None:
            return False
        if self.host_kinds is not None:
            return kind not in self.host_kinds
        return bool(self.host_systems) and chemical_system(kind) not in self.host_systems

    def unseen(self, z: Iterable[int], markers: Iterable[int], host_kind: str | None) -> list[str]:
        """What of an input lies outside the scope, e.g. ``["element(s) ['Mg']", "host Ga-N
        bulk"]``; empty when nothing does."""
        parts = []
        elements = set() if self.elements is None else set(z) - self.elements
        if elements:
            parts.append(f"element(s) {sorted(SYMBOLS[e] for e in elements)}")
        kinds = set(markers) - self.markers
        if kinds:
            parts.append(f"defect kind(s) {sorted(MARKER_NAMES[m] for m in kinds)}")
        if self.unseen_host(host_kind):
            parts.append(f"host {host_kind}")
        return parts

    def hosts_note(self, kinds: Iterable[str | None]) -> str:
        """``" (its hosts: B-N layer, ...)"`` where any of ``kinds`` is an unseen host, else
        ``""``: the end of a warning's subject."""
        if not any(map(self.unseen_host, kinds)):
            return ""
        known = self.host_kinds if self.host_kinds is not None else self.host_systems
        return f" (its hosts: {', '.join(sorted(known)) or 'none recorded'})"


def shared_record(metadatas: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """What every one of several models saw in training (``markers``; ``elements`` and
    ``host_kinds`` where each recorded them): the record of a file that combines them, so that
    a prediction warns about anything one of them never saw."""
    record = {
        "markers": sorted(
            set.intersection(*(set(m.get("markers", DATASET_MARKERS)) for m in metadatas))
        )
    }
    for key in ("elements", "host_kinds"):
        if all(key in m for m in metadatas):
            record[key] = sorted(set.intersection(*(set(m[key]) for m in metadatas)))
    return record
