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

``--facility DIR``: build the facility there once (or reuse the one there, built by an earlier
run with the same ``--copies``), so that a before/after run crawls the same files; the catalog
always goes to a temporary folder. Projects written less than a minute before a crawl scans them
get no fingerprint (``harvest.fingerprint.RACY_NS``), so with a freshly built facility the first
re-crawl may still scan some projects.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=100, help="copies of each project")
    ap.add_argument("--facility", default=None,
                    help="build (or reuse) the facility in this folder")
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


if __name__ == "__main__":
    main()
