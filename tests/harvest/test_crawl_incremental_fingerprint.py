"""Re-crawls that skip unchanged projects by their fingerprint (:mod:`harvest.fingerprint`)
still find every change: one test per shortcut the fingerprint takes.

Fingerprints of files changed less than ``RACY_NS`` before a scan are not trusted; these tests
write their projects just before crawling, so they set ``RACY_NS = 0`` (files written before the
scan started count as settled) except where the racy rule itself is tested.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import time

import pytest

import harvest.cryosparc
import harvest.relion
from harvest import fingerprint
from harvest.catalog import Catalog
from harvest.crawl import _unchanged, crawl

PARSERS = {"cryosparc": harvest.cryosparc, "relion": harvest.relion}


@pytest.fixture
def fac(facility, tmp_path):
    """A private copy of the session's generated facility: (root, {name: project path})."""
    root = tmp_path / "facility"
    shutil.copytree(facility.root, root, symlinks=True)
    return root, {name: root / os.path.relpath(p, facility.root)
                  for name, p in facility.projects.items()}


@pytest.fixture
def settled(monkeypatch):
    monkeypatch.setattr(fingerprint, "RACY_NS", 0)


@pytest.fixture
def scans(monkeypatch):
    """Project roots that crawls scanned (fingerprint refused or absent), in order."""
    seen: list[str] = []
    for parser in PARSERS.values():
        real = parser.scan_project

        def counted(root, _real=real):
            seen.append(os.path.abspath(root))
            return _real(root)

        monkeypatch.setattr(parser, "scan_project", counted)
    return seen


def _fingerprinted(db) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute(
            "SELECT p.root FROM project_fingerprints f JOIN projects p ON p.id = f.project_id")}
    finally:
        con.close()


def _parsed_jobs(db, root) -> dict[str, str]:
    with Catalog(db, readonly=True) as cat:
        pid = cat.find_project(str(root))
        return dict(cat.conn.execute("SELECT key, parsed_at FROM jobs WHERE project_id = ?",
                                     (pid,)).fetchall())


def _rows(db) -> dict[str, list]:
    with Catalog(db, readonly=True) as cat:
        return {t: cat.table_rows(t, exclude=("parsed_at", "last_crawl", "first_seen", "id"))
                for t in ("jobs", "particle_sets", "micrographs", "files")}


def _comparable(scan) -> dict:
    d = dataclasses.asdict(scan)
    d.pop("extra")
    return d


def test_unchanged_projects_are_not_scanned_again(fac, settled, scans, tmp_path):
    """Shortcut 1: matching stats stand for the whole scan; what they skip is exactly a project
    the full path would also have found unchanged."""
    root, projects = fac
    db = tmp_path / "c.db"
    first = crawl([root], db, progress=False)
    assert first.problems == 0
    roots = {str(p) for p in projects.values()}
    assert _fingerprinted(db) == roots
    with Catalog(db) as cat:  # each fingerprint stands for a project the full path leaves alone
        for r in roots:
            parser = PARSERS[cat.projects().set_index("root").at[r, "software"]]
            assert _unchanged(parser.scan_project(r), cat.project_state(r), cat), r
    rows = _rows(db)
    scans.clear()
    again = crawl([root], db, progress=False)
    assert scans == [] and again.projects == len(roots)
    assert (again.parsed_jobs, again.new_jobs, again.problems) == (0, 0, 0)
    assert _rows(db) == rows
    with Catalog(db, readonly=True) as cat:  # visited: last_crawl moved on
        last = cat.conn.execute("SELECT max(id) FROM crawls").fetchone()[0]
        assert cat.conn.execute("SELECT finished_at FROM crawls WHERE id = ?",
                                (last,)).fetchone()[0]


def test_a_changed_file_in_any_job_is_found(fac, settled, scans, tmp_path):
    """Shortcut 1, per job: touching any file a job's stamps name brings the project back to the
    full path, and exactly that job is parsed again."""
    root, projects = fac
    db = tmp_path / "c.db"
    crawl([root], db, progress=False)
    with Catalog(db, readonly=True) as cat:
        files = cat.conn.execute(
            "SELECT p.root, j.key, f.path FROM files f JOIN jobs j ON j.id = f.job_id "
            "JOIN projects p ON p.id = f.project_id WHERE j.harvested = 1 "
            "ORDER BY p.root, j.key, f.path").fetchall()
    by_job: dict[tuple[str, str], str] = {}
    for proj, key, path in files:
        by_job.setdefault((proj, key), path)
    assert len({p for p, _ in by_job}) == len(projects)
    for (proj, key), path in sorted(by_job.items()):
        before = _parsed_jobs(db, proj)
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        scans.clear()
        s = crawl([root], db, progress=False)
        after = _parsed_jobs(db, proj)
        assert scans == [proj], (proj, key)
        assert s.parsed_jobs >= 1
        assert key in [k for k in after if after[k] != before[k]], (proj, key, path)


