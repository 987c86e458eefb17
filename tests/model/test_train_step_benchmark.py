"""benchmarks/train_step.py: times every phase of a step on a real (tiny) dataset."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.flows.conftest import load_benchmark


def test_times_a_config_on_a_dataset(tiny_dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEFINET_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_root": str(tiny_dataset),
                "model": {"hidden": 8, "num_layers": 2, "num_rbf": 8, "cutoff": 4.0},
                "graph": {"cutoff": 4.0, "max_neighbors": 12},
                "batch_size": 1,
            }
        )
    )
    out = tmp_path / "step.json"
    bench = load_benchmark("train_step")
    args = ["--config", str(config), "--warmup", "1", "--steps", "1", "--threads", "1"]
    assert bench.main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    phases = ("forward_ms", "backward_ms", "optimizer_ms", "ema_ms")
    assert all(result[p] > 0 for p in phases)
    assert result["step_ms"] == pytest.approx(sum(result[p] for p in phases))
    assert result["nodes_per_batch"] > 0 and result["threads"] == 1
    with pytest.raises(ValueError, match="needs 5"):  # the val split has 2 structures
        bench.main(["--config", str(config), "--warmup", "2", "--steps", "3"])


def test_missing_dataset_is_named(tmp_path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"data_root": str(tmp_path / "none")}))
    with pytest.raises(SystemExit):
        load_benchmark("train_step").main(["--config", str(config)])
