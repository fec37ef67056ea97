"""Benchmark: first-crawl cost per project and unchanged re-crawl at 200, 2,000 and 10,000
projects (targets: the first crawl's cost per project flat from 200 to 10,000; re-crawl of
10,000 unchanged projects under 10 s), before and after side by side.

Each size N has its own facility, ``bench_harvest_recrawl.py``'s with ``--copies N/2`` (N/2
CryoSPARC + N/2 RELION 3.1 copies of one generated pair, built once into
``FACILITIES/crawlperf_<N/2>``), and its own catalog. Parsing 10,000 projects takes tens of
minutes on a loaded machine, so the catalog grows in two ways:

- *real* crawls of 100 projects (50 copies of each kind), timed project by project: the first
  into an empty catalog, then the last 100, into a catalog holding N − 100 projects: the cost of writing one project as the catalog grows, which is what a first crawl
  of a facility pays project after project;
- *clones*: between them, the rows of the first 100 projects are copied in SQL for the other
  copies (ids shifted, roots, titles and paths rewritten to the copy's, which is byte for
  byte the same files): the rows a crawl of those copies writes (checked row for row against a
  real crawl of 60 projects; for schema 3's particle rows again on 2026-12-07: 10 copies cloned
  against the same 10 crawled, 31,920 particles equal through the ``particles`` view, set
  counts equal; only ``particle_sets.fingerprint``, a hash of the source files'
  paths and stamps that no crawl reads back, keeps the original's value). The re-crawls check
  it too: both versions must find every project unchanged (nothing parsed, nothing written).

At 200, 2,000 and 10,000 projects, the unchanged re-crawl runs alternately with the code before
(``--before-tree``, a checkout of the earlier version, on a copy of the catalog without the
fingerprint table) and this code, each in a fresh process: one warm-up of this code (it also
records the fingerprints of the cloned projects, which no crawl scanned, and reads every
project's bookkeeping into the page cache for both), then ``--rounds`` alternating rounds. Wall times on a
loaded machine are mostly waiting for a CPU: the CPU time per project is given beside them.

    .venv/bin/python benchmarks/bench_crawl_scale.py --facilities /work/bigfac \\
        --before-tree /tmp/before     # git worktree add --detach /tmp/before REF
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_harvest_recrawl import _downgrade, facility  # noqa: E402

SIZES = (200, 2000, 10000)
REAL = 50  # copies of each kind crawled for real at each size
_CHILD = """
import sys, time
from harvest.crawl import crawl
w, c = time.perf_counter(), time.process_time()
s = crawl([sys.argv[1]], sys.argv[2], progress=False)
print(time.perf_counter() - w, time.process_time() - c, s.projects, s.parsed_jobs, s.new_jobs,
      len(s.unchanged_ids))
