"""``cryoglean demo --quick`` end to end: every step's command succeeds (CenterNet, DynamicDet,
the tomogram chain) and the scores of the three pickers are printed side by side."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")


def test_quick_demo_runs_every_picker(tmp_path):
    from click.testing import CliRunner

    from cryoglean.demo import SCORED, demo_command

    res = CliRunner().invoke(demo_command, [str(tmp_path / "d"), "--quick"])
    assert res.exit_code == 0, res.output
    table = res.output.split("Scores on the held-out data")[1].split("Demo finished")[0]
    for name, folder in SCORED:
        m = json.loads((tmp_path / "d" / folder / "metrics.json").read_text())["summary"]
        row = next(line for line in table.splitlines() if line.strip().startswith(name))
        # picks, truth, precision, recall, F1, best F1, AUPRC
        assert row.split()[-7:-5] == [str(m["n_picks"]), str(m["n_truth"])]
        assert float(row.split()[-3]) == pytest.approx(m["f1"], abs=5e-4)
    tomo = json.loads((tmp_path / "d" / "evaluation-tomo" / "metrics.json").read_text())
    assert tomo["summary"]["dims"] == 3 and tomo["summary"]["n_truth"] == 12
    # the report of the demo's catalog and runs, and where it is
    site = tmp_path / "d" / "report"
    assert (site / "index.html").is_file() and list((site / "projects").glob("*.html"))
    assert "$ cryoglean report --db" in res.output and "--runs" in res.output
    assert f"open {(site / 'index.html').as_uri()}" in res.output
    assert list((site / "runs").iterdir())  # the CenterNet and tomogram runs are in it
