"""Values a command would read as options are refused; arrays are bounded; a list where one
number is expected is one clear line, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cryoglean import slurm

PROFILES = Path(__file__).parents[1] / "golden" / "slurm" / "profiles.yaml"
REPO = Path(__file__).resolve().parents[2]


def _render(template, **values):
    return slurm.render(template, slurm.get_profile("reference", PROFILES), values)


@pytest.mark.parametrize("roots", ["--help", "-rf", ["/data/a", "--db=/tmp/other.db"]])
def test_option_like_values_are_refused(roots):
    with pytest.raises(slurm.SlurmConfigError, match="starts with '-'"):
        _render("crawl", roots=roots, db="/data/catalog.db")
    with pytest.raises(slurm.SlurmConfigError, match="starts with '-'"):
        _render("crawl.scrontab", roots=roots, db="/data/catalog.db")


def test_option_like_output_refused_and_dot_slash_accepted():
    with pytest.raises(slurm.SlurmConfigError, match=r"write \./-rf"):
        _render("export", db="/data/c.db", format="thi", out="-rf")
    text = _render("export", db="/data/c.db", format="thi", out="./-rf")
    assert "-o ./-rf" in text


def test_positional_arguments_follow_a_double_dash():
    text = _render("crawl", roots=["/data/a", "/data/b"], db="/data/c.db")
    assert "--wait 600 -- /data/a /data/b" in text
    text = _render("export", db="/data/c.db", format="thi", out="/x", extra=["--stage", "refined"])
    assert text.rstrip().endswith("--stage refined -- thi")  # options pass through 'extra'


def test_negative_numbers_are_values():
    text = _render("pick_centernet", data="/d", model="/m.ckpt", output="/o", vis_thresh="-1")
    assert "--vis_thresh -1" in text


@pytest.mark.parametrize("shards, message", [
    ([1, 2], "one whole number"), ("abc", "one whole number"), (2.5, "one whole number"),
    (0, "between 1 and"), (5000, "between 1 and 1000"),
])
def test_array_sizes_are_bounded(shards, message):
    with pytest.raises(slurm.SlurmConfigError, match=message):
        _render("pick_centernet", data="/d", model="/m.ckpt", output="/o", shards=shards)


def test_cli_shards_list_is_one_line(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "cryoglean.cli", "slurm", "render", "pick_centernet", "--profiles",
         str(PROFILES), "--profile", "reference", "--set", "data=/d", "--set", "model=/m.ckpt",
         "--set", "output=/o", "--set", "shards=[1,2]", "-o", str(tmp_path / "x.sh")],
        cwd=REPO, capture_output=True, text=True)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "whole number" in res.stderr