"""
# tables cloned, with the id columns to shift by which table's offset
_SHIFTS = {
    "projects": {"id": "projects"},
    "jobs": {"id": "jobs", "project_id": "projects"},
    "job_edges": {"parent_id": "jobs", "child_id": "jobs"},
    "micrographs": {"id": "micrographs", "project_id": "projects"},
    "particle_sets": {"id": "particle_sets", "project_id": "projects", "job_id": "jobs",
                      "first_row": "particle_rows"},
    "set_counts": {"set_id": "particle_sets", "micrograph_id": "micrographs",
                   "first_row": "particle_rows"},
    # schema 3: a set's rows are id ranges (set_counts.first_row, count), shifted as one block
    "particle_rows": {"id": "particle_rows"},
    "particle_z": {"id": "particle_rows"},
    "files": {"id": "files", "project_id": "projects", "job_id": "jobs"},
}
_PATHS = {"projects": ("root",), "micrographs": ("abs_path",),
          "particle_sets": ("source_file",), "files": ("path",)}
_BASE_OF = {"projects": "id", "jobs": "project_id", "job_edges": "parent_id",
            "micrographs": "project_id", "particle_sets": "project_id",
            "set_counts": "set_id", "particle_rows": "id", "particle_z": "id",
            "files": "project_id"}


def roots(fac: Path, copies) -> list[str]:
    out = []
    for i in copies:
        out += [str(p) for p in sorted((fac / f"cs_{i:03d}").iterdir())]
        out.append(str(fac / f"relion31_{i:03d}"))
    return out


def _retarget(fac: Path, root: str, j: int) -> str:
    rel = Path(root).relative_to(fac)
    head = rel.parts[0]
    return str(fac / f"{head[:head.rindex('_') + 1]}{j:03d}" / Path(*rel.parts[1:]))


def clone(db: Path, fac: Path, copies) -> None:
    """Copy the rows of the projects of copies 0..REAL-1 (the first real crawl) to ``copies``."""
    con = sqlite3.connect(db, isolation_level=None)
    shifted = ("projects", "jobs", "micrographs", "particle_sets", "files", "particle_rows")
    # the base rows are the first ones written (the first real crawl): ids up to these maxima
    base_projects = con.execute("SELECT id, root, software FROM projects WHERE id <= ?",
                                (REAL * 2,)).fetchall()
    base_max = {"projects": REAL * 2}
    for t in ("jobs", "micrographs", "particle_sets", "files"):
        base_max[t] = con.execute(f"SELECT max(id) FROM {t} WHERE project_id <= ?",
                                  (REAL * 2,)).fetchone()[0]
    copies = list(copies)
    con.execute("BEGIN")
    # the id ranges of the base projects' particle rows, with their project
    con.execute("CREATE TEMP TABLE ranges (lo INTEGER, hi INTEGER, project_id INTEGER)")
    con.execute("INSERT INTO ranges SELECT c.first_row, c.first_row + c.count - 1, s.project_id "
                "FROM set_counts c JOIN particle_sets s ON s.id = c.set_id "
                "WHERE s.project_id <= ? AND c.count > 0", (REAL * 2,))
    con.execute("CREATE TEMP TABLE m (old_id INTEGER PRIMARY KEY, old_root TEXT, new_root TEXT, "
                "new_title TEXT)")
    for k in range(0, len(copies), REAL):
        batch = copies[k:k + REAL]
        off = {t: con.execute(f"SELECT max(id) FROM {t}").fetchone()[0] for t in shifted}
        con.execute("DELETE FROM m")
        rows = []
        for pid, root, software in base_projects:
            i = int(Path(root).relative_to(fac).parts[0].rsplit("_", 1)[1])
            if i >= len(batch):
                continue
            new = _retarget(fac, root, batch[i])
            rows.append((pid, root, new, os.path.basename(new) if software == "relion" else None))
        con.executemany("INSERT INTO m VALUES (?, ?, ?, ?)", rows)
        for table, shifts in _SHIFTS.items():
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
            exprs = []
            for c in cols:
                if c in shifts:
                    exprs.append(f"t.{c} + {off[shifts[c]]}" if c != "job_id"
                                 else f"CASE WHEN t.job_id IS NULL THEN NULL "
                                      f"ELSE t.job_id + {off['jobs']} END")
                elif c in _PATHS.get(table, ()):
                    exprs.append(f"CASE WHEN substr(t.{c}, 1, length(m.old_root) + 1) = "
                                 f"m.old_root || '/' THEN m.new_root || substr(t.{c}, "
                                 f"length(m.old_root) + 1) WHEN t.{c} = m.old_root THEN "
                                 f"m.new_root ELSE t.{c} END")
                elif table == "projects" and c == "title":
                    exprs.append("coalesce(m.new_title, t.title)")
                else:
                    exprs.append(f"t.{c}")
            key = _BASE_OF[table]
            if table in ("particle_rows", "particle_z"):  # rows by range, ranges outer
                join = (f"FROM ranges r JOIN m ON m.old_id = r.project_id CROSS JOIN {table} t "
                        "ON t.id BETWEEN r.lo AND r.hi")
                con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT "
                            f"{', '.join(exprs)} {join}")
                continue
            if table == "set_counts":
                join = ("JOIN particle_sets s ON s.id = t.set_id JOIN m ON m.old_id = "
                        "s.project_id")
                where = f"t.set_id <= {base_max['particle_sets']}"
            elif table == "job_edges":
                join = "JOIN jobs j ON j.id = t.parent_id JOIN m ON m.old_id = j.project_id"
                where = f"t.parent_id <= {base_max['jobs']}"
            else:
                join = f"JOIN m ON m.old_id = t.{key}"
                where = f"t.{key} <= {REAL * 2}"
            con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
                        f"FROM {table} t {join} WHERE {where}")
    con.execute("DROP TABLE m")
    con.execute("DROP TABLE ranges")
    con.execute("COMMIT")
    con.close()


def _child(tree: Path, root: Path, db: Path) -> tuple:
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(db)], env=env, cwd=tree,
                         capture_output=True, text=True, check=True).stdout
    wall, cpu, projects, parsed, new, unchanged = out.split()[-6:]
    return float(wall), float(cpu), int(projects), int(parsed), int(new), int(unchanged)


def real_crawl(db: Path, fac: Path, copies, label: str) -> None:
    from harvest.crawl import crawl

    stamps: list[tuple[float, float]] = []

    def tick() -> bool:
        stamps.append((time.perf_counter(), time.process_time()))
        return False

    load = os.getloadavg()[0]
    w0 = time.perf_counter()
    # the facility root as crawl root (the RELION copies link to its shared micrographs/,
    # which a crawl of the project roots alone does not follow), the copies as `only`
    s = crawl([str(fac)], db, progress=False, should_stop=tick, only=roots(fac, copies))
    wall = time.perf_counter() - w0
    if s.problems or s.projects != 2 * len(copies):
        raise RuntimeError(f"{label}: {s.problems} problems, {s.projects} projects")
    # time of each project, from one project's start to the next's (the last project, which
    # also carries the end of the crawl, is left out)
    gaps = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:])]
    n = len(gaps)
    per_wall = 1000 * sum(g[0] for g in gaps) / n
    per_cpu = 1000 * sum(g[1] for g in gaps) / n
    cs = [g[0] for g, r in zip(gaps, s.roots) if "/cs_" in r]
    rel = [g[0] for g, r in zip(gaps, s.roots) if "/relion31_" in r]
    print(f"| {label} | {load:.1f} | {s.projects} | {s.parsed_jobs} | {wall:.1f} | "
          f"{per_wall:.1f} | {per_cpu:.1f} | {1000 * sum(cs) / len(cs):.1f} | "
          f"{1000 * sum(rel) / len(rel):.1f} |", flush=True)


def recrawls(before: Path, after: Path, fac: Path, db: Path, n: int, rounds: int = 2) -> None:
    db_before = db.with_name(f"before_{n}.db")
    _downgrade(db, db_before)
    runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    for r in range(rounds + 1):
        for side, tree, cat in (("before", before, db_before), ("after", after, db)):
            if r == 0 and side == "before":
                continue
            load = os.getloadavg()[0]
            wall, cpu, projects, parsed, new, unchanged = _child(tree, fac, cat)
            if parsed or new or unchanged != projects or projects != n:
                raise RuntimeError(f"{side} at {n}: {projects} projects, {parsed} parsed, "
                                   f"{new} new, {unchanged} unchanged")
            label = "warm-up" if r == 0 else f"#{r}"
            if r:
                runs[side].append((wall, cpu))
            print(f"| {n} | {side} {label} | {load:.1f} | {wall:.2f} | {cpu:.2f} | "
                  f"{1000 * wall / n:.2f} | {1000 * cpu / n:.2f} |", flush=True)
    b, a = min(w for w, _ in runs["before"]), min(w for w, _ in runs["after"])
    bc, ac = min(c for _, c in runs["before"]), min(c for _, c in runs["after"])
    print(f"\nbest at {n}: before {b:.2f} s wall / {bc:.2f} s cpu ({1000 * b / n:.2f} / "
          f"{1000 * bc / n:.2f} ms/project), after {a:.2f} s wall / {ac:.2f} s cpu "
          f"({1000 * a / n:.2f} / {1000 * ac / n:.2f} ms/project): {b / a:.1f}x wall, "
          f"{bc / ac:.1f}x cpu\n", flush=True)
    db_before.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facilities", required=True,
                    help="folder of the facilities (crawlperf_<N/2>, built when absent)")
    ap.add_argument("--before-tree", required=True, help="checkout of the code before")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--rounds", type=int, default=2, help="alternating re-crawl rounds")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    after = Path(__file__).resolve().parents[1]
    before = Path(args.before_tree)
    print(f"before = {before}, after = {after}; {os.cpu_count()} cores")
    for n in sizes:
        fac = facility(Path(args.facilities) / f"crawlperf_{n // 2}", n // 2)
        with tempfile.TemporaryDirectory(prefix="bench_scale_") as t:
            db = Path(t) / "catalog.db"
            print(f"\n## {n} projects ({fac})\n")
            print("| first crawl (this code) | load | projects | parsed jobs | wall s | "
                  "ms/project wall | ms/project cpu | ms/CryoSPARC project | "
                  "ms/RELION project |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            real_crawl(db, fac, range(REAL), f"real: projects 1-{2 * REAL}")
            start = n // 2 - REAL
            if start > REAL:
                c0 = time.perf_counter()
                clone(db, fac, range(REAL, start))
                print(f"| ({2 * (start - REAL)} projects cloned in SQL, "
                      f"{time.perf_counter() - c0:.0f} s) | | | | | | | | |")
            if start >= REAL:
                real_crawl(db, fac, range(start, start + REAL),
                           f"real: projects {2 * start + 1}-{2 * (start + REAL)}")
            print("\n| projects | re-crawl | load | wall s | cpu s | ms/project wall | "
                  "ms/project cpu |")
            print("|---:|---|---:|---:|---:|---:|---:|")
            recrawls(before, after, fac, db, n, args.rounds)


if __name__ == "__main__":
    main()
