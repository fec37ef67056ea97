"""`--json` on every command that reports something, and CRYOGLEAN_DB as the default --db."""

from __future__ import annotations

import json

import pytest

from cryoglean.cli import main


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    from harvest.synth import FacilityConfig, make_facility

    tmp = tmp_path_factory.mktemp("json")
    fac = make_facility(tmp / "fac", FacilityConfig(versions=("cryosparc",), n_micrographs=3))
    db = tmp / "c.db"
    assert main(["crawl", str(fac.root), "--db", str(db), "-q"]) == 0
    return tmp, fac, db


def _json(capsys, args, code=0):
    capsys.readouterr()
    assert main(args) == code
    out = capsys.readouterr().out
    return json.loads(out)


def test_db_from_the_environment_and_json(crawled, capsys, monkeypatch):
    tmp, fac, db = crawled
    monkeypatch.setenv("CRYOGLEAN_DB", str(db))
    projects = _json(capsys, ["ls", "--json"])
    assert len(projects) == 1 and projects[0]["title"] == "cryoglean demo"
    assert projects[0]["stages"]["refined"] > 0 and projects[0]["problems"] == 0
    shown = _json(capsys, ["show", "cryoglean demo", "--json"])
    assert shown["project"]["id"] == projects[0]["id"]
    assert {j["key"] for j in shown["jobs"]} >= {"J1", "J9"}
    per_mic = sum(c.get("refined", 0) for c in shown["micrographs"].values())
    assert per_mic == projects[0]["stages"]["refined"]
    exported = _json(capsys, ["export", "thi", "-o", str(tmp / "ds"), "--project",
                              "cryoglean demo", "--json", "-q"])
    assert exported["format"] == "thi" and exported["counts"]
    imported = _json(capsys, ["import", "thi", str(tmp / "ds" / "val" / "labels"),
                              "--project", "cryoglean demo", "--name", "other", "--json"])
    assert imported["particles"] > 0 and imported["name"] == "other"
    rep = _json(capsys, ["report", "-o", str(tmp / "site"), "--json", "-q"])
    assert rep["projects"] == 1 and rep["evaluations"] == 1
    crawl = _json(capsys, ["crawl", str(fac.root), "--json", "-q"])
    assert crawl["open_problems"] == 0
    monkeypatch.delenv("CRYOGLEAN_DB")
    capsys.readouterr()
    assert main(["ls"]) == 2  # no --db and no CRYOGLEAN_DB: a usage error naming both
    assert "CRYOGLEAN_DB" in capsys.readouterr().err


def test_train_and_pick_json(tmp_path, capsys):
    pytest.importorskip("pytorch_lightning")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "trainers"))
    from test_trainers_helpers import write_dataset

    img, lab, _ = write_dataset(tmp_path / "d", n_mics=2, n=128, count=4, radius=6,
                                mode="particle")
    tiny = ["--width", "4", "--head_conv", "8", "--input_width", "128", "--crop", "64",
            "--particle_size", "16", "--batch_size", "2", "--num_epoch", "1", "--edge", "2",
            "--quiet"]
    trained = _json(capsys, ["train", "centernet", "--data", str(img), "--label", str(lab),
                             "--label_type", "thi", "--exp_id", "r", "--output",
                             str(tmp_path / "runs"), *tiny, "--json"])
    assert Path(trained["last"]).is_file()
    picked = _json(capsys, ["pick", "centernet", "--data", str(img), "--load_model",
                            trained["last"], "--output", str(tmp_path / "p"), "--output_type",
                            "thi", "--quiet", "--json"])
    assert picked["micrographs"] == 2 and "picks" in picked
