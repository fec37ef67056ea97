"""Benchmark: one 1M-particle CryoSPARC refinement job into the catalog, end to end.

A generated CryoSPARC project (``harvest.synth``) has its refinement job J9 blown up to N
particles: the final ``J9_002_particles.cs`` (blob + alignments3D) and
``J9_passthrough_particles.cs`` (location, ctf, pick_stats, alignments2D) keep their real
dtypes; uids are distinct 64-bit values; particles are spread over 1000 micrographs (symlinks
to one MRC). Timed: ``harvest.cryosparc.scan_project`` + ``parse_job`` + the catalog write
(one transaction), against the baseline ``np.load`` of the same two files, measured side by
side. Then VACUUM and bytes per particle row.

    .venv/bin/python benchmarks/bench_harvest_ingest.py [--particles 1000000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def build(tmp: Path, n: int, n_mics: int = 1000) -> Path:
    from harvest.synth import FacilityConfig, make_facility

    fac = make_facility(tmp / "fac", FacilityConfig(versions=("cryosparc",), n_micrographs=2),
                        force=True)
    proj = Path(fac.projects["cryosparc"])
    main_path = proj / "J9" / "J9_002_particles.cs"
    pass_path = proj / "J9" / "J9_passthrough_particles.cs"
    main = np.load(main_path)
    passthrough = np.load(pass_path)
    rng = np.random.default_rng(0)
    idx = np.arange(n) % len(main)
    big_main = main[idx]
    big_pass = passthrough[idx]
    uids = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(12345)
    big_main["uid"] = uids
    big_pass["uid"] = uids
    # 1000 micrographs: links to one motion-corrected micrograph, names like CryoSPARC's
    mc_dir = proj / "J2" / "motioncorrected"
    target = sorted(mc_dir.iterdir())[0]
    names = []
    for i in range(n_mics):
        uid = int(rng.integers(0, 2**63 - 1))
        name = f"{uid:021d}_mic_{5000 + i:04d}_patch_aligned_doseweighted.mrc"
        os.symlink(target.name, mc_dir / name)
        names.append((f"J2/motioncorrected/{name}".encode(), uid))
    which = np.sort(rng.integers(0, n_mics, n))
    width = big_pass.dtype["location/micrograph_path"].itemsize
    if max(len(p) for p, _ in names) > width:
        raise ValueError("micrograph path longer than the field")
    big_pass["location/micrograph_path"] = np.array([p for p, _ in names])[which]
    big_pass["location/micrograph_uid"] = np.array([u for _, u in names], np.uint64)[which]
    big_pass["location/center_x_frac"] = rng.uniform(0.05, 0.95, n).astype(np.float32)
    big_pass["location/center_y_frac"] = rng.uniform(0.05, 0.95, n).astype(np.float32)
    with open(main_path, "wb") as f:
        np.save(f, big_main)
    with open(pass_path, "wb") as f:
        np.save(f, big_pass)
    return proj


class _Clock:
    """Wall and CPU seconds since the last lap (the CPU column shows what a step costs when
    the machine is shared and wall time includes waiting for a core)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def run(n: int) -> dict:
    from harvest import cryosparc
    from harvest.catalog import Catalog

    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as t:
        tmp = Path(t)
        proj = build(tmp, n)
        files = [proj / "J9" / "J9_002_particles.cs", proj / "J9" / "J9_passthrough_particles.cs"]
        # baseline: plain np.load of the same files (warm page cache for both)
        for f in files:
            np.load(f)
        clock = _Clock()
        for f in files:
            np.load(f)
        t_load = clock.lap()

        db = tmp / "catalog.db"
        with Catalog(db) as cat:
            clock = _Clock()
            scan = cryosparc.scan_project(proj)
            job = next(j for j in scan.jobs if j.key == "J9")
            t_scan = clock.lap()
            record = cryosparc.parse_job(scan, "J9")
            t_parse = clock.lap()
            with cat.write_project(scan) as w:
                w.put_job(job, record)
            t_write = clock.lap()
            count = sum(len(s.particles) for s in record.particle_sets)
            if count != n:
                raise RuntimeError(f"parsed {count} particles, expected {n}: {record.problems}")
            clock.lap()
            parts = cat.particles(cat.particle_sets()["id"])
            t_read = clock.lap()
            if len(parts) != n:
                raise RuntimeError("read back fewer particles")
            cat.vacuum()
        size = os.path.getsize(db)
        total = tuple(a + b + c for a, b, c in zip(t_scan, t_parse, t_write))
        return {
            "n": n, "np_load": t_load, "scan": t_scan, "parse": t_parse, "write": t_write,
            "total": total, "read": t_read, "bytes_per_row": size / n,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=1_000_000)
    args = ap.parse_args()
    r = run(args.particles)
    n = r["n"]
    print(f"1 CryoSPARC job, {n:,} particles (main + passthrough .cs, real dtypes)")
    print(f"load average (1 min) during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'step':36s} {'wall s':>7s} {'cpu s':>7s} {'particles/s (wall)':>19s} "
          f"{'(cpu)':>11s}")
    for label, key in (("baseline: np.load of the two .cs", "np_load"),
                       ("scan_project", "scan"), ("parse_job (harvest.cryosparc)", "parse"),
                       ("catalog write (one transaction)", "write"),
                       ("end to end (scan + parse + write)", "total"),
                       ("read back: Catalog.particles", "read")):
        wall, cpu = r[key]
        print(f"{label:36s} {wall:7.2f} {cpu:7.2f} {n / max(wall, 1e-9):19,.0f} "
              f"{n / max(cpu, 1e-9):11,.0f}")
    ratio = r["total"][0] / r["np_load"][0]
    print(f"end to end / np.load (wall): {ratio:.1f}x")
    print(f"catalog bytes per particle row after VACUUM: {r['bytes_per_row']:.1f} (target <= 60)")
    rate = n / r["total"][0]
    print(f"target >= 500,000 particles/s end to end (wall): {rate:,.0f} "
          f"{'met' if rate >= 500_000 else 'NOT met'}")
    rate_cpu = n / r["total"][1]
    print(f"target >= 500,000 particles/s end to end (cpu): {rate_cpu:,.0f} "
          f"{'met' if rate_cpu >= 500_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
