"""The shared validation-spec options: one list, given to every submit command."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from definet_flows.cli_options import with_spec_options


def test_a_command_gets_the_spec_options_and_the_built_spec():
    seen = {}
    app = typer.Typer()

    @app.command()
    @with_spec_options
    def run(spec, label: str = "none") -> None:
        seen["spec"], seen["label"] = spec, label

    res = CliRunner().invoke(app, ["--host", "MoS2", "--n", "3", "--fmax", "0.1", "--label", "x"])
    assert res.exit_code == 0, res.output
    assert (seen["spec"].host, seen["spec"].n, seen["label"]) == ("MoS2", 3, "x")
    assert seen["spec"].engine_settings["fmax"] == 0.1
    help_text = CliRunner().invoke(app, ["--help"]).output
    assert "--defect-count" in help_text and "--label" in help_text


def test_a_command_without_a_spec_parameter_is_refused():
    with pytest.raises(TypeError, match="must take the built spec as `spec`"):

        @with_spec_options
        def run(label: str = "none") -> None: ...


def test_an_option_replaces_the_files_other_way_of_saying_it(tmp_path):
    from definet_flows.submit import load_spec

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("host: MoS2\nsupercell: 4x4\ndefect_density: {v_S: 0.05}\nn: 3\n")
    from_file = load_spec(spec_file)
    assert from_file.supercell == "4x4"
    spec = load_spec(spec_file, min_length=12.0, defect_counts={"v_S": 2})
    assert (spec.supercell, spec.min_length) == (None, 12.0)  # not the file's 4x4
    assert (spec.defect_counts, spec.defect_density) == ({"v_S": 2}, None)
    assert spec.n == 3  # what no option names stays as in the file
    spec = load_spec(tmp_path / "spec.yaml", supercell="5x5")
    assert spec.supercell == "5x5" and spec.defect_density == {"v_S": 0.05}
