"""Every statement with a WHERE clause that a crawl runs against the catalog, and every statement
it runs per job or per project (more often than once per crawl), seeks by a key or an index:
none scans a table that grows with the facility (a scan per job makes a first crawl quadratic in
the number of jobs). Checked on the generated facility, first crawl and incremental ones (an
unchanged re-crawl through the fingerprints, a job re-parsed, a job deleted, a project deleted),
with SQLite's own ``EXPLAIN QUERY PLAN``; tables are recognised under their aliases too."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3

from harvest import fingerprint
from harvest.crawl import crawl

GROWING = ("projects", "jobs", "job_edges", "micrographs", "particle_sets", "particle_rows",
           "particle_z", "particles", "set_counts", "files", "problems", "crawls",
           "project_fingerprints")
CRAWLS = 5  # crawls that _traced_crawls runs
_TABLE_REF = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?",
                        re.IGNORECASE)
# Statements that read a whole table by design, once per crawl (linear in the facility, not per
# job): the substring that names them → why. Each must run at most once per crawl.
ONCE_PER_CRAWL = {
    "FROM problems p JOIN projects pr": "the crawl's summary counts the facility's open problems",
    "FROM projects pr CROSS JOIN problems p": "the crawl's summary lists the open problems, "
                                              "project by project (each an index lookup)",
}
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA", "CREATE")


def _aliases(sql: str) -> dict[str, str]:
    """name or alias → table, for the tables a statement names."""
    out = {}
    for table, alias in _TABLE_REF.findall(sql):
        out[table] = table
        if alias and alias.upper() not in ("WHERE", "ON", "SET", "JOIN", "LEFT", "INNER",
                                           "VALUES", "SELECT", "GROUP", "ORDER", "LIMIT",
                                           "USING", "DEFAULT"):
            out[alias] = table
    return out


def _traced_crawls(monkeypatch, facility, root, db) -> list[str]:
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)  # the SQL with its parameters filled in
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    monkeypatch.setattr(fingerprint, "RACY_NS", 0)  # files written just now get fingerprints
    crawl([root], db, progress=False)
    crawl([root], db, progress=False)  # unchanged: the fingerprints' path
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
    shape = {s: re.sub(r"'[^']*'|X'[0-9A-Fa-f]*'|\b\d+\b", "?", s) for s in set(statements)}
    runs: dict[str, int] = {}
    for s in statements:
        runs[shape[s]] = runs.get(shape[s], 0) + 1
    checked = [s for s in statements
               if not s.lstrip().upper().startswith(_CONTROL)
               and (re.search(r"\bWHERE\b", s, re.IGNORECASE) or runs[shape[s]] > CRAWLS)]
    distinct = {shape[s]: s for s in checked}
    # the crawl went through the paths this test is about
    for needle in ("DELETE FROM files WHERE", "DELETE FROM particle_rows WHERE",
                   "DELETE FROM job_edges WHERE", "UPDATE jobs SET status = 'missing'",
                   "UPDATE projects SET status = 'missing'", "FROM micrographs WHERE"):
        assert any(needle in s for s in distinct.values()), needle
    conn = sqlite3.connect(db)
    scans = []
    for shape_, sql in sorted(distinct.items()):
        names = _aliases(sql)
        for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
            detail = row[-1]
            m = re.match(r"SCAN (\w+)", detail)
            if m and names.get(m.group(1), m.group(1)) in GROWING:
                if runs[shape_] <= CRAWLS and any(k in sql for k in ONCE_PER_CRAWL):
                    continue
                scans.append(f"{detail}: {shape_[:200]}")
    conn.close()
    assert not scans, "\n".join(scans)


# What ls and the report's front page may read whole: the listing itself (one row per project,
# a few totals per project), the jobs index (jobs per project: one index entry per job, no job
# row) and the crawl history the report shows (one row per crawl).
LISTING = ("SCAN projects", "SCAN project_totals",
           "SCAN jobs USING COVERING INDEX idx_jobs_project_id_key", "SCAN crawls")


def _plans(conn, statements) -> list[tuple[str, str]]:
    out = []
    for sql in dict.fromkeys(statements):
        if not re.match(r"\s*(SELECT|WITH)\b", sql, re.IGNORECASE):
            continue
        for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
            out.append((row[-1], sql))
    return out


def test_ls_show_and_report_read_stored_totals(facility, tmp_path):
    """``ls`` reads no per-micrograph count and no particle row (the stored per-project totals
    instead); ``show`` and the report's project page seek one project's rows; none scans a
    table that grows with the facility."""
    from cryoglean.report import facts
    from harvest.catalog import Catalog
    from harvest.show import ls_data, ls_text, show_data, show_text

    db = tmp_path / "c.db"
    crawl([facility.root], db, progress=False)
    with Catalog(db, readonly=True) as cat:
        pid = int(cat.projects()["id"].iloc[-1])
        listing: list[str] = []
        cat.conn.set_trace_callback(listing.append)
        ls_text(cat)
        ls_data(cat)
        facts.facility(cat)
        one: list[str] = []
        cat.conn.set_trace_callback(one.append)
        show_text(cat, pid)
        show_data(cat, pid)
        facts.project(cat, pid)
        cat.conn.set_trace_callback(None)
        ls_plans, one_plans = _plans(cat.conn, listing), _plans(cat.conn, one)
    assert ls_plans and one_plans
    assert not [s for s in listing
                if re.search(r"\b(FROM|JOIN)\s+(set_counts|particles)\b", s, re.IGNORECASE)], listing
    scans = [f"{d}: {s[:160]}" for d, s in ls_plans
             if (m := re.match(r"SCAN (\w+)", d)) and m.group(1) in (*GROWING, "project_totals")
             and not d.startswith(LISTING)]
    assert not scans, "\n".join(scans)
    # (a project is found by id, root or title among the projects: one row per project)
    scans = [f"{d}: {s[:160]}" for d, s in one_plans
             if (m := re.match(r"SCAN (\w+)", d)) and m.group(1) in (*GROWING, "project_totals")
             and d != "SCAN projects"]
    assert not scans, "\n".join(scans)
    # the project's counts are seeks: its sets by project, their count rows by set
    joined = " | ".join(d for d, _ in one_plans)
    assert "SEARCH c USING PRIMARY KEY (set_id=?)" in joined, joined
    # the view a user queries reads the stored totals only
    conn = sqlite3.connect(db)
    plan = [r[-1] for r in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM stage_totals")]
    conn.close()
    assert plan == ["SCAN project_totals"], plan