_PROBES = ("RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE", "run_it999_data.star",
           "run_data.star", "particles.star", "x_autopick.star", "coords_suffix_x.star",
           "J999", "job.json", "project.json", "job_manifest.json", "note.txt")


def _mutations(proj):
    """Every file (append a byte) and every folder (create the names scans look for) below
    ``proj``, micrograph links aside."""
    for dirpath, _dirs, files in os.walk(proj):
        yield "dir", dirpath
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                yield "file", p


def test_the_fingerprint_covers_everything_the_scan_reads(fac, settled):
    """Shortcut 2 (folders stand for their listings; only what the scan reads is recorded):
    every file and folder of each project is either recorded in its fingerprint (any change
    changes its stat) or can change without changing what ``scan_project`` returns."""
    _, projects = fac
    for name, proj in sorted(projects.items()):
        parser = PARSERS["relion" if name.startswith("relion") else "cryosparc"]
        started = time.time_ns()
        scan = parser.scan_project(str(proj))
        fp = fingerprint.take(scan, *parser.scan_depends(scan), started_ns=started)
        assert fp is not None and fingerprint.matches(str(proj), fp), proj
        recorded = {os.path.join(proj, p) for p in fp.paths}
        assert str(proj / "default_pipeline.star") in recorded or name == "cryosparc"
        unrecorded = 0
        for kind, path in list(_mutations(proj)):
            if path in recorded:
                continue
            unrecorded += 1
            if kind == "file":
                size = os.path.getsize(path)
                with open(path, "ab") as fh:
                    fh.write(b"\n")
                undo = [lambda p=path, n=size: os.truncate(p, n)]
            else:
                made = [os.path.join(path, n) for n in _PROBES
                        if not os.path.lexists(os.path.join(path, n))]
                for p in made:
                    open(p, "w").close()
                undo = [lambda p=p: os.remove(p) for p in made]
            try:
                assert _comparable(parser.scan_project(str(proj))) == _comparable(scan), path
            finally:
                for u in undo:
                    u()
        assert unrecorded > 0  # the test changed something the fingerprint leaves out


def test_new_entries_in_listed_folders_are_found(fac, settled, scans, tmp_path):
    """Shortcut 2, end to end: a new Class2D iteration, a new coordinate file of a pick job and a
    new CryoSPARC job appear only as folder entries; each is parsed by the next crawl."""
    root, projects = fac
    db = tmp_path / "c.db"
    crawl([root], db, progress=False)
    rel = projects["relion31"]
    cls = sorted((rel / "Class2D").glob("job*/run_it*_data.star"))[-1]
    before = _parsed_jobs(db, rel)
    shutil.copy(cls, cls.parent / "run_it099_data.star")
    scans.clear()
    s = crawl([root], db, progress=False)
    after = _parsed_jobs(db, rel)
    assert scans == [str(rel)]
    # the Class2D job, and a Select reading its last iteration for the rejected particles
    assert f"Class2D/{cls.parent.name}" in [k for k in after if after[k] != before[k]]

    pick = sorted(rel.glob("AutoPick/job*/**/*_autopick.star"))[0]
    shutil.copy(pick, pick.parent / ("extra_" + pick.name))
    s = crawl([root], db, progress=False)
    assert s.parsed_jobs == 1
    with Catalog(db, readonly=True) as cat:
        paths = {r[0] for r in cat.conn.execute("SELECT path FROM files")}
    assert str(pick.parent / ("extra_" + pick.name)) in paths

    cs = projects["cryosparc"]
    shutil.copytree(cs / "J9", cs / "J99")
    doc = json.loads((cs / "J99" / "job.json").read_text())
    doc["uid"] = "J99"
    (cs / "J99" / "job.json").write_text(json.dumps(doc))
    scans.clear()
    s = crawl([root], db, progress=False)
    assert scans == [str(cs)] and s.new_jobs == 1


