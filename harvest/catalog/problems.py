"""Which recorded problems are still open: the nightly status that tells the truth.

Every crawl appends rows to ``problems``. Most problems are found again by every crawl that
reads their project (discovery errors, unreadable bookkeeping, jobs that failed to parse: they
are retried each time). A job that parsed but reported a problem (a refined set whose file is
missing) is *not* parsed again until its files change, so its problem would be recorded only on
the night it appeared. :func:`carry_forward` copies such rows into the current crawl while the
job is unchanged and present; then a project's open problems are exactly the rows of the last
crawl that visited it (:func:`open_problems`). A problem is resolved when its job's files
change (the job is parsed again and the problem is not found), or its job or project is gone.

A crawl *visited* a project when it set the project's ``last_crawl`` (crawls hold the writer
lock, so they never overlap: the visiting crawl is the last one started before that time).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import pandas as pd

COLUMNS = ["id", "crawl_id", "project_id", "job_key", "path", "error"]

_LAST_VISIT = ("(SELECT max(c.id) FROM crawls c WHERE c.started_at <= pr.last_crawl)")


def last_visit(conn: sqlite3.Connection, project_id: int) -> int | None:
    """Id of the last crawl that visited the project (None if none did)."""
    row = conn.execute(
        f"SELECT {_LAST_VISIT} FROM projects pr WHERE pr.id = ?", (int(project_id),)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def carry_forward(conn: sqlite3.Connection, crawl_id: int, project_id: int, since: int | None,
                  reexamined: Iterable[str]) -> int:
    """Copy the job problems recorded by crawl ``since`` (the project's previous visit) into
    ``crawl_id``, for jobs this crawl did not parse again (``reexamined``) and that are not
    missing. Returns the number of rows copied. Runs in the caller's transaction if any."""
    if since is None or since == crawl_id:
        return 0
    keys = sorted(set(reexamined))
    marks = ",".join("?" * len(keys))
    skip = f"AND p.job_key NOT IN ({marks})" if keys else ""
    cur = conn.execute(
        "INSERT INTO problems (crawl_id, project_id, job_key, path, error) "
        "SELECT ?, p.project_id, p.job_key, p.path, p.error FROM problems p "
        "JOIN jobs j ON j.project_id = p.project_id AND j.key = p.job_key "
        f"WHERE p.project_id = ? AND p.crawl_id = ? AND j.status != 'missing' {skip} "
        "ORDER BY p.id",
        (int(crawl_id), int(project_id), int(since), *keys),
    )
    return cur.rowcount


def carry(conn: sqlite3.Connection, crawl_id: int, project_id: int, since: int | None,
          reexamined: Iterable[str]) -> int:
    """:func:`carry_forward` in its own short transaction (between two projects' writes)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = carry_forward(conn, crawl_id, project_id, since, reexamined)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return n


def open_problems(conn: sqlite3.Connection, project_id: int | None = None) -> pd.DataFrame:
    """Problems not resolved yet: DataFrame[id, crawl_id, project_id, job_key, path, error].

    A project's rows from the last crawl that visited it (projects marked missing have none),
    plus the rows without a project (discovery, unreadable project folders) of the latest
    crawl. ``project_id``: only that project's.
    """
    # projects first (CROSS JOIN keeps the order): each project's rows are a seek by crawl id,
    # never a scan of every crawl's problems (the table grows with every nightly crawl)
    own = (
        f"SELECT {', '.join('p.' + c for c in COLUMNS)} FROM projects pr CROSS JOIN problems p "
        f"WHERE p.project_id = pr.id AND pr.status != 'missing' AND p.crawl_id = {_LAST_VISIT}"
    )
    if project_id is not None:
        sql, params = own + " AND pr.id = ? ORDER BY p.id", (int(project_id),)
    else:
        sql = (own + " UNION ALL SELECT " + ", ".join(COLUMNS) + " FROM problems "
               "WHERE project_id IS NULL AND crawl_id = (SELECT max(id) FROM crawls) ORDER BY 1")
        params = ()
    cur = conn.execute(sql, params)
    return pd.DataFrame(cur.fetchall(), columns=COLUMNS)


def problem_counts(conn: sqlite3.Connection) -> dict[int, int]:
    """{project id: open problems} for every project that has any."""
    df = open_problems(conn)
    df = df[df["project_id"].notna()]
    return {int(k): int(v) for k, v in df.groupby("project_id").size().items()}


def crawl_history(conn: sqlite3.Connection) -> pd.DataFrame:
    """The crawls, newest first: DataFrame[id, started_at, finished_at, roots, projects,
    new_jobs, new_particles, problems] (``problems``: rows that crawl added)."""
    cur = conn.execute(
        "SELECT id, started_at, finished_at, roots, projects, new_jobs, new_particles, problems "
        "FROM crawls ORDER BY id DESC")
    return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
