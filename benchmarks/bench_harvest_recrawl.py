"""Benchmark: first crawl and re-crawl of an unchanged facility of 2 × COPIES projects (targets:
re-crawl of 10,000 projects under 10 s; first crawl's cost per project flat as the catalog grows).

One small generated facility (``harvest.synth``: a CryoSPARC and a RELION 3.1 project, 2
micrographs) is copied into COPIES CryoSPARC and COPIES RELION projects (micrographs stay
relative symlinks into the shared ``micrographs/``). Timed: the first crawl (everything parsed;
the time of each project is taken between projects, through ``crawl``'s ``should_stop`` hook,
and reported per tenth of the crawl: a cost per project that grows as the catalog fills up is a
crawl that is quadratic), then three crawls of the unchanged facility (discovery + change
detection, nothing written).

    .venv/bin/python benchmarks/bench_harvest_recrawl.py [--copies 100] [--facility DIR]
        [--before-tree DIR]

``--facility DIR``: build the facility there once (or reuse the one there, built by an earlier
run with the same ``--copies``), so that a before/after run crawls the same files; the catalog
always goes to a temporary folder. Projects written less than a minute before a crawl scans them
get no fingerprint (``harvest.fingerprint.RACY_NS``), so with a freshly built facility the first
re-crawl may still scan some projects.

``--before-tree DIR``: a checkout of the code before the change (``git worktree add --detach DIR
REF``): after the first crawl (this code), the unchanged re-crawls run alternately with that
code, on a copy of the catalog brought back to its schema (the fingerprint table dropped), and
with this code, each in a fresh process: before and after side by side on the same facility
and the same catalog rows, with one first crawl instead of two (a first crawl of 10,000
projects takes tens of minutes on a loaded machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(tmp: Path, copies: int) -> Path:
    from harvest.synth import FacilityConfig, make_facility

    fac = make_facility(tmp / "fac", FacilityConfig(versions=("cryosparc", "relion31"),
                                                    n_micrographs=2),
                        force=True)
    root = fac.root
    cs = Path(fac.projects["cryosparc"])  # root/cryosparc/CS-...
    rel = Path(fac.projects["relion31"])  # root/relion31
    for i in range(copies):
        # same depth below root as the originals, so relative micrograph links still resolve
        shutil.copytree(cs, root / f"cs_{i:03d}" / cs.name, symlinks=True)
        shutil.copytree(rel, root / f"relion31_{i:03d}", symlinks=True)
    shutil.rmtree(cs.parent)
    shutil.rmtree(rel)
    return root


def facility(where: Path, copies: int) -> Path:
    """The facility in ``where`` (built there when absent; ``.complete`` marks a finished build)."""
    done = where / ".complete"
    if done.exists():
        if done.read_text().strip() != str(copies):
            raise SystemExit(f"{where} holds a facility of {done.read_text().strip()} copies, "
                             f"not {copies}; pick another --facility folder")
        return where / "fac"
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    root = build(where, copies)
    done.write_text(f"{copies}\n")
    return root


def _tenths(stamps: list[float]) -> list[float]:
    """ms per project in each tenth of the crawl, from the times between projects."""
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    n = len(gaps)
    out = []
    for k in range(10):
        part = gaps[k * n // 10:(k + 1) * n // 10]
        out.append(1000 * sum(part) / len(part) if part else float("nan"))
    return out


_CHILD = """
import sys, time
from harvest.crawl import crawl
w, c = time.perf_counter(), time.process_time()
s = crawl([sys.argv[1]], sys.argv[2], progress=False)
print(time.perf_counter() - w, time.process_time() - c, s.projects, s.parsed_jobs, s.new_jobs)
"""


def _child_crawl(tree: Path, root: Path, db: Path) -> tuple[float, float, int, int, int]:
    """One crawl by the code in ``tree``, in a fresh process: (wall s, cpu s, projects, parsed
    jobs, new jobs) of the ``crawl`` call itself."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(db)], env=env,
                         cwd=tree, capture_output=True, text=True, check=True).stdout
    wall, cpu, projects, parsed, new = out.split()[-5:]
    return float(wall), float(cpu), int(projects), int(parsed), int(new)


def _downgrade(src: Path, dst: Path) -> None:
    """A copy of the catalog as the code before the fingerprints wrote it (schema 2)."""
    shutil.copy(src, dst)
    con = sqlite3.connect(dst)
    con.execute("DROP TABLE IF EXISTS project_fingerprints")
    con.execute("DELETE FROM schema_version WHERE version > 2")
    con.commit()
    con.close()