def test_racy_fingerprints_are_not_recorded(fac, scans, tmp_path, monkeypatch):
    """Shortcut 3 (the racy rule): with the default window, projects written just now get no
    fingerprint; a change made while a project is being scanned is found by the next crawl."""
    root, projects = fac
    db = tmp_path / "c.db"
    crawl([root], db, progress=False)
    assert _fingerprinted(db) == set()
    # a window of 50 ms: more than a tick of the kernel's coarse clock, which stamps ctimes
    # (a change made during the scan may get a ctime a little before the scan started)
    monkeypatch.setattr(fingerprint, "RACY_NS", 50_000_000)
    rel = projects["relion40"]
    cls = sorted((rel / "Class2D").glob("job*/run_it*_data.star"))[-1]
    real = harvest.relion.scan_project

    def scan_then_change(r):
        scan = real(r)
        if os.path.abspath(r) == str(rel) and not (cls.parent / "run_it099_data.star").exists():
            shutil.copy(cls, cls.parent / "run_it099_data.star")  # after the scan listed it
        return scan

    monkeypatch.setattr(harvest.relion, "scan_project", scan_then_change)
    crawl([root], db, progress=False)
    assert str(rel) not in _fingerprinted(db)
    assert _fingerprinted(db) == {str(p) for p in projects.values()} - {str(rel)}
    before = _parsed_jobs(db, rel)
    crawl([root], db, progress=False)
    after = _parsed_jobs(db, rel)
    assert f"Class2D/{cls.parent.name}" in [k for k in after if after[k] != before[k]]


def test_same_size_same_mtime_rewrite_leaves_the_fast_path(fac, settled, scans, tmp_path):
    """Shortcut 3 (ctime): a file rewritten with the same size and its old mtime put back
    keeps its (size, mtime) stamp but not its ctime: the project is scanned again."""
    root, projects = fac
    db = tmp_path / "c.db"
    crawl([root], db, progress=False)
    rel = projects["relion50"]
    star = rel / "default_pipeline.star"
    st = star.stat()
    star.write_bytes(star.read_bytes())
    os.utime(star, ns=(st.st_atime_ns, st.st_mtime_ns))
    scans.clear()
    crawl([root], db, progress=False)
    assert scans == [str(rel)]
    scans.clear()
    crawl([root], db, progress=False)  # settled again: skipped
    assert scans == []


def test_projects_with_problems_take_the_full_path(fac, settled, scans, tmp_path):
    """Shortcut 4 (no problems carried on the fast path): a project with an open problem keeps
    no fingerprint, so every crawl carries its problem forward, as before."""
    root, projects = fac
    db = tmp_path / "c.db"
    crawl([root], db, progress=False)
    cs = projects["cryosparc"]
    jj = cs / "J5" / "job.json"
    good = jj.read_text()
    jj.write_text(good[: len(good) // 2])
    for _ in range(2):
        scans.clear()
        s = crawl([root], db, progress=False)
        assert scans == [str(cs)] and s.open_problems == 1
        assert str(cs) not in _fingerprinted(db)
    jj.write_text(good)
    s = crawl([root], db, progress=False)
    assert s.open_problems == 0 and s.parsed_jobs == 1
    assert str(cs) in _fingerprinted(db)


def test_new_code_or_a_missing_project_scans_again(fac, settled, scans, tmp_path, monkeypatch):
    """Shortcut 5 (fingerprints are trusted only for this code and for ``ok`` projects)."""
    root, projects = fac
    db = tmp_path / "c.db"
    crawl([root], db, progress=False)
    real = fingerprint.scanner_id
    monkeypatch.setattr(fingerprint, "scanner_id", lambda s: real(s) + "-new")
    scans.clear()
    crawl([root], db, progress=False)
    assert sorted(scans) == sorted(str(p) for p in projects.values())
    scans.clear()
    crawl([root], db, progress=False)
    assert scans == []
    # a project the catalog does not hold as ok (e.g. marked missing by a crawl that did not
    # find it) is scanned, even though its fingerprint would match
    cs = projects["cryosparc"]
    con = sqlite3.connect(db)
    con.execute("UPDATE projects SET status = 'missing' WHERE root = ?", (str(cs),))
    con.commit()
    con.close()
    scans.clear()
    crawl([root], db, progress=False)
    assert scans == [str(cs)]
    with Catalog(db, readonly=True) as cat:
        assert cat.projects().set_index("root").at[str(cs), "status"] == "ok"
