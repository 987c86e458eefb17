"""benchmarks/model_speed.py: every phase runs on a real (tiny) dataset and is reported."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.repo_scripts import load_benchmark


def test_measures_every_phase_on_a_dataset(tiny_dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEFINET_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"hidden": 8, "num_layers": 2, "num_rbf": 8, "cutoff": 4.0},
                "graph": {"cutoff": 4.0, "max_neighbors": 12},
                "batch_size": 1,
            }
        )
    )
    out = tmp_path / "speed.json"
    args = ["--config", str(config), "--data-root", str(tiny_dataset), "--host", "MoS2_500"]
    bench = load_benchmark("model_speed")
    assert bench.main([*args, "--split", "train", "--threads", "1", "--json", str(out)]) == 0
    train, infer_1, infer_32 = json.loads(out.read_text())["phases"]
    assert train["structures_per_s"] > 0
    assert all(train[f"{p}_ms_per_step"] > 0 for p in ("forward", "backward", "optimizer", "ema"))
    assert infer_1["ms_per_structure"] > 0 and infer_32["ms_per_structure"] > 0
    assert train["n_atoms"] > 0 and train["peak_rss_mb"] > 0


def test_a_small_split_still_times_full_batches(tiny_dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEFINET_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {"model": {"cutoff": 4.0}, "graph": {"cutoff": 4.0}, "batch_size": 8, "threads": 1}
        )
    )
    bench = load_benchmark("model_speed")
    args = ["--config", str(config), "--data-root", str(tiny_dataset), "--host", "MoS2_500"]
    out = tmp_path / "speed.json"
    # the 2 val structures, repeated: 12 batches of 8 (2 warm-up, 10 timed), not one of 2
    assert bench.main([*args, "--threads", "1", "--json", str(out)]) == 0
    train = json.loads(out.read_text())["phases"][0]
    assert train["timed_steps"] == 10


def test_missing_dataset_is_named(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        load_benchmark("model_speed").main(["--data-root", str(tmp_path / "none")])
    assert stop.value.code == 2
    assert "none: not found (the DefiNet dataset)" in capsys.readouterr().err
