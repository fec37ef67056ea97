"""Benchmark: counting particles per stage as the catalog grows (issue 16, item 3).

Builds catalogs whose per-micrograph count rows (``set_counts``) number 10^5, 10^6, 10^7 (the
rows ``cryoglean ls`` used to read): projects of ``--micrographs`` micrographs with nine
particle sets each over the seven stages (one job per stage; 2D and 3D classification as
per-class sets), written straight into the schema (no particle rows: counting never reads
them). Then times, side by side in one process:

- ``ls`` before: every count row of the catalog read into pandas and combined per micrograph
  (the code of f87895e, copied below as ``before_*``), against now: :func:`harvest.show.ls_text`
  reading the stored per-project totals (``project_totals``) and jobs per project;
- ``show`` before/now: one project's per-micrograph stage table (pandas against SQL);
- the ``stage_totals`` view with plain sqlite3: combining the count rows (the view of schema 2)
  against reading the stored totals (schema 3);
- the price paid by the crawl: rewriting one project's stored totals (done in the project's
  write transaction).

Run: nice -n 10 .venv/bin/python benchmarks/bench_counts.py --rows 1e5 1e6 1e7
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harvest.catalog import Catalog
from harvest.catalog.views import project_totals_sql, refresh_project_totals
from harvest.conventions import STAGES
from harvest.show import ls_text, show_text

# (job stage, class ids of its sets: None = one set without class)
JOBS = (("picked", [None]), ("extracted", [None]), ("classified2d", [0, 1]),
        ("selected2d", [None]), ("rejected2d", [None]), ("classified3d", [0, 1]),
        ("refined", [None]))
SETS_PER_PROJECT = sum(len(c) for _, c in JOBS)  # 9


def build(db: Path, projects: int, mics: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    with Catalog(db) as cat:
        conn = cat.conn
        conn.execute("BEGIN")
        mid = sid = jid = 0
        for p in range(1, projects + 1):
            conn.execute("INSERT INTO projects (id, root, software, version, title, status) "
                         "VALUES (?, ?, 'cryosparc', 'v4', ?, 'ok')", (p, f"/fac/p{p}", f"P{p}"))
            conn.executemany(
                "INSERT INTO micrographs (id, project_id, key, path) VALUES (?, ?, ?, ?)",
                [(mid + i + 1, p, f"mic_{i:05d}", f"m/mic_{i:05d}.mrc") for i in range(mics)])
            mic_ids = np.arange(mid + 1, mid + mics + 1)
            mid += mics
            base = rng.integers(80, 160, mics)
            for stage, classes in JOBS:
                jid += 1
                conn.execute("INSERT INTO jobs (id, project_id, key, status) VALUES (?, ?, ?, "
                             "'completed')", (jid, p, f"J{jid}"))
                frac = {"picked": 1.0, "extracted": 0.9, "classified2d": 0.9,
                        "selected2d": 0.7, "rejected2d": 0.2, "classified3d": 0.7,
                        "refined": 0.6}[stage]
                for c in classes:
                    sid += 1
                    n = np.maximum((base * frac / len(classes)).astype(np.int64), 1)
                    conn.execute(
                        "INSERT INTO particle_sets (id, project_id, job_id, name, stage, "
                        "class_id, count, origin) VALUES (?, ?, ?, ?, ?, ?, ?, 'job')",
                        (sid, p, jid, f"s{sid}", stage, c, int(n.sum())))
                    conn.executemany(
                        f"INSERT INTO set_counts (set_id, micrograph_id, count) VALUES ({sid}, ?, ?)",
                        np.stack([mic_ids, n], axis=1).tolist())
        conn.execute(f"INSERT INTO project_totals {project_totals_sql()}")
        conn.execute("COMMIT")
        rows = conn.execute("SELECT count(*) FROM set_counts").fetchone()[0]
        cat.vacuum()
    return int(rows)


# -- before: the code of f87895e (harvest/catalog/store.py, harvest/show.py) ------------------

def before_combine(df: pd.DataFrame, extra=()) -> pd.DataFrame:
    keys = [*extra, "micrograph_id", "stage"]
    if df.empty:
        return pd.DataFrame({c: [] for c in [*keys, "count"]})
    df = df.copy()
    df["job_id"] = df["job_id"].fillna(-df["set_id"]).astype(np.int64)
    classed = df[df["class_id"].notna()]
    unclassed = df[df["class_id"].isna()]
    parts = []
    if len(classed):
        parts.append(classed.groupby([*keys, "job_id"], sort=False)["count"].sum())
    if len(unclassed):
        parts.append(unclassed.groupby([*keys, "job_id"], sort=False)["count"].max())
    per_job = pd.concat(parts).groupby(level=list(range(len(keys) + 1))).max()
    out = per_job.groupby(level=list(range(len(keys)))).max().reset_index()
    order = {s: i for i, s in enumerate(STAGES)}
    out["_o"] = out["stage"].map(order)
    out = out.sort_values([*extra, "micrograph_id", "_o"]).drop(columns="_o")
    out["count"] = out["count"].astype(np.int64)
    return out.reset_index(drop=True)


def _frame(conn, sql, params=()):
    cur = conn.execute(sql, params)
    return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])


def before_totals(conn) -> pd.DataFrame:
    df = _frame(conn, "SELECT s.project_id, c.micrograph_id, s.stage, s.job_id, s.id AS set_id, "
                      "s.class_id, c.count FROM set_counts c JOIN particle_sets s ON s.id = c.set_id")
    per = before_combine(df, extra=["project_id"])
    return per.groupby(["project_id", "stage"], as_index=False, sort=True)["count"].sum()


def before_ls(cat: Catalog) -> str:
    projects = cat.projects()
    jobs = cat.jobs()
    njobs = jobs.groupby("project_id").size()
    totals = before_totals(cat.conn)
    present = [s for s in STAGES if s in set(totals["stage"])]
    by = {(int(r.project_id), r.stage): int(r.count) for r in totals.itertuples()}
    return "\n".join(
        " ".join(str(x) for x in [p.id, p.software, p.status, int(njobs.get(p.id, 0)),
                                  *[by.get((p.id, s), "") for s in present], p.title, p.root])
        for p in projects.itertuples())


def before_stage_counts(cat: Catalog, pid: int) -> pd.DataFrame:
    df = _frame(cat.conn, "SELECT c.micrograph_id, s.stage, s.job_id, s.id AS set_id, s.class_id, "
                          "c.count FROM set_counts c JOIN particle_sets s ON s.id = c.set_id "
                          "WHERE s.project_id = ?", (pid,))
    return before_combine(df)


# -----------------------------------------------------------------------------------------------

def timed(fn, repeat: int) -> float:
    """Best of ``repeat`` runs (NaN for 0: not run)."""
    best = float("inf") if repeat else float("nan")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(db: Path, args) -> tuple:
    """The timings of one catalog (after checking that both ways give the same counts)."""
    with Catalog(db, readonly=True) as cat:
        rows = cat.conn.execute("SELECT count(*) FROM set_counts").fetchone()[0]
        rep_before = args.repeat if rows <= args.before_repeat_max_rows else 1
        if rows > args.before_max_rows:
            rep_before = 0
        pid = int(cat.projects()["id"].iloc[-1])
        pd.testing.assert_frame_equal(before_stage_counts(cat, pid),
                                      cat.stage_counts(pid), check_dtype=False)
        if rep_before:  # same answer both ways first
            want = before_totals(cat.conn)
            got = cat.project_stage_totals()[["project_id", "stage", "count"]]
            key = ["project_id", "stage"]
            pd.testing.assert_frame_equal(
                want.sort_values(key).reset_index(drop=True).astype({"count": np.int64}),
                got.sort_values(key).reset_index(drop=True), check_dtype=False)
        ls_b = timed(lambda: before_ls(cat), rep_before)
        ls_a = timed(lambda: ls_text(cat), args.repeat)
        sh_b = timed(lambda: before_stage_counts(cat, pid), args.repeat)
        sh_a = timed(lambda: cat.stage_counts(pid), args.repeat)
        show_all = timed(lambda: show_text(cat, pid), args.repeat)
    plain = sqlite3.connect(db)
    view_b = timed(lambda: plain.execute(project_totals_sql()).fetchall(), rep_before)
    view_a = timed(lambda: plain.execute("SELECT * FROM stage_totals").fetchall(),
                   args.repeat)
    plain.isolation_level = None

    def refresh():
        plain.execute("BEGIN")
        refresh_project_totals(plain, pid)
        plain.execute("ROLLBACK")

    ref = timed(refresh, args.repeat)
    plain.close()
    return rows, ls_b, ls_a, sh_b, sh_a, show_all, view_b, view_a, ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    ap.add_argument("--micrographs", type=int, default=1000, help="per project")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before-repeat-max-rows", type=float, default=2e6,
                    help="above this, the before paths run once (minutes, GBs)")
    ap.add_argument("--before-max-rows", type=float, default=float("inf"),
                    help="above this, the before paths are not run (shown as -)")
    ap.add_argument("--keep", default=None, help="folder to keep the catalogs in")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-counts-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print("| count rows | projects | catalog MB | ls before s | ls now s | speed-up | "
          "show's counts before s | now s | whole show now s | stage_totals view before s | "
          "now s | refresh one project's totals s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for target in args.rows:
            projects = max(1, round(target / (SETS_PER_PROJECT * args.micrographs)))
            db = work / f"counts_{int(target):d}.db"
            if not db.exists():
                t0 = time.perf_counter()
                rows = build(db, projects, args.micrographs)
                print(f"<!-- built {rows} rows in {time.perf_counter() - t0:.0f} s -->",
                      flush=True)
            rows, ls_b, ls_a, sh_b, sh_a, show_all, view_b, view_a, ref = measure(db, args)
            mb = db.stat().st_size / 1e6
            print(f"| {rows:,} | {projects:,} | {mb:.0f} | {ls_b:.3f} | {ls_a:.4f} | "
                  f"{ls_b / ls_a:.0f}× | {sh_b:.3f} | {sh_a:.3f} | {show_all:.3f} | {view_b:.3f} | "
                  f"{view_a:.4f} | "
                  f"{ref:.3f} |", flush=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"peak RSS {peak:.1f} GB; load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
