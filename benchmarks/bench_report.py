"""Benchmark: `cryoglean report` of a facility of ~100 projects, cold and warm.

One generated CryoSPARC project (``harvest.synth``, ``--micrographs`` micrographs with
simulated particles) is copied beside itself to make ``--projects`` projects, with hard links
(each copy is its own project root with its own micrograph paths; the micrographs are the
generator's relative links into one shared folder), crawled once, then the report is timed:

* cold: an empty site folder (every page, every thumbnail);
* warm: the same site again, nothing changed (pages rewritten, thumbnails reused);
* one changed micrograph file (its mtime): every project links to it, so one thumbnail per
  project is redrawn.

    .venv/bin/python benchmarks/bench_report.py [--projects 100] [--micrographs 200] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def build(work: Path, projects: int, micrographs: int) -> Path:
    from harvest.synth import FacilityConfig, make_facility

    fac = make_facility(work / "gen", FacilityConfig(versions=("cryosparc",),
                                                     n_micrographs=micrographs), force=True)
    src = Path(fac.projects["cryosparc"])
    root = src.parent
    for i in range(1, projects):
        # beside the original (its micrographs are relative links into the generated
        # facility's micrographs/, which resolve from the same depth); hard links for the rest
        subprocess.run(["cp", "-al", str(src), str(root / f"CS-{i:03d}")], check=True)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projects", type=int, default=100)
    ap.add_argument("--micrographs", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/out/report")
    ap.add_argument("--reuse", action="store_true",
                    help="Keep the facility and catalog of an earlier run in --out (report only).")
    args = ap.parse_args()
    from cryoglean.report import build_report
    from harvest.crawl import crawl

    work = Path(args.out).resolve()
    db = work / "catalog.db"
    t_build = t_crawl = particles = None
    if not (args.reuse and db.is_file()):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t = time.perf_counter()
        root = build(work, args.projects, args.micrographs)
        t_build = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        particles = crawl([root], db, progress=False).new_particles
        t_crawl = round(time.perf_counter() - t, 1)
    site = work / "site"
    shutil.rmtree(site, ignore_errors=True)
    cold = build_report(db, site, progress=False)
    warm = build_report(db, site, progress=False)
    from harvest.catalog import Catalog

    with Catalog(db, readonly=True) as cat:
        mic = cat.micrographs().iloc[0]["abs_path"]
    os.utime(mic)  # one micrograph file changed (every project's copy links to it)
    touched = build_report(db, site, progress=False)
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    result = {
        "projects": args.projects, "micrographs_per_project": args.micrographs,
        "micrographs": args.projects * args.micrographs, "particles_new": particles,
        "generate_s": t_build, "crawl_s": t_crawl,
        "cold": cold.as_dict(), "warm": warm.as_dict(), "one_changed": touched.as_dict(),
        "site_mb": round(size / 1e6, 1), "cpus": os.cpu_count(), "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
