"""Nightly status that tells the truth: a crawl exits 3 while a known problem is unresolved, on
every following night, until the file is fixed or removed."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from cryoglean.cli import main
from harvest.catalog import Catalog
from harvest.catalog.problems import open_problems


@pytest.fixture()
def cs_copy(tmp_path):
    from harvest.synth import FacilityConfig, make_facility

    fac = make_facility(tmp_path / "gen", FacilityConfig(versions=("cryosparc",),
                                                          n_micrographs=2))
    copy = tmp_path / "fac"
    shutil.copytree(fac.root, copy, symlinks=True)
    proj = copy / os.path.relpath(fac.projects["cryosparc"], fac.root)
    return copy, proj


def _crawl(root, db, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["crawl", str(root), "--db", str(db), "--json"])
    return code, json.loads(capsys.readouterr().out)


def _passthrough(proj):
    found = sorted(proj.glob("J*/J*_passthrough_particles*.cs"))
    assert found, f"no passthrough particle file under {proj}"
    return found[-1]


def test_problem_stays_open_until_the_file_is_fixed(cs_copy, tmp_path, capsys):
    root, proj = cs_copy
    db = tmp_path / "c.db"
    victim = _passthrough(proj)
    saved = victim.read_bytes()
    victim.unlink()
    code, s1 = _crawl(root, db, capsys)
    assert code == 3 and s1["problems"] >= 1 and s1["open_problems"] >= 1
    # nothing changed: the job is not parsed again, the problem is still open (exit 3)
    for _night in range(2):
        code, s = _crawl(root, db, capsys)
        assert (code, s["problems"], s["parsed_jobs"]) == (3, 0, 0), s
        assert s["open_problems"] == s1["open_problems"]
    with Catalog(db, readonly=True) as cat:
        pid = cat.find_project(str(proj))
        still = open_problems(cat.conn, pid)
        assert victim.name in " ".join(still["path"]) + " ".join(still["error"])
    assert main(["show", str(proj), "--db", str(db)]) == 0
    assert victim.name in capsys.readouterr().out
    victim.write_bytes(saved)  # fixed
    code, s = _crawl(root, db, capsys)
    assert (code, s["open_problems"]) == (0, 0), s
    with Catalog(db, readonly=True) as cat:
        assert open_problems(cat.conn, cat.find_project(str(proj))).empty
        assert open_problems(cat.conn).empty
    code, s = _crawl(root, db, capsys)
    assert code == 0, s


def test_removed_project_resolves_its_problem(cs_copy, tmp_path, capsys):
    root, proj = cs_copy
    # a second, healthy project: the root still holds one after the first is archived
    shutil.copytree(proj, proj.parent / "CS-healthy", symlinks=True)
    db = tmp_path / "c.db"
    victim = _passthrough(proj)
    victim.unlink()
    assert _crawl(root, db, capsys)[0] == 3
    assert _crawl(root, db, capsys)[0] == 3
    shutil.rmtree(proj)  # the project is gone (archived): its problems with it
    code, s = _crawl(root, db, capsys)
    assert (code, s["open_problems"]) == (0, 0), s


def test_unreadable_project_stays_a_problem_every_night(cs_copy, tmp_path, capsys):
    root, _healthy = cs_copy
    proj = root / "CS-bad"
    (proj / "J1").mkdir(parents=True)
    (proj / "project.json").write_bytes(b"\xff\xfe not json")
    (proj / "J1" / "job.json").write_text("[1, 2")
    db = tmp_path / "c.db"
    for _night in range(2):
        code, s = _crawl(root, db, capsys)
        assert code == 3 and s["open_problems"] >= 1
    shutil.rmtree(proj)
    code, s = _crawl(root, db, capsys)
    assert (code, s["open_problems"]) == (0, 0), s
