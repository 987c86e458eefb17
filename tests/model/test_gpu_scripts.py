"""The GPU helpers in scripts/gpu: packed graphs come back equal; a deadline run trains."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml

from definet.data.dataset import load_split
from definet.data.graphs import GraphSettings
from tests.repo_scripts import load_script

GPU_SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "gpu"
WITHOUT_PYMATGEN = """
import importlib.abc, runpy, sys
class NoPymatgen(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "pymatgen":
            raise ModuleNotFoundError(f"{name} is blocked in this test", name=name)
sys.meta_path.insert(0, NoPymatgen())
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
assert "pymatgen" not in sys.modules
"""


def load_gpu_script(name: str) -> ModuleType:
    return load_script(f"scripts/gpu/{name}.py", with_siblings=True)


def pack_tiny_graphs(tiny_dataset: Path, out: Path) -> None:
    """The tiny dataset's train graphs packed as both splits into ``out``."""
    pack_graphs = load_gpu_script("pack_graphs")
    graphs = load_split(
        tiny_dataset, "train", GraphSettings(4.0, 12), cache_dir=out.parent, progress=False
    )
    np.savez_compressed(out, **pack_graphs.pack(graphs, "train"), **pack_graphs.pack(graphs, "val"))


def test_packed_graphs_come_back_equal(tiny_dataset: Path, tmp_path: Path) -> None:
    pack_graphs = load_gpu_script("pack_graphs")
    graphs = load_split(
        tiny_dataset, "train", GraphSettings(4.0, 12), cache_dir=tmp_path, progress=False
    )
    np.savez_compressed(tmp_path / "g.npz", **pack_graphs.pack(graphs, "train"))
    with np.load(tmp_path / "g.npz") as packed:
        back = pack_graphs.unpack(dict(packed), "train")
    assert len(back) == len(graphs) == 4
    for a, b in zip(graphs, back, strict=True):
        assert (a.host, a.atoms_id) == (b.host, b.atoms_id)
        for key in ("z", "marker", "pos", "y", "cell", "edge_index", "edge_image"):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_deadline_run_sets_steps_and_trains(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    config = {
        "data_root": str(tiny_dataset),
        "out_dir": str(tmp_path / "unused"),
        "model": {"hidden": 8, "num_layers": 2, "num_rbf": 8, "cutoff": 4.0},
        "graph": {"cutoff": 4.0, "max_neighbors": 12},
        "batch_size": 2,
        "schedule": "cosine",
        "max_steps": 1,
        "device": "cpu",
        "threads": 1,
        "cache_dir": str(tmp_path / "cache"),
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    graphs_path = tmp_path / "graphs.npz"
    argv = ["pack_graphs", "--config", str(config_path), "--out", str(graphs_path)]
    monkeypatch.setattr(sys, "argv", argv)
    load_gpu_script("pack_graphs").main()
    out_dir = tmp_path / "run"
    deadline = time.time() + 45
    args = ["--config", str(config_path), "--graphs", str(graphs_path)]
    args += ["--out-dir", str(out_dir), "--deadline", str(deadline)]
    # a GPU node may lack pymatgen: training from packed graphs must not import it
    subprocess.run(
        [sys.executable, "-c", WITHOUT_PYMATGEN, str(GPU_SCRIPTS / "train_on_device.py"), *args],
        check=True,
    )
    assert time.time() < deadline + 10
    chosen = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert chosen["max_steps"] > 50  # many more than the config's 1: set from the probe
    # 4 graphs in batches of 2: `epochs` (default 100) must not end the run before max_steps
    assert chosen["epochs"] * 2 >= chosen["max_steps"]
    trained = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in trained) >= chosen["max_steps"] * 0.5
    assert (out_dir / "best.pt").exists()


def test_a_deadline_too_close_is_refused(tiny_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    pack_tiny_graphs(tiny_dataset, tmp_path / "g.npz")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"hidden": 8, "num_layers": 1, "num_rbf": 8, "cutoff": 4.0},
                "graph": {"cutoff": 4.0, "max_neighbors": 12},
                "device": "cpu",
                "threads": 1,
            }
        )
    )
    args = ["--config", str(config), "--graphs", str(tmp_path / "g.npz")]
    args += ["--out-dir", str(tmp_path / "run"), "--deadline", str(time.time())]
    monkeypatch.setattr(sys, "argv", ["train_on_device", *args])
    with pytest.raises(SystemExit, match="give it more time"):
        load_gpu_script("train_on_device").main()
    assert not (tmp_path / "run" / "best.pt").exists()


