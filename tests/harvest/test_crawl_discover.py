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
    os.symlink(real, tmp_path / "root" / "linked-again")
    # a root made of links to projects stored elsewhere needs --follow-symlinks any
    assert discover([tmp_path / "root"]).projects == []
    d = discover([tmp_path / "root"], follow_symlinks="any")
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


# --- the boundary: the walk stays inside the roots -------------------------------------------


def _boundary_tree(tmp_path):
    """fac/ with a project, a link inside the facility, and links out of it: to a sibling folder
    holding a trap project, to /, and to /proc."""
    fac = tmp_path / "fac"
    inside = _cs(fac / "lab" / "P1")
    trap = _cs(tmp_path / "outside" / "trap-project")
    os.symlink(tmp_path / "outside", fac / "escape")
    os.symlink("/", fac / "root-link")
    os.symlink("/proc", fac / "proc-link")
    os.symlink(fac / "lab", fac / "lab-again")  # inside: a second way to the same folder
    os.makedirs(fac / "archive")
    os.symlink(os.path.join("..", "lab"), fac / "archive" / "relative-lab")  # inside, relative
    return fac, inside, trap


def test_links_out_of_the_roots_are_not_walked(tmp_path):
    fac, inside, trap = _boundary_tree(tmp_path)
    d = discover([str(fac)])
    assert _roots(d) == [(inside, "cryosparc")]
    skipped = dict(d.skipped_links)
    assert skipped[str(fac / "escape")] == str(tmp_path / "outside")
    assert skipped[str(fac / "root-link")] == "/"
    assert str(fac / "proc-link") in skipped
    assert str(fac / "lab-again") not in skipped  # inside the roots: followed (then deduplicated)
    assert d.problems == []  # links to raw data outside a facility are normal: no problem rows


def test_follow_symlinks_never_and_any(tmp_path):
    fac, inside, trap = _boundary_tree(tmp_path)
    os.remove(fac / "root-link")  # 'any' would walk the whole machine through it
    never = discover([str(fac)], follow_symlinks="never")
    assert _roots(never) == [(inside, "cryosparc")]
    assert str(fac / "lab-again") in dict(never.skipped_links)
    anyway = discover([str(fac)], follow_symlinks="any")
    assert _roots(anyway) == sorted([(inside, "cryosparc"),
                                     (str(fac / "escape" / "trap-project"), "cryosparc")])
    with pytest.raises(ValueError, match="follow-symlinks"):
        discover([str(fac)], follow_symlinks="sometimes")


def test_kernel_filesystems_are_never_entered(tmp_path, monkeypatch):
    """Even when a link to /proc is followed ('any'), or /proc is a root, nothing is listed."""
    if not os.path.ismount("/proc"):
        pytest.skip("/proc is not mounted here")
    assert os.stat("/proc").st_dev in disc.special_devices()
    listed = []
    real_scandir = os.scandir

    def spy(path):
        listed.append(os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(disc.os, "scandir", spy)
    fac = tmp_path / "fac"
    _cs(fac / "P1")
    os.symlink("/proc", fac / "proc-link")
    d = discover([str(fac)], follow_symlinks="any")
    assert _roots(d) == [(str(fac / "P1"), "cryosparc")]
    assert not [p for p in listed if "proc-link" in p]
    listed.clear()
    assert discover(["/proc"]).projects == []
    assert listed == []


def test_crawl_of_a_facility_with_an_escape_link_stays_inside(tmp_path):
    """The end-to-end case of the audit: ``fac/escape -> /`` took the crawl through /proc and
    other users' folders. Now the trap project beside the facility is never opened."""
    from harvest.crawl import crawl

    fac, inside, trap = _boundary_tree(tmp_path)
    os.chmod(os.path.join(trap, "project.json"), 0)  # would be a problem row if opened
    summary = crawl([str(fac)], tmp_path / "c.db", progress=False)
    assert summary.roots == [inside]
    os.chmod(os.path.join(trap, "project.json"), 0o644)