def _per_software(roots: list[str], stamps: list[float]) -> str:
    """ms/project per fifth of each software's projects, in crawl order (sorted roots: all
    CryoSPARC copies, then all RELION copies)."""
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    parts = []
    for name in ("cs_", "relion31_"):
        mine = [g for r, g in zip(roots, gaps) if os.path.basename(
            r if name != "cs_" else os.path.dirname(r)).startswith(name)]
        n = len(mine)
        fifths = [1000 * sum(mine[k * n // 5:(k + 1) * n // 5]) / max(1, len(
            mine[k * n // 5:(k + 1) * n // 5])) for k in range(5)]
        parts.append(f"{name.rstrip('_')} ({n}): " + " ".join(f"{v:.1f}" for v in fifths)
                     + f" (last/first fifth {fifths[-1] / fifths[0]:.2f})")
    return "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=100, help="copies of each project")
    ap.add_argument("--facility", default=None,
                    help="build (or reuse) the facility in this folder")
    ap.add_argument("--before-tree", default=None,
                    help="checkout of the code before the change: its re-crawls alternate "
                         "with this code's on a copy of the catalog")
    args = ap.parse_args()
    from harvest.crawl import crawl

    with tempfile.TemporaryDirectory(prefix="bench_recrawl_") as t:
        tmp = Path(t)
        b0 = time.perf_counter()
        root = facility(Path(args.facility), args.copies) if args.facility else build(
            tmp, args.copies)
        print(f"facility: {root} ({time.perf_counter() - b0:.0f} s to build or find)")
        db = tmp / "catalog.db"
        stamps: list[float] = []

        def tick() -> bool:
            stamps.append(time.perf_counter())
            return False

        print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        t0 = time.perf_counter()
        first = crawl([root], db, progress=False, should_stop=tick)
        t_first = time.perf_counter() - t0
        stamps.append(t0 + t_first)
        if first.problems:
            raise RuntimeError(f"first crawl recorded {first.problems} problems")
        print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'crawl':32s} {'projects':>8s} {'parsed jobs':>11s} {'wall s':>7s} "
              f"{'cpu s':>7s}")
        print(f"{'first (everything parsed)':32s} {first.projects:8d} {first.parsed_jobs:11d} "
              f"{t_first:7.2f} {'':>7s}")
        tenths = _tenths(stamps)
        print(f"first crawl: {1000 * t_first / first.projects:.1f} ms/project; per tenth of "
              "the crawl (ms/project): " + " ".join(f"{v:.1f}" for v in tenths)
              + f"; last/first tenth {tenths[-1] / tenths[0]:.2f}")
        print("first crawl, ms/project per fifth of each kind of project: "
              + _per_software(first.roots, stamps))
        if args.before_tree:
            _side_by_side(Path(args.before_tree), root, db, first.projects)
            return
        times = []
        for i in range(3):
            w0, c0 = time.perf_counter(), time.process_time()
            again = crawl([root], db, progress=False)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            times.append(wall)
            if again.parsed_jobs or again.new_jobs:
                raise RuntimeError("an unchanged facility was parsed again")
            print(f"{f'unchanged re-crawl #{i + 1}':32s} {again.projects:8d} "
                  f"{again.parsed_jobs:11d} {wall:7.2f} {cpu:7.2f}")
        con = sqlite3.connect(db)
        try:
            n_fp = con.execute("SELECT count(*) FROM project_fingerprints").fetchone()[0]
            print(f"projects with a fingerprint: {n_fp} of {first.projects}")
        except sqlite3.OperationalError:
            print("projects with a fingerprint: none (this version has no fingerprints)")
        finally:
            con.close()
        best = min(times)
        per = 1000 * best / first.projects
        print(f"re-crawl of {first.projects} unchanged projects: best {best:.2f} s, "
              f"{per:.2f} ms/project (10,000 projects: {10 * per:.1f} s); target < 1 ms/project "
              f"(10,000 in < 10 s): {'met' if per < 1 else 'NOT met'}")



def _side_by_side(before: Path, root: Path, db: Path, n: int) -> None:
    after = Path(__file__).resolve().parents[1]
    rev = {k: subprocess.run(["git", "-C", str(t), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
           for k, t in (("before", before), ("after", after))}
    db_before = db.with_name("catalog_before.db")
    _downgrade(db, db_before)
    print(f"unchanged re-crawls, alternating: before = {before} ({rev['before']}), "
          f"after = {after} ({rev['after']}, + uncommitted changes if any); each in a fresh "
          "process, the time of the crawl call")
    print(f"{'crawl':32s} {'load':>5s} {'projects':>8s} {'parsed':>7s} {'wall s':>7s} "
          f"{'cpu s':>7s} {'ms/project':>10s}")
    best = {"before": float("inf"), "after": float("inf")}
    for i in range(3):
        for side, tree, cat in (("before", before, db_before), ("after", after, db)):
            load = os.getloadavg()[0]
            wall, cpu, projects, parsed, new = _child_crawl(tree, root, cat)
            if parsed or new:
                raise RuntimeError(f"{side}: an unchanged facility was parsed again")
            best[side] = min(best[side], wall)
            print(f"{f'{side} re-crawl #{i + 1}':32s} {load:5.1f} {projects:8d} {parsed:7d} "
                  f"{wall:7.2f} {cpu:7.2f} {1000 * wall / projects:10.2f}")
    con = sqlite3.connect(db)
    n_fp = con.execute("SELECT count(*) FROM project_fingerprints").fetchone()[0]
    con.close()
    print(f"projects with a fingerprint (after): {n_fp} of {n}")
    print(f"best re-crawl of {n} unchanged projects: before {best['before']:.2f} s "
          f"({1000 * best['before'] / n:.2f} ms/project), after {best['after']:.2f} s "
          f"({1000 * best['after'] / n:.2f} ms/project): {best['before'] / best['after']:.1f}x; "
          f"target < 10 s for 10,000 (< 1 ms/project): "
          f"{'met' if best['after'] / n < 1e-3 else 'NOT met'}")


if __name__ == "__main__":
    main()
