"""Project discovery on real trees under tmp_path: markers, nesting, job folders, permission
errors, symlink loops, dangling links, non-UTF-8 names, exclusions."""

from __future__ import annotations

import os

import pytest

from harvest import discover as disc
from harvest.discover import discover


def _cs(root, jobs=("J1", "J2")):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "project.json"), "w") as f:
        f.write("{}")
    for j in jobs:
        os.makedirs(os.path.join(root, j), exist_ok=True)
        with open(os.path.join(root, j, "job.json"), "w") as f:
            f.write("{}")
    return str(root)


def _relion(root):
    os.makedirs(os.path.join(root, "Class2D", "job007"), exist_ok=True)
    os.makedirs(os.path.join(root, "Extract", "job006"), exist_ok=True)
    with open(os.path.join(root, "default_pipeline.star"), "w") as f:
        f.write("data_pipeline_general\n")
    return str(root)


def _roots(d):
    return [(p.root, p.software) for p in d.projects]


def test_markers_and_nesting(tmp_path):
    cs = _cs(tmp_path / "lab" / "CS-proj")
    rel = _relion(tmp_path / "lab" / "relion-proj")
    # a project nested in a non-job subfolder of another project is found ...
    nested = _cs(tmp_path / "lab" / "CS-proj" / "exports" / "CS-inner")
    # ... but nothing inside job folders is looked at
    _cs(tmp_path / "lab" / "CS-proj" / "J1" / "ghost")
    _relion(tmp_path / "lab" / "relion-proj" / "Class2D" / "job007" / "ghost")
    # unknown RELION job-type folder holding jobNNN/ is skipped too
    os.makedirs(tmp_path / "lab" / "relion-proj" / "MyTool" / "job009")
    _cs(tmp_path / "lab" / "relion-proj" / "MyTool" / "job009" / "ghost")
    rel_nested = _relion(tmp_path / "lab" / "relion-proj" / "Movies" / "sub")
    # project.json without jobs or workspaces is not CryoSPARC
    os.makedirs(tmp_path / "lab" / "node")
    (tmp_path / "lab" / "node" / "project.json").write_text("{}")
    d = discover([tmp_path])
    assert _roots(d) == sorted([(cs, "cryosparc"), (nested, "cryosparc"), (rel, "relion"),
                                (rel_nested, "relion")], key=lambda t: os.fsencode(t[0]))
    assert d.problems == []
    # a root that is itself a project
    assert _roots(discover([cs])) == [(cs, "cryosparc"), (nested, "cryosparc")]


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover([tmp_path / "nope"])


def test_permission_denied_folder_becomes_problem(tmp_path, monkeypatch):
    """Tests run as root, for whom chmod 000 does not deny a listing; so os.scandir is made to
    raise PermissionError for one folder, as it does for an unprivileged crawler."""
    ok = _cs(tmp_path / "a" / "CS-ok")
    locked = tmp_path / "b" / "locked"
    _cs(locked / "CS-hidden")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fsdecode(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(disc.os, "scandir", scandir)
    d = discover([tmp_path])
    assert _roots(d) == [(ok, "cryosparc")]
    assert len(d.problems) == 1
    assert d.problems[0].path == str(locked)
    assert "Permission denied" in d.problems[0].error


def test_symlink_loop_and_dangling_link(tmp_path):
    cs = _cs(tmp_path / "data" / "CS-a")
    os.symlink(tmp_path / "data", tmp_path / "data" / "loop")  # loop back to the parent
    os.symlink(tmp_path / "gone", tmp_path / "data" / "dangling")
    os.symlink(tmp_path / "data" / "CS-a", tmp_path / "data" / "zz-link-to-a")  # same project
    d = discover([tmp_path])
    assert _roots(d) == [(cs, "cryosparc")]
    assert d.problems == []


def test_symlinked_project_is_found_once(tmp_path):
    real = _cs(tmp_path / "store" / "CS-real")
    os.makedirs(tmp_path / "root")
    os.symlink(real, tmp_path / "root" / "linked")
    d = discover([tmp_path / "root"])
    assert _roots(d) == [(str(tmp_path / "root" / "linked"), "cryosparc")]


def test_non_utf8_names(tmp_path):
    base = os.fsencode(str(tmp_path))
    odd = os.path.join(base, b"caf\xe9-lab")
    os.makedirs(odd)
    _cs(os.fsdecode(os.path.join(odd, b"CS-x")))
    with open(os.path.join(odd, b"\xff\xfe.txt"), "wb") as f:
        f.write(b"x")
    d = discover([tmp_path])
    assert len(d.projects) == 1
    root = d.projects[0].root
    assert os.fsencode(root) == os.path.join(odd, b"CS-x")
    assert os.path.isfile(os.path.join(root, "project.json"))


def test_exclusions(tmp_path):
    keep = _cs(tmp_path / "keep" / "CS-1")
    _cs(tmp_path / "scratch" / "CS-2")
    _relion(tmp_path / "keep" / "trash-relion")
    d = discover([tmp_path], excludes=["*/scratch", "trash-*"])
    assert _roots(d) == [(keep, "cryosparc")]


def test_cli_missing_root_is_fatal(tmp_path, capsys):
    from cryoglean.cli import main

    code = main(["crawl", str(tmp_path / "nope"), "--db", str(tmp_path / "c.db"), "--quiet"])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err
