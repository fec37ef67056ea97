"""Catalog files as facilities have them (issue 14, item 6): shared read-only, on a full disk,
damaged, someone else's, from another cryoglean. Each is one line on stderr, a non-zero exit
where something is refused, never a traceback, and nothing written that should not be.

The read-only tests run the readers as a user who cannot write the catalog: as root, through
``setpriv`` with every capability dropped (root then obeys the file modes like any user;
``/root``'s Python stays reachable, which ``nobody`` could not run); as another user, as is.
The full-disk test mounts a small tmpfs (root only)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys

import pytest

from harvest.catalog import DATA_TABLES, SCHEMA_VERSION, Catalog

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOKKEEPING = {"projects": ("last_crawl", "first_seen"), "jobs": ("parsed_at",),
               "files": ("id", "parsed_at"), "problems": ("id", "crawl_id")}


def _cli(*args, drop=False, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": REPO}
    cmd = [sys.executable, "-m", "cryoglean.cli", *map(str, args)]
    if drop and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _one_line(res, *words):
    err = res.stderr.strip()
    assert "Traceback" not in res.stderr, res.stderr
    assert len(err.splitlines()) == 1 and err.startswith("Error: "), res.stderr
    for w in words:
        assert w in err, err
    return err


def _snapshot(db):
    with Catalog(db, readonly=True) as cat:
        return {t: cat.table_rows(t, exclude=BOOKKEEPING.get(t, ())) for t in DATA_TABLES}


@pytest.fixture(scope="module")
def clean(facility, tmp_path_factory):
    db = tmp_path_factory.mktemp("clean") / "c.db"
    res = _cli("crawl", facility.root, "--db", db, "-q")
    assert res.returncode == 0, res.stderr
    return db


@pytest.fixture(scope="module")
def reader_user():
    """Whether a user that cannot write the catalog can be had here (see the docstring)."""
    if os.geteuid() != 0:
        return
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no way to drop root's write access")
    probe = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "true"],
                           capture_output=True)
    if probe.returncode:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode().strip()}")


@pytest.fixture
def shared(clean, tmp_path, reader_user):
    """The clean catalog in a folder, file and folder without write permission."""
    folder = tmp_path / "shared"
    folder.mkdir()
    db = folder / "c.db"
    shutil.copy(clean, db)
    os.chmod(db, 0o444)
    os.chmod(folder, 0o555)
    yield db
    os.chmod(folder, 0o755)


def test_readers_serve_a_read_only_catalog(shared, tmp_path):
    probe = _cli("crawl", tmp_path, "--db", shared, drop=True)  # the user really cannot write
    _one_line(probe, "crawl lock", "write")
    assert probe.returncode == 1
    res = _cli("ls", "--db", shared, drop=True)
    assert res.returncode == 0, res.stderr
    assert "cryosparc" in res.stdout and "refined" in res.stdout
    res = _cli("show", "1", "--db", shared, "--json", drop=True)
    assert res.returncode == 0 and '"micrographs"' in res.stdout, res.stderr
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    res = _cli("export", "star", "--db", shared, "-o", out / "star", "-q", drop=True)
    assert res.returncode == 0, res.stderr
    assert any((out / "star").rglob("*.star"))
    res = _cli("report", "--db", shared, "-o", out / "site", "-q", drop=True)
    assert res.returncode == 0, res.stderr
    assert (out / "site" / "index.html").is_file()
    res = _cli("evaluate", "--picks", out / "star" / "train" / "labels", "--truth", out / "star",
               "--split", "train", "--radius", "3", drop=True)
    assert res.returncode == 0 and "precision 1.0000" in res.stdout, res.stderr
    assert sorted(os.listdir(shared.parent)) == ["c.db"]  # nothing written beside it


def test_reader_beside_a_running_crawl_reads_through_its_wal(shared, tmp_path):
    """A crawl (here: a writer holding the catalog open) has -wal and -shm beside it: a reader
    that cannot write the folder reads through them and sees the uncommitted-to-file rows."""
    folder = shared.parent
    os.chmod(folder, 0o755)
    os.chmod(shared, 0o644)
    writer = sqlite3.connect(shared)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("UPDATE projects SET title = 'renamed by the writer' WHERE id = 1")
    writer.commit()
    os.chmod(folder, 0o555)
    try:
        assert os.path.exists(f"{shared}-wal") and os.path.exists(f"{shared}-shm")
        res = _cli("ls", "--db", shared, drop=True)
        assert res.returncode == 0, res.stderr
        assert "renamed by the writer" in res.stdout
    finally:
        os.chmod(folder, 0o755)
        writer.close()


def test_crawl_refuses_a_read_only_catalog_file(clean, tmp_path, facility, reader_user):
    db = tmp_path / "c.db"
    shutil.copy(clean, db)
    os.chmod(db, 0o444)
    before = db.read_bytes()
    res = _cli("crawl", facility.root, "--db", db, drop=True)
    assert res.returncode == 1
    _one_line(res, str(db), "read-only")
    assert db.read_bytes() == before


def test_crawl_into_a_full_disk(facility, clean, tmp_path):
    """A small filesystem fills up during the crawl: one line, exit 1, the catalog holds whole
    projects only (as the clean crawl has them), and the next crawl, with space, completes it."""
    if os.geteuid() != 0 or sys.platform != "linux":
        pytest.skip("mounting a small tmpfs needs root on Linux")
    mnt = tmp_path / "small"
    mnt.mkdir()
    want = _snapshot(clean)
    partial = None
    try:
        for size in ("256k", "384k", "512k", "768k"):  # until a crawl stops half-way
            res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                  str(mnt)], capture_output=True, text=True)
            if res.returncode:
                pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
            db = mnt / "c.db"
            res = _cli("crawl", facility.root, "--db", db, "-q")
            assert res.returncode in (0, 1), res.stderr
            if res.returncode == 1:
                _one_line(res, str(db), "database or disk is full", "crawl again")
                with Catalog(db, readonly=True) as cat:
                    stored = set(cat.projects()["id"])
                    assert cat.conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
                got = _snapshot(db)
                if 0 < len(stored) < len(want["projects"]):
                    partial = (size, db, stored, got)
                    break
            subprocess.run(["umount", str(mnt)], check=True)
        assert partial, "no size stopped the crawl half-way"
        size, db, stored, got = partial
        # whole projects only: each stored project's rows are the clean crawl's
        for table in ("projects", "jobs", "particle_sets", "set_counts", "project_totals"):
            assert got[table], table
        assert [r for r in want["projects"] if r[0] in stored] == got["projects"]
        assert [r for r in want["project_totals"] if r[0] in stored] == got["project_totals"]
        subprocess.run(["mount", "-o", "remount,size=16m", str(mnt)], check=True)
        res = _cli("crawl", facility.root, "--db", db, "-q")
        assert res.returncode == 0, res.stderr
        assert _snapshot(db) == want
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_damaged_catalog_is_refused(clean, tmp_path, facility):
    # a dropped table: readers and the crawl name it, nothing is recreated
    dropped = tmp_path / "dropped.db"
    shutil.copy(clean, dropped)
    with sqlite3.connect(dropped) as conn:
        conn.execute("DROP TABLE micrographs")
    for args in (("crawl", facility.root), ("ls",), ("show", "1"),
                 ("export", "star", "-o", tmp_path / "x", "-q"), ("report", "-o", tmp_path / "r")):
        res = _cli(*args, "--db", dropped)
        assert res.returncode == 1, (args, res.stderr)
        _one_line(res, "damaged", "table micrographs")
    with sqlite3.connect(dropped) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'micrographs'"
                            ).fetchone()[0] == 0
    # a dropped index: the crawl refuses (its queries would scan)
    noindex = tmp_path / "noindex.db"
    shutil.copy(clean, noindex)
    with sqlite3.connect(noindex) as conn:
        conn.execute("DROP INDEX idx_files_project_id_job_id")
    res = _cli("crawl", facility.root, "--db", noindex)
    assert res.returncode == 1
    _one_line(res, "damaged", "index idx_files_project_id_job_id")
    # damaged pages in a table the crawl would not touch: quick_check at open finds them
    broken = tmp_path / "broken.db"
    shutil.copy(clean, broken)
    with sqlite3.connect(broken) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaf = conn.execute("SELECT pageno FROM dbstat WHERE name = 'jobs' "
                            "AND pagetype = 'leaf' ORDER BY pageno LIMIT 1").fetchone()[0]
    with open(broken, "r+b") as fh:
        fh.seek(leaf * page_size - 200)
        fh.write(b"\xff" * 200)
    res = _cli("crawl", facility.root, "--db", broken)
    assert res.returncode == 1
    _one_line(res, str(broken), "damaged", "table jobs")


def test_another_applications_database_is_refused(tmp_path, facility):
    other = tmp_path / "app.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE settings (key TEXT, value TEXT)")
        conn.execute("INSERT INTO settings VALUES ('theme', 'dark')")
    before = other.read_bytes()
    for args in (("crawl", facility.root), ("ls",), ("import", "star", facility.root,
                                                      "--project", "1", "--name", "n")):
        res = _cli(*args, "--db", other)
        assert res.returncode == 1, (args, res.stderr)
        _one_line(res, str(other), "another application", "settings")
    assert other.read_bytes() == before
    # an empty file is a new catalog; an empty folder path is not a file
    empty = tmp_path / "empty.db"
    empty.touch()
    _one_line(_cli("ls", "--db", empty), "empty", "crawl")
    assert _cli("crawl", facility.root, "--db", empty, "-q").returncode == 0
    text = tmp_path / "notes.db"
    text.write_text("a text file, not a database\n" * 20)
    for args in (("crawl", facility.root), ("ls",)):
        res = _cli(*args, "--db", text)
        assert res.returncode == 1
        _one_line(res, str(text), "not a")
    assert text.read_text().startswith("a text file")


def test_other_schema_versions_are_one_line(clean, tmp_path, facility):
    newer = tmp_path / "newer.db"
    shutil.copy(clean, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')",
                     (SCHEMA_VERSION + 1,))
    for args in (("crawl", facility.root), ("ls",), ("show", "1")):
        res = _cli(*args, "--db", newer)
        assert res.returncode == 1
        _one_line(res, "newer", "upgrade cryoglean")
    # a version-1 catalog without version 1's tables: damaged, named, nothing migrated
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT)")
        conn.execute("INSERT INTO schema_version VALUES (1, 'then')")
    res = _cli("ls", "--db", old)
    assert res.returncode == 1
    _one_line(res, "damaged", "table crawls", "schema version 1")


def test_read_only_catalog_file_mode_is_not_needed_by_readers(clean, tmp_path):
    """A catalog file the user cannot write, in a folder they can: readers work (SQLite may
    create -shm beside it); stat shows no write bit was added."""
    db = tmp_path / "c.db"
    shutil.copy(clean, db)
    os.chmod(db, 0o444)
    with Catalog(db, readonly=True) as cat:
        assert len(cat.projects()) > 0
    assert not stat.S_IMODE(os.stat(db).st_mode) & 0o222
