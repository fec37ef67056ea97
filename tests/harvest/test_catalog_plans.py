"""Every statement with a WHERE clause that a crawl runs against the catalog seeks by a key or
an index: none scans a table that grows with the facility (a scan per job makes a first crawl
quadratic in the number of jobs). Checked on the generated facility, first crawl and
incremental ones (a job re-parsed, a job deleted, a project deleted), with SQLite's own
``EXPLAIN QUERY PLAN``."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3

from harvest.crawl import crawl

GROWING = ("projects", "jobs", "job_edges", "micrographs", "particle_sets", "particle_rows",
           "particle_z", "particles", "set_counts", "files", "problems", "crawls")


def _traced_crawls(monkeypatch, facility, root, db) -> list[str]:
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)  # the SQL with its parameters filled in
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    crawl([root], db, progress=False)
    # incremental: one particle file per project changes (its job is re-parsed and its old
    # sets dropped), a job disappears, then a project
    projects = {name: root / os.path.relpath(path, facility.root)
                for name, path in facility.projects.items()}
    for proj in projects.values():
        outputs = sorted(p for p in proj.rglob("*particles*") if p.suffix in (".cs", ".star"))
        st = outputs[-1].stat()
        os.utime(outputs[-1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    crawl([root], db, progress=False)
    shutil.rmtree(projects["cryosparc"] / "J10")
    crawl([root], db, progress=False)
    shutil.rmtree(projects[sorted(projects)[-1]])
    crawl([root], db, progress=False)
    monkeypatch.setattr(sqlite3, "connect", connect)
    return statements


def test_crawl_statements_never_scan_a_growing_table(facility, tmp_path, monkeypatch):
    root = tmp_path / "facility"
    shutil.copytree(facility.root, root, symlinks=True)
    db = tmp_path / "c.db"
    statements = _traced_crawls(monkeypatch, facility, root, db)
    where = [s for s in statements if re.search(r"\bWHERE\b", s, re.IGNORECASE)]
    distinct = {re.sub(r"'[^']*'|\b\d+\b", "?", s): s for s in where}
    # the crawl went through the paths this test is about
    for needle in ("DELETE FROM files WHERE", "DELETE FROM particle_rows WHERE",
                   "DELETE FROM job_edges WHERE", "UPDATE jobs SET status = 'missing'",
                   "UPDATE projects SET status = 'missing'", "FROM micrographs WHERE"):
        assert any(needle in s for s in distinct.values()), needle
    conn = sqlite3.connect(db)
    scans = []
    for shape, sql in sorted(distinct.items()):
        for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
            detail = row[-1]
            m = re.match(r"SCAN (\w+)", detail)
            if m and m.group(1) in GROWING:
                scans.append(f"{detail}: {shape[:200]}")
    conn.close()
    assert not scans, "\n".join(scans)
