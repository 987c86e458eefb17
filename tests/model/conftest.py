"""Small structures and datasets built in code for the model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from torch_geometric.data import Batch

from definet.checkpoint import model_payload, save_atomic
from definet.data.graphs import GraphSettings, structure_to_graph
from definet.data.markers import mark_defects, pristine_supercell
from definet.inference import predict_batch
from definet.nn import DefiNet, DefiNetConfig

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def mos2_unit_cell(c: float = 14.879) -> Structure:
    """The 2H-MoS2 monolayer unit cell laid out like the DefiNet host files."""
    lattice = Lattice.hexagonal(3.19031570, c)
    return Structure(
        lattice,
        ["Mo", "S", "S"],
        [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.144826], [2 / 3, 1 / 3, 0.355174]],
    )


def _minimum_image_to(structure: Structure, center: np.ndarray) -> np.ndarray:
    frac = (center - structure.cart_coords) @ structure.lattice.inv_matrix
    frac -= np.round(frac)
    return frac @ structure.lattice.matrix


def relaxed_toward(
    structure: Structure, pull: np.ndarray, push: np.ndarray, amplitude: float = 0.15
) -> Structure:
    """A made-up 'relaxed' structure: atoms pulled toward ``pull`` (a vacancy) and pushed
    away from ``push`` (a substituent), decaying with distance, so it depends on the
    local environment only, as real relaxations do."""
    cart = structure.cart_coords.copy()
    for center, sign in ((pull, 1.0), (push, -0.5)):
        diff = _minimum_image_to(structure, center)
        dist = np.linalg.norm(diff, axis=1, keepdims=True)
        safe = np.where(dist < 1e-6, 1.0, dist)
        cart += sign * amplitude * diff / safe * np.exp(-dist / 1.5) * (dist > 1e-6)
    return Structure(structure.lattice, structure.species, cart, coords_are_cartesian=True)


def nontrivial_definet(
    cutoff: float = 4.0,
    num_layers: int = 3,
    feature_norm: bool = False,
    tensor_channels: int = 0,
    dropout: float = 0.0,
    reciprocal_cutoff: float = 0.0,
) -> DefiNet:
    """A small random float64 DefiNet (eval mode) whose coordinate heads (and long-range
    exchange, with ``reciprocal_cutoff``) move atoms."""
    torch.manual_seed(0)
    config = DefiNetConfig(
        hidden=16,
        num_layers=num_layers,
        num_rbf=8,
        cutoff=cutoff,
        feature_norm=feature_norm,
        tensor_channels=tensor_channels,
        dropout=dropout,
        reciprocal_cutoff=reciprocal_cutoff,
    )
    net = DefiNet(config).double()
    for layer in net.layers:
        torch.nn.init.normal_(layer.to_step.linear.weight, std=0.1)
        torch.nn.init.normal_(layer.message.coord[-1].weight, std=0.1)
        if layer.reciprocal is not None:
            torch.nn.init.normal_(layer.reciprocal.out_s.weight, std=0.3)
            torch.nn.init.normal_(layer.reciprocal.out_v.weight, std=0.3)
            torch.nn.init.normal_(layer.reciprocal.filter.bias, std=0.3)  # must not leak
    return net.eval()


def tiny_checkpoint(path: Path, seed: int = 0, metadata: dict | None = None) -> Path:
    """A small random DefiNet (4 A graphs, 12 neighbours) with non-trivial coordinate steps."""
    torch.manual_seed(seed)
    model = DefiNet(DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0))
    for layer in model.layers:
        torch.nn.init.normal_(layer.to_step.linear.weight, std=0.05)
    return save_atomic(model_payload(model, GraphSettings(4.0, 12), metadata=metadata), path)


def make_defect_pair(n: int = 3, seed: int = 0, c: float = 20.0) -> tuple[Structure, Structure]:
    """(unrelaxed, relaxed) n x n MoS2 with one S vacancy and one W on Mo, c reset to ``c``."""
    rng = np.random.default_rng(seed)
    unit = mos2_unit_cell()
    ideal = unit * (n, n, 1)
    ideal = Structure(
        Lattice.hexagonal(ideal.lattice.a, c),
        ideal.species,
        ideal.cart_coords,
        coords_are_cartesian=True,
    )
    s_sites = [i for i, site in enumerate(ideal) if site.specie.symbol == "S"]
    mo_sites = [i for i, site in enumerate(ideal) if site.specie.symbol == "Mo"]
    vac = int(rng.choice(s_sites))
    sub = int(rng.choice(mo_sites))
    center = ideal[vac].coords
    unrelaxed = ideal.copy()
    unrelaxed.replace(sub, "W")
    unrelaxed.remove_sites([vac])
    return unrelaxed, relaxed_toward(unrelaxed, center, ideal[sub].coords)


#: Graph settings of the small MoS2 pairs of :func:`defect_graphs`.
SMALL_GRAPH = GraphSettings(cutoff=4.0, max_neighbors=12)


def defect_graphs(n: int, offset: int = 0):
    """Graphs (with targets) of ``n`` 3x3 MoS2 defect pairs, seeds ``offset`` .. ``offset+n-1``."""
    out = []
    for seed in range(offset, offset + n):
        unrelaxed, relaxed = make_defect_pair(n=3, seed=seed)
        ideal = pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice)
        g = structure_to_graph(mark_defects(unrelaxed, ideal), SMALL_GRAPH, relaxed=relaxed)
        g.host, g.atoms_id = "MoS2_test", f"s{seed}"
        out.append(g)
    return out


def write_dataset(
    root: Path,
    splits: dict[str, int],
    host: str = "MoS2_500",
    density: str = "high_density_defects",
) -> Path:
    """A tiny dataset in the official layout: unit cell, split CSVs, CIF pairs."""
    base = root / density
    folder = base / host / "CIF"
    folder.mkdir(parents=True, exist_ok=True)
    CifWriter(mos2_unit_cell()).write_file(base / "MoS2.cif")
    seed = 0
    for split, count in splits.items():
        ids = []
        for _ in range(count):
            unrelaxed, relaxed = make_defect_pair(seed=seed)
            atoms_id = f"MoS2_test_{seed:03d}"
            CifWriter(unrelaxed).write_file(folder / f"{atoms_id}_unrelaxed.cif")
            CifWriter(relaxed).write_file(folder / f"{atoms_id}_relaxed.cif")
            ids.append(atoms_id)
            seed += 1
        (base / host / f"{split}.csv").write_text("atoms_id\n" + "\n".join(ids) + "\n")
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data", {"train": 4, "val": 2, "test": 2})


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "definet-dataset").is_dir():
        pytest.skip(f"the shared DefiNet dataset is absent ({SHARED_DATA / 'definet-dataset'})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache directory for the whole test session (archives extracted once)."""
    return tmp_path_factory.mktemp("definet-cache")


