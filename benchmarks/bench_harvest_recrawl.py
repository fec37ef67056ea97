"""Benchmark: re-crawl of an unchanged facility of 200 projects (target: under 2 s).

One small generated facility (``harvest.synth``: a CryoSPARC and a RELION 3.1 project, 2
micrographs) is copied into 100 CryoSPARC and 100 RELION projects (micrographs stay relative
symlinks into the shared ``micrographs/``). Timed: the first crawl (everything parsed), then
three crawls of the unchanged facility (discovery + ``scan_project`` + stamp comparison, nothing
written).

    .venv/bin/python benchmarks/bench_harvest_recrawl.py [--copies 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=100, help="copies of each project")
    args = ap.parse_args()
    from harvest.crawl import crawl

    with tempfile.TemporaryDirectory(prefix="bench_recrawl_") as t:
        tmp = Path(t)
        root = build(tmp, args.copies)
        db = tmp / "catalog.db"
        t0 = time.perf_counter()
        first = crawl([root], db, progress=False)
        t_first = time.perf_counter() - t0
        if first.problems:
            raise RuntimeError(f"first crawl recorded {first.problems} problems")
        print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'crawl':32s} {'projects':>8s} {'parsed jobs':>11s} {'wall s':>7s} "
              f"{'cpu s':>7s}")
        print(f"{'first (everything parsed)':32s} {first.projects:8d} {first.parsed_jobs:11d} "
              f"{t_first:7.2f} {'':>7s}")
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
        best = min(times)
        print(f"re-crawl of {first.projects} unchanged projects: best {best:.2f} s, "
              f"{1000 * best / first.projects:.1f} ms/project; target < 2 s: "
              f"{'met' if best < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
