"""benchmarks/model_agreement.py: distances between models' predictions beside their errors."""

from __future__ import annotations

import json

import pytest

from tests.repo_scripts import load_benchmark

from .conftest import tiny_checkpoint


def run(tiny_dataset, tmp_path, monkeypatch, references, checkpoints) -> dict:
    monkeypatch.setenv("DEFINET_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "agreement.json"
    argv = ["--data-root", str(tiny_dataset), "--json", str(out)]
    for path in references:
        argv += ["--reference", str(path)]
    for path in checkpoints:
        argv += ["--checkpoint", str(path)]
    assert load_benchmark("model_agreement").main(argv) == 0
    return json.loads(out.read_text())["hosts"]["MoS2_500"]


def test_distance_to_itself_is_zero_and_to_another_model_is_not(
    tiny_dataset, tmp_path, monkeypatch
) -> None:
    first, second = (tiny_checkpoint(tmp_path / f"m{i}.pt", seed=i) for i in range(2))
    host = run(tiny_dataset, tmp_path, monkeypatch, [first], [first, second])
    same, other = host["models"][str(first)], host["models"][str(second)]
    assert host["n"] == 2 and host["dummy_mae"] > 0
    assert same["distance_to_reference"] == pytest.approx(0.0, abs=1e-7)
    assert same["ratio"] == pytest.approx(host["reference_ratio"])
    assert other["distance_to_reference"] > 1e-4
    assert other["ratio"] != pytest.approx(host["reference_ratio"])


def test_an_averaged_reference_lies_halfway_between_two_models(
    tiny_dataset, tmp_path, monkeypatch
) -> None:
    first, second = (tiny_checkpoint(tmp_path / f"m{i}.pt", seed=i) for i in range(2))
    apart = run(tiny_dataset, tmp_path, monkeypatch, [first], [second])["models"][str(second)]
    host = run(tiny_dataset, tmp_path, monkeypatch, [first, second], [first, second])
    for path in (first, second):
        assert host["models"][str(path)]["distance_to_reference"] == pytest.approx(
            apart["distance_to_reference"] / 2, rel=1e-4
        )


def test_missing_dataset_is_named(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        load_benchmark("model_agreement").main(
            ["--data-root", str(tmp_path / "none"), "--reference", "a", "--checkpoint", "b"]
        )
    assert stop.value.code == 2
    assert "none: not found (the DefiNet dataset)" in capsys.readouterr().err