# Small nets and structures for routed / ensemble models
SMALL_GRAPH = GraphSettings(cutoff=4.0, max_neighbors=12)
SMALL_NET = DefiNetConfig(hidden=16, num_layers=2, num_rbf=8, cutoff=4.0)


def member(seed: int) -> DefiNet:
    """A small DefiNet whose coordinate heads are not zero, so members disagree."""
    torch.manual_seed(seed)
    net = DefiNet(SMALL_NET)
    for layer in net.layers:  # non-trivial coordinate heads
        torch.nn.init.normal_(layer.to_step.linear.weight, std=0.1)
        torch.nn.init.normal_(layer.message.coord[-1].weight, std=0.1)
    return net.eval()


def marked(n: int, seed: int) -> Structure:
    unrelaxed, _ = make_defect_pair(n=n, seed=seed)
    return mark_defects(unrelaxed, pristine_supercell(mos2_unit_cell(), lattice=unrelaxed.lattice))


@pytest.fixture(scope="module")
def structures():
    """Marked MoS2 supercells on either side of a 0.03 defect fraction."""
    # 2 defects in 6x6 (108 sites, 1.9%) and in 3x3 (27 sites, 7.4%)
    return [marked(6, 1), marked(3, 2), marked(6, 3)]


def run(
    model: torch.nn.Module, structures: list[Structure], settings: GraphSettings = SMALL_GRAPH
) -> list[np.ndarray]:
    """Each structure's predicted coordinates, from one batch of all of them."""
    batch = Batch.from_data_list([structure_to_graph(s, settings) for s in structures])
    with torch.no_grad():
        out = predict_batch(model, batch)
    return [out[batch.batch == i].numpy() for i in range(len(structures))]
