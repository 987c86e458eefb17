"""Shared fixtures for tests/flows: small hosts, made-up relaxation results, synthetic docs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from definet_flows.defects import DefectEntry, generate_defect_entries
from definet_flows.engines import RelaxEngine
from definet_flows.relax_results import RelaxResult
from definet_flows.schemas import ValidationDoc

#: The engine of the synthetic results: EMT through the forcefield engine.
EMT_ENGINE = RelaxEngine("forcefield", {"force_field": "EMT"})


def relax_result(
    n_ionic_steps: int,
    energy: float,
    final_structure: Structure,
    converged: bool = True,
    max_force: float = 0.01,
    wall_time_s: float = 1.0,
    engine: RelaxEngine = EMT_ENGINE,
) -> RelaxResult:
    """A real :class:`RelaxResult` of ``engine`` with made-up figures (no relaxation runs)."""
    return RelaxResult(
        engine=engine.name,
        settings=engine.settings,
        settings_hash=engine.settings_hash,
        n_ionic_steps=n_ionic_steps,
        energy=energy,
        energy_per_atom=energy / len(final_structure),
        max_force=max_force,
        converged=converged,
        final_structure=final_structure,
        wall_time_s=wall_time_s,
    )


def displaced(structure: Structure, sigma: float, seed: int) -> Structure:
    """Real atoms of ``structure`` (vacancy nodes dropped), randomly displaced."""
    s = structure.copy()
    markers = s.site_properties.get("defect_marker")
    if markers is not None:
        s.remove_sites([i for i, m in enumerate(markers) if m == 2])
    rng = np.random.default_rng(seed)
    for i in range(len(s)):
        s.translate_sites([i], rng.normal(0, sigma, 3), frac_coords=False, to_unit_cell=False)
    return s


@pytest.fixture(scope="session")
def mos2_entries() -> list[DefectEntry]:
    """Single vacancies, a W substitution and two-defect configurations in 3x3 MoS2."""
    singles = generate_defect_entries("MoS2", supercell="3x3", dopants={"Mo": ["W"]})
    multi = generate_defect_entries(
        "MoS2", supercell="3x3", vacancies=False, defect_counts={"v_S": 2}, n_configs=4, seed=0
    )
    return singles + multi


def synthetic_docs(entries: list[DefectEntry], n: int, seed: int = 0) -> list[ValidationDoc]:
    """ValidationDocs with random step counts and energies built through from_results."""
    rng = np.random.default_rng(seed)
    docs = []
    for k in range(n):
        entry = entries[k % len(entries)]
        relaxed = displaced(entry.structure, 0.05, seed + k)
        e0 = -7.0 * entry.n_sites + rng.normal(0, 0.5)
        same = rng.random() < 0.8
        unrelaxed = relax_result(int(rng.integers(15, 90)), e0, relaxed)
        predicted = relax_result(
            int(rng.integers(1, 12)),
            e0 + (rng.normal(0, 0.002) if same else rng.normal(0.05, 0.05)),
            relaxed if same else displaced(relaxed, 0.2, seed + k),
            converged=rng.random() < 0.95,
        )
        doc = ValidationDoc.from_results(
            entry, unrelaxed, predicted, "ab" * 32, predicted_structure=displaced(relaxed, 0.02, k)
        )
        docs.append(
            doc.model_copy(update={"key": f"{doc.key}:{k}", "host": ["MoS2", "WSe2"][k % 2]})
        )
    return docs


@pytest.fixture(scope="session")
def make_docs(mos2_entries):
    """``make_docs(n, seed=0)`` -> synthetic ValidationDocs of 3x3 MoS2 defects."""
    return lambda n, seed=0: synthetic_docs(mos2_entries, n, seed)


@pytest.fixture(scope="session")
def fake_result():
    """:func:`relax_result`: real RelaxResults with made-up figures (tests import nothing from
    conftest)."""
    return relax_result


@pytest.fixture(scope="session")
def displace():
    """The ``displaced(structure, sigma, seed)`` helper."""
    return displaced


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny DefiNet trained for 20 epochs on synthetic MoS2 pairs (a few seconds)."""
    import torch

    from definet.data.graphs import GraphSettings, structure_to_graph
    from definet.data.markers import mark_defects, pristine_supercell
    from definet.nn import DefiNetConfig
    from definet.train import Trainer
    from definet.train_config import TrainConfig
    from tests.model.conftest import make_defect_pair, mos2_unit_cell

    torch.manual_seed(0)
    graph = GraphSettings(cutoff=4.0, max_neighbors=12)
    graphs = []
    for seed in range(4):
        unrelaxed, relaxed = make_defect_pair(n=3, seed=seed)
        ideal = pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice)
        g = structure_to_graph(mark_defects(unrelaxed, ideal), graph, relaxed=relaxed)
        g.host, g.atoms_id = "MoS2_test", f"s{seed}"
        graphs.append(g)
    config = TrainConfig(
        out_dir=str(tmp_path_factory.mktemp("tiny-definet")),
        graph=graph,
        batch_size=2,
        lr=5e-3,
        epochs=20,
        early_stop_patience=100,
        ema_decay=0.0,
        threads=1,
        model=DefiNetConfig(hidden=8, num_layers=1, num_rbf=4, cutoff=4.0),
    )
    return Trainer(config, graphs[:3], graphs[3:], progress=False).fit()


@pytest.fixture(scope="session")
def cu_cif(tmp_path_factory) -> Path:
    """Conventional fcc Cu cell (4 atoms) as a CIF: a host from a structure file."""
    path = tmp_path_factory.mktemp("hosts") / "Cu.cif"
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).to(
        filename=str(path)
    )
    return path
