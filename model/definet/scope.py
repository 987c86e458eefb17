"""What a checkpoint saw in training (elements, kinds of defect site, hosts), and what of an
input lies outside it: the basis of every ``OutOfDistributionWarning`` on inputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from definet.data.hosts import SYMBOLS, chemical_system, systems_from_folder_names
from definet.data.markers import DATASET_MARKERS, MARKER_NAMES


@dataclass(frozen=True)
class TrainingScope:
    """Elements (Z), defect markers and host kinds a checkpoint was trained on.

    Checkpoints from before host kinds were recorded know their hosts by dataset folder name
    only (``host_systems``): their inputs are checked by chemical system, not as layer or bulk.
    """

    elements: frozenset[int]
    markers: frozenset[int]
    host_kinds: frozenset[str]
    host_systems: frozenset[str]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> TrainingScope:
        """The scope recorded in a checkpoint's metadata (as :func:`load_model` returns it)."""
        kinds = frozenset(metadata.get("host_kinds", []))
        systems = {chemical_system(k) for k in kinds}
        return cls(
            elements=frozenset(metadata.get("elements", [])),
            markers=frozenset(metadata.get("markers", DATASET_MARKERS)),
            host_kinds=kinds,
            host_systems=frozenset(systems | systems_from_folder_names(metadata.get("hosts", []))),
        )

    def unseen_host(self, kind: str) -> bool:
        """Whether a host kind (``"Ga-N bulk"``) lies outside the scope: another chemical
        system, or the same one as bulk where only layers were seen (or the reverse)."""
        if not self.host_systems:
            return False
        system = chemical_system(kind)
        same_system = {k for k in self.host_kinds if chemical_system(k) == system}
        return system not in self.host_systems or bool(same_system and kind not in same_system)

    def unseen(self, z: Iterable[int], markers: Iterable[int], host_kind: str) -> list[str]:
        """What of an input lies outside the scope, e.g. ``["element(s) ['Mg']", "host Ga-N
        bulk"]``; empty when nothing does."""
        parts = []
        elements = set(z) - self.elements if self.elements else set()
        if elements:
            parts.append(f"element(s) {sorted(SYMBOLS[e] for e in elements)}")
        kinds = set(markers) - self.markers
        if kinds:
            parts.append(f"defect kind(s) {sorted(MARKER_NAMES[m] for m in kinds)}")
        if self.unseen_host(host_kind):
            parts.append(f"host {host_kind}")
        return parts

    def hosts_note(self, kinds: Iterable[str]) -> str:
        """``" (its hosts: B-N layer, ...)"`` where any of ``kinds`` is an unseen host, else
        ``""``: the end of a warning's subject."""
        if not any(map(self.unseen_host, kinds)):
            return ""
        return f" (its hosts: {', '.join(sorted(self.host_kinds or self.host_systems))})"
