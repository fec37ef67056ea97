"""Benchmark: catalog bytes per particle row (db file size / rows; target <= 40).

Three kinds of particle sets, N rows each, written through ``Catalog.write_project`` into a
fresh catalog; its size is taken as written (WAL checkpointed into the file) and after VACUUM;
the size of the same catalog without particles is subtracted, so the figure is what a particle
costs, key, index and page overhead included. ``--sets K`` writes the N rows as K sets of
N / K rows, each in its own project transaction (as a crawl writes them):

* CryoSPARC refinement: random 64-bit uids, recentring shifts (σ 3 px), score, class
  (K3-sized micrographs, 5760 × 4092 px)
* RELION picks: uid = row, no shifts, score, no class
* tomogram picks (3D): x, y, z, no score

    .venv/bin/python benchmarks/bench_harvest_size.py [--rows 1000000] [--sets 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def frames(n: int, rng: np.random.Generator) -> dict[str, tuple[pd.DataFrame, bool]]:
    mics = np.array([f"J3/motioncorrected/{i:021d}_mic_{i:05d}_patch_aligned_doseweighted.mrc"
                     for i in range(n // 300 + 1)], dtype=object)
    which = np.sort(rng.integers(0, len(mics), n))
    rx, ry = rng.uniform(0, 5760, n), rng.uniform(0, 4092, n)
    cs = pd.DataFrame({
        "micrograph": mics[which], "raw_x": rx, "raw_y": ry,
        "x": rx + rng.normal(0, 3, n), "y": ry + rng.normal(0, 3, n),
        "score": rng.uniform(0, 1, n), "class_id": rng.integers(0, 50, n),
        "uid": rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n, dtype=np.int64),
    })
    rel = pd.DataFrame({
        "micrograph": mics[which], "raw_x": rx, "raw_y": ry, "x": rx, "y": ry,
        "score": rng.normal(0, 1, n), "class_id": np.full(n, -1),
        "uid": np.arange(n, dtype=np.int64),
    })
    tz = rng.uniform(0, 300, n)
    tomo = pd.DataFrame({
        "micrograph": mics[which], "raw_x": rx / 4, "raw_y": ry / 4, "x": rx / 4, "y": ry / 4,
        "raw_z": tz, "z": tz, "score": np.full(n, np.nan), "class_id": np.full(n, -1),
        "uid": np.arange(n, dtype=np.int64),
    })
    return {"CryoSPARC refined": (cs, False), "RELION picked": (rel, False),
            "tomogram picks (3D)": (tomo, True)}


def measure(tmp: Path, df: pd.DataFrame, is_3d: bool, sets: int = 1
            ) -> tuple[float, float, float, float]:
    from harvest.catalog import Catalog
    from harvest.records import JobRecord, JobScan, ParticleSetRecord, ProjectScan

    def write(db: Path, particles: pd.DataFrame) -> tuple[float, int, int]:
        elapsed = 0.0
        step = -(-len(particles) // sets) if len(particles) else 0
        with Catalog(db) as cat:
            for k in range(sets):
                part = particles.iloc[k * step:(k + 1) * step] if step else particles
                scan = ProjectScan(root=str(tmp / f"P{k}"), software="cryosparc",
                                   version="bench")
                job = JobScan(key="J1", raw_type="bench", kind="other", status="completed")
                rec = JobRecord(key="J1", raw_type="bench", kind="other", status="completed",
                                particle_sets=[ParticleSetRecord("p", "picked", part, "bench",
                                                                 is_3d=is_3d)])
                t0 = time.perf_counter()
                with cat.write_project(scan) as w:
                    w.put_job(job, rec)
                elapsed += time.perf_counter() - t0
            cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            written = os.path.getsize(db)
            c0 = time.process_time()
            cat.vacuum()
            vacuum_cpu = time.process_time() - c0
        return elapsed, written, os.path.getsize(db), vacuum_cpu

    empty_db, full_db = tmp / "empty.db", tmp / "full.db"
    _, empty_written, empty_size, _ = write(empty_db, df.iloc[:0])
    seconds, written, size, vacuum_cpu = write(full_db, df)
    per_row = (size - empty_size) / len(df)
    per_row_written = (written - empty_written) / len(df)
    for p in (empty_db, full_db):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(str(p) + suffix):
                os.remove(str(p) + suffix)
    return per_row_written, per_row, seconds, vacuum_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sets", type=int, default=1, help="sets (projects) the rows are split into")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'particle set':24s} {'rows':>10s} {'sets':>5s} {'B/row written':>13s} "
          f"{'B/row VACUUM':>12s} {'write s':>8s} {'VACUUM cpu s':>12s}")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="bench_size_") as t:
        for label, (df, is_3d) in frames(args.rows, rng).items():
            written, per_row, seconds, vacuum_cpu = measure(Path(t), df, is_3d, args.sets)
            worst = max(worst, written, per_row)
            print(f"{label:24s} {len(df):10,d} {args.sets:5d} {written:13.1f} {per_row:12.1f} "
                  f"{seconds:8.2f} {vacuum_cpu:12.2f}")
    print(f"largest: {worst:.1f} bytes per particle row; target <= 40: "
          f"{'met' if worst <= 40 else 'NOT met'}")


if __name__ == "__main__":
    main()
