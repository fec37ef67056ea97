"""A crawl against hostile conditions: SIGKILL at random points, a read-only facility, bad
input files, and ``watch`` reacting to a new job and shutting down on SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from harvest.catalog import DATA_TABLES, Catalog
from harvest.crawl import KILL_ENV, crawl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOKKEEPING = {
    "projects": ("last_crawl", "first_seen"),
    "jobs": ("parsed_at",),
    "files": ("id", "parsed_at"),
    "problems": ("id", "crawl_id"),
}


def snapshot(db) -> dict[str, list[tuple]]:
    with Catalog(db, readonly=True) as cat:
        return {t: cat.table_rows(t, exclude=BOOKKEEPING.get(t, ())) for t in DATA_TABLES}


@pytest.fixture(scope="module")
def fac(request, tmp_path_factory):
    """The shared generated facility once both parsers exist; until the RELION parser lands, a
    CryoSPARC-only facility."""
    pytest.importorskip("harvest.synth", reason="harvest.synth (SYNTH) not there yet")
    pytest.importorskip("harvest.cryosparc", reason="harvest.cryosparc (CSPARC) not there yet")
    try:
        import harvest.relion  # noqa: F401
    except ImportError:
        from harvest.synth import FacilityConfig, make_facility

        root = tmp_path_factory.mktemp("cs_facility")
        return make_facility(root / "facility", FacilityConfig(versions=("cryosparc",)))
    return request.getfixturevalue("facility")


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "cryoglean.cli", *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, **kw)


def _copy(fac, tmp_path):
    dst = tmp_path / "fac"
    shutil.copytree(fac.root, dst, symlinks=True)
    return dst


def _proj(fac, copy, name):
    if name not in fac.projects:
        pytest.skip(f"no {name} project in the facility")
    return copy / os.path.relpath(fac.projects[name], fac.root)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(fac, tmp_path):
    ref = tmp_path / "ref.db"
    res = _cli("crawl", fac.root, "--db", ref, "--quiet")
    assert res.returncode == 0, res.stderr
    expected = snapshot(ref)
    rng = random.Random(20261121)
    # write events of a full crawl: one per job, particle set and project commit
    n_events = len(expected["jobs"]) + len(expected["particle_sets"]) + len(expected["projects"])
    points = sorted(rng.sample(range(1, n_events), 4))
    db = tmp_path / "killed.db"
    killed = 0
    for n in points:
        env = {**os.environ, KILL_ENV: str(n)}
        res = _cli("crawl", fac.root, "--db", db, "--quiet", env=env)
        if res.returncode == -signal.SIGKILL:
            killed += 1
        else:  # the resumed crawl had fewer events left than n
            assert res.returncode == 0, res.stderr
        # whatever was committed is whole: every set has all its particles
        with Catalog(db, readonly=True) as cat:
            bad = cat.conn.execute(
                "SELECT s.id FROM particle_sets s LEFT JOIN (SELECT set_id, count(*) AS n "
                "FROM particles GROUP BY set_id) p ON p.set_id = s.id "
                "WHERE s.count != coalesce(p.n, 0)").fetchall()
            assert bad == []
    assert killed >= 1
    res = _cli("crawl", fac.root, "--db", db, "--quiet")
    assert res.returncode == 0, res.stderr
    got = snapshot(db)
    for table in DATA_TABLES:
        assert got[table] == expected[table], table


def _state(root) -> dict[str, tuple]:
    """Content hash, mode and mtime of every file, link and folder under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[p] = ("link", os.readlink(p), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[p] = ("dir", st.st_mtime_ns, st.st_mode)
            else:
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out[p] = ("file", digest, st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def test_read_only_facility_is_not_touched(fac, tmp_path):
    """chmod -R a-w alone proves little when tests run as root (root writes anyway), so the
    real check is that every file's content hash, size, mode and mtime, and every folder's
    listing and mtime, are the same after the crawl."""
    copy = _copy(fac, tmp_path)
    for dirpath, dirnames, filenames in os.walk(copy):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode & ~0o222)
    os.chmod(copy, os.stat(copy).st_mode & ~0o222)
    before = _state(copy)
    time.sleep(0.01)
    try:
        summary = crawl([copy], tmp_path / "ro.db", progress=False)
        assert summary.problems == 0 and summary.new_particles > 0
        assert _state(copy) == before
    finally:
        for dirpath, dirnames, _ in os.walk(copy):
            for name in dirnames:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    os.chmod(p, 0o755)
        os.chmod(copy, 0o755)


def _problems(db) -> list[tuple[str, str]]:
    with Catalog(db, readonly=True) as cat:
        return [(r.path, r.error) for r in cat.problems().itertuples()]


def test_bad_input_becomes_problems(fac, tmp_path, monkeypatch, capsys):
    copy = _copy(fac, tmp_path)
    cs = _proj(fac, copy, "cryosparc")
    broken = {}

    def main_cs(job):
        doc = json.loads((cs / job / "job.json").read_text())
        files = [m for r in doc["output_results"] if not r.get("passthrough")
                 for m in r["metafiles"][-1:]]
        return cs / files[0]

    # truncated .cs
    p = main_cs("J4")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    broken["truncated .cs"] = p
    # garbage .cs
    p = main_cs("J5")
    p.write_bytes(os.urandom(3000))
    broken["garbage .cs"] = p
    # object-dtype .cs (a pickle inside .npy)
    p = main_cs("J6")
    with open(p, "wb") as f:
        np.save(f, np.array([{"uid": 1}, "x"], dtype=object), allow_pickle=True)
    broken["object-dtype .cs"] = p
    # invalid job.json
    p = cs / "J9" / "job.json"
    p.write_text('{"uid": "J9", "type": ')
    broken["invalid job.json"] = p
    rel_names = [n for n in fac.projects if n.startswith("relion")]
    untouched = set(fac.projects) - {"cryosparc"}
    if rel_names:
        rel = _proj(fac, copy, rel_names[0])
        p = rel / "Extract" / "job006" / "particles.star"
        p.write_text("data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
                     "12.0\nnot-a-number 7 8 9\n\x00\x01garbage\n")
        broken["malformed STAR"] = p
        untouched.discard(rel_names[0])
    # a micrograph that jobs refer to is gone (J2's motion-corrected output)
    mc = sorted((cs / "J2" / "motioncorrected").iterdir())[0]
    mc.unlink()
    # an unreadable folder: as root chmod does not deny, so os.scandir raises for it
    hidden = copy / "archive"
    hidden.mkdir()
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fsdecode(path) == str(hidden):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    import harvest.discover

    monkeypatch.setattr(harvest.discover.os, "scandir", scandir)
    from cryoglean.cli import main

    db = tmp_path / "bad.db"
    code = main(["crawl", str(copy), "--db", str(db), "--quiet"])
    assert code == 3
    problems = _problems(db)
    text = "\n".join(f"{p}: {e}" for p, e in problems)
    for what, path in broken.items():
        hits = [1 for p, e in problems if str(path) in p or str(path) in e
                or (os.path.basename(path) in e and os.path.dirname(path) in p)]
        assert len(hits) == 1, f"{what} ({path}) in {len(hits)} problem rows:\n{text}"
    assert sum(mc.name in p or mc.name in e for p, e in problems) >= 1, text
    assert [p for p, _ in problems if p == str(hidden)] == [str(hidden)], text
    # the rest is harvested: untouched projects have every expected set, and so do the
    # CryoSPARC jobs that were not broken
    with Catalog(db, readonly=True) as cat:
        for name in sorted(untouched):
            pid = cat.find_project(str(fac.projects[name]).replace(str(fac.root), str(copy)))
            sets = cat.particle_sets(project_ids=[pid])
            have = {(r.job_key, r.name): r.count for r in sets.itertuples()}
            for exp in fac.expected_sets(name):
                assert have.get((exp["job"], exp["name"])) == exp["count"], (name, exp["job"])
        pid = cat.find_project(str(cs))
        have = {(r.job_key, r.name) for r in cat.particle_sets(project_ids=[pid]).itertuples()}
        assert ("J8", "particles_selected") in have and ("J10", "particles_class_0") in have
    capsys.readouterr()
    assert main(["show", str(cs), "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert "problems at the last crawl" in shown and broken["garbage .cs"].name in shown


def test_problems_each_crawl_and_no_crash_on_garbage_project(tmp_path):
    """A project whose bookkeeping is garbage is one problem row; the crawl exits 3."""
    pytest.importorskip("harvest.cryosparc", reason="harvest.cryosparc (CSPARC) not there yet")
    proj = tmp_path / "root" / "CS-bad"
    (proj / "J1").mkdir(parents=True)
    (proj / "project.json").write_bytes(b"\xff\xfe not json")
    (proj / "J1" / "job.json").write_text("[1, 2")
    res = _cli("crawl", tmp_path / "root", "--db", tmp_path / "c.db", "--json")
    assert res.returncode == 3, res.stderr
    summary = json.loads(res.stdout)
    assert summary["problems"] >= 1 and summary["projects"] == 1
    con = sqlite3.connect(tmp_path / "c.db")
    assert con.execute("SELECT count(*) FROM problems").fetchone()[0] == summary["problems"]
    con.close()


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (sqlite3.Error, ValueError, FileNotFoundError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _job_keys(db) -> set[str]:
    with Catalog(db, readonly=True) as cat:
        return set(cat.jobs()["key"])


@pytest.mark.slow
def test_watch_picks_up_new_job_and_stops_on_sigterm(fac, tmp_path):
    copy = _copy(fac, tmp_path)
    cs = _proj(fac, copy, "cryosparc")
    db = tmp_path / "watch.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryoglean.cli", "watch", str(copy), "--db", str(db),
         "--debounce", "0.5"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _wait_for(lambda: "J10" in _job_keys(db), 90, "the first crawl")
        shutil.copytree(cs / "J9", cs / "J13", symlinks=True)
        for name in os.listdir(cs / "J13"):
            if name.startswith("J9_"):
                os.rename(cs / "J13" / name, cs / "J13" / ("J13_" + name[3:]))
        doc = (cs / "J13" / "job.json").read_text()
        doc = doc.replace("J9/J9_", "J13/J13_").replace('"J9"', '"J13"')
        (cs / "J13" / "job.json").write_text(doc)
        _wait_for(lambda: "J13" in _job_keys(db), 60, "the new job J13 in the catalog")
        with Catalog(db, readonly=True) as cat:
            sets = cat.particle_sets()
            assert (sets["job_key"] == "J13").sum() == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]


def test_non_utf8_project_paths(fac, tmp_path):
    """Projects below a folder whose name is not UTF-8 are crawled and stored (their paths kept
    readable with backslash escapes); a second crawl changes nothing."""
    base = os.path.join(os.fsencode(str(tmp_path)), b"fac")
    shutil.copytree(fac.root, os.fsdecode(base), symlinks=True)
    odd = os.path.join(base, b"caf\xe9")
    os.makedirs(odd)
    names = [n for n in fac.projects if n.startswith("relion")][:1] or ["cryosparc"]
    moved = {}
    for name in names:
        src = os.fsencode(str(fac.projects[name])).replace(os.fsencode(str(fac.root)), base)
        # one level deeper than before: re-link the micrographs folder one level up as well
        dst = os.path.join(odd, os.path.basename(src) + b"-\xff")
        os.rename(src, dst)
        moved[name] = dst
    os.symlink(os.path.join(b"..", b"micrographs"), os.path.join(odd, b"micrographs"))
    db = tmp_path / "odd.db"
    first = crawl([os.fsdecode(base)], db, progress=False)
    again = crawl([os.fsdecode(base)], db, progress=False)
    assert (again.parsed_jobs, again.new_jobs) == (0, 0)
    with Catalog(db, readonly=True) as cat:
        projects = cat.projects()
        for name, dst in moved.items():
            text = os.fsdecode(dst).encode("utf-8", "surrogateescape").decode(
                "utf-8", "backslashreplace")
            row = projects[projects["root"] == text]
            assert len(row) == 1 and row["status"].iloc[0] == "ok", projects
            pid = int(row["id"].iloc[0])
            if name.startswith("relion"):
                sets = cat.particle_sets(project_ids=[pid])
                have = {(r.job_key, r.name): r.count for r in sets.itertuples()}
                for exp in fac.expected_sets(name):
                    assert have.get((exp["job"], exp["name"])) == exp["count"], exp
        assert (projects["status"] == "ok").all()
    if all(n.startswith("relion") for n in moved):
        assert first.problems == 0