def test_keep_config_steps_trains_the_config_schedule_when_it_fits(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    pack_tiny_graphs(tiny_dataset, tmp_path / "g.npz")
    config = tmp_path / "config.yaml"
    settings = {"model": {"hidden": 8, "num_layers": 1, "num_rbf": 8, "cutoff": 4.0}}
    settings |= {"graph": {"cutoff": 4.0, "max_neighbors": 12}, "batch_size": 2}
    settings |= {"schedule": "cosine", "max_steps": 70, "val_every": 35, "checkpoint_every": 7}
    config.write_text(yaml.safe_dump(settings | {"device": "cpu", "threads": 1}))
    out_dir = tmp_path / "run"
    args = ["--config", str(config), "--graphs", str(tmp_path / "g.npz"), "--keep-config-steps"]
    args += ["--out-dir", str(out_dir), "--deadline", str(time.time() + 120)]
    monkeypatch.setattr(sys, "argv", ["train_on_device", *args])
    load_gpu_script("train_on_device").main()
    chosen = yaml.safe_load((out_dir / "config.yaml").read_text())
    # the deadline would allow far more steps; the flag keeps the config's schedule and cadence
    assert (chosen["max_steps"], chosen["val_every"], chosen["checkpoint_every"]) == (70, 35, 7)
    trained = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in trained if r["event"] == "val"] == [35, 70]


TRAVEL_LIGHT = str(GPU_SCRIPTS / "travel_light.sh")


def git_in(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def committed_repo(repo: Path) -> None:
    """A git repository with checkpoints, the shipped weights and one other file committed."""
    git_in(repo, "init", "-q")
    for name in ("checkpoints/a/best.pt", "model/definet/weights/definet-default.pt", "keep.py"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(b"x" * 100)
    git_in(repo, "add", ".")
    git_in(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")


def test_travel_light_keeps_checkpoints_out_and_puts_them_back(tmp_path: Path) -> None:
    committed_repo(tmp_path)

    def travelling() -> set[str]:
        return set(git_in(tmp_path, "ls-files").split()) | set(
            git_in(tmp_path, "ls-files", "--others", "--exclude-standard").split()
        )

    subprocess.run(["bash", TRAVEL_LIGHT, "on"], cwd=tmp_path, check=True, capture_output=True)
    assert travelling() == {"keep.py"}
    assert (tmp_path / "checkpoints/a/best.pt").exists()  # files stay where they are
    subprocess.run(["bash", TRAVEL_LIGHT, "off"], cwd=tmp_path, check=True, capture_output=True)
    assert len(travelling()) == 3
    assert git_in(tmp_path, "status", "--porcelain") == ""
    assert "checkpoints" not in (tmp_path / ".git/info/exclude").read_text()


def test_travel_light_twice_on_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    committed_repo(tmp_path)
    subprocess.run(["bash", TRAVEL_LIGHT, "on"], cwd=tmp_path, check=True, capture_output=True)
    exclude = (tmp_path / ".git/info/exclude").read_text()
    again = subprocess.run(
        ["bash", TRAVEL_LIGHT, "on"], cwd=tmp_path, capture_output=True, text=True
    )
    assert again.returncode == 1 and "already on" in again.stderr
    assert (tmp_path / ".git/info/exclude").read_text() == exclude
