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
