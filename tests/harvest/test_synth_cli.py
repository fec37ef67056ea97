"""``cryoglean demo-data``: summary, refusal of a non-empty target, bad arguments."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harvest.synth.cli import demo_data_command

SMALL = ["--micrographs", "2", "--size", "256", "--pixel-size", "2", "--diameter", "60",
         "--quiet"]


def test_writes_facility_and_summary(tmp_path):
    target = tmp_path / "demo"
    result = CliRunner().invoke(demo_data_command, [str(target), *SMALL, "--seed", "3",
                                                    "--versions", "cryosparc,relion31"])
    assert result.exit_code == 0, result.output
    assert "micrographs: 2" in result.output
    assert "cryosparc" in result.output and "relion31" in result.output
    assert "relion30" not in result.output
    doc = json.loads((target / "facility.json").read_text())
    assert doc["config"]["seed"] == 3 and doc["config"]["nx"] == 256
    assert sorted(doc["projects"]) == ["cryosparc", "relion31"]


def test_refuses_non_empty_without_force(tmp_path):
    target = tmp_path / "demo"
    target.mkdir()
    (target / "x").write_text("")
    runner = CliRunner()
    result = runner.invoke(demo_data_command, [str(target), *SMALL, "--versions", "relion30"])
    assert result.exit_code != 0
    assert "not empty" in result.output and "--force" in result.output
    result = runner.invoke(demo_data_command,
                           [str(target), *SMALL, "--versions", "relion30", "--force"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, message", [
    (["--versions", "cryosparc,relion99"], "relion99"),
    (["--size", "-5"], "--size"),
    (["--micrographs", "0"], "--micrographs"),
    (["--pixel-size", "0"], "--pixel-size"),
    (["--snr", "-1"], "--snr"),
    (["--diameter", "900"], "diameter"),
])
def test_bad_arguments(tmp_path, args, message):
    result = CliRunner().invoke(demo_data_command, [str(tmp_path / "d"), *SMALL, *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "d").exists()


def test_registered_in_cryoglean_cli(tmp_path):
    from cryoglean.cli import cli

    result = CliRunner().invoke(cli, ["demo-data", "--help"])
    assert result.exit_code == 0
    assert "--versions" in result.output and "--force" in result.output
