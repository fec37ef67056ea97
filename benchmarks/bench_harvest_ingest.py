"""Benchmark: one 1M-particle CryoSPARC refinement job into the catalog, end to end.

A generated CryoSPARC project (``harvest.synth``) has its refinement job J9 blown up to N
particles: the final ``J9_002_particles.cs`` (blob + alignments3D) and
``J9_passthrough_particles.cs`` (location, ctf, pick_stats, alignments2D) keep their real
dtypes; uids are distinct 64-bit values; particles are spread over 1000 micrographs (symlinks
to one MRC). Timed: ``harvest.cryosparc.scan_project`` + ``parse_job`` + the catalog write
(one transaction), against the baseline ``np.load`` of the same two files, measured side by
side. Beside it, the raw SQLite insert rate of the same rows into the same table, no
cryoglean code: the stored particle rows, fetched as Python tuples before timing, go into an
empty copy of the table in a fresh file (same PRAGMAs, one transaction) by ``executemany``
(one row a statement), and by ``INSERT … SELECT`` (no Python at all). Then bytes per particle
row as written and after VACUUM. ``--catalog-rows N`` first fills the catalog with N
particles of another project (not timed), for the growth of the write with the catalog.

    .venv/bin/python benchmarks/bench_harvest_ingest.py [--particles 1000000] [--catalog-rows 0]
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


def prefill(cat, rows: int, chunk: int = 2_000_000) -> None:
    """``rows`` particles of another project (sets of ≤ 2 M rows, 300 a micrograph)."""
    import pandas as pd

    from harvest.records import JobRecord, JobScan, ParticleSetRecord, ProjectScan

    rng = np.random.default_rng(1)
    scan = ProjectScan(root="/prefill", software="cryosparc", version="bench")
    with cat.write_project(scan) as w:
        for j, start in enumerate(range(0, rows, chunk)):
            n = min(chunk, rows - start)
            mics = np.array([f"J{j}/mic_{i:05d}.mrc" for i in range(n // 300 + 1)], dtype=object)
            rx, ry = rng.uniform(0, 4096, n), rng.uniform(0, 4096, n)
            df = pd.DataFrame({
                "micrograph": mics[np.arange(n) // 300], "raw_x": rx, "raw_y": ry,
                "x": rx + rng.normal(0, 3, n), "y": ry + rng.normal(0, 3, n),
                "score": rng.uniform(0, 1, n), "class_id": rng.integers(0, 50, n),
                "uid": rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n,
                                    dtype=np.int64)})
            job = JobScan(key=f"J{j}", raw_type="x", kind="other", status="completed")
            w.put_job(job, JobRecord(key=f"J{j}", raw_type="x", kind="other", status="completed",
                                     particle_sets=[ParticleSetRecord("p", "refined", df, "f")]))


def _table(conn) -> str:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return "particle_rows" if "particle_rows" in names else "particles"


def raw_insert(db: Path, tmp: Path, n_new: int) -> dict:
    """The last ``n_new`` stored particle rows into an empty copy of their table, plain
    sqlite3 (same PRAGMAs as the catalog): executemany of ready tuples, and INSERT … SELECT."""
    import sqlite3

    src = sqlite3.connect(db)
    table = _table(src)
    ddl = src.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    order = "id" if table == "particle_rows" else "set_id DESC, micrograph_id, row"
    # the job's rows: the last ids (schema 3) or the highest set id (schema 2)
    where = (f"id > (SELECT max(id) FROM {{db}}{table}) - {n_new}" if table == "particle_rows"
             else f"set_id = (SELECT max(set_id) FROM {{db}}{table})")
    rows = src.execute(f"SELECT * FROM {table} WHERE {where.format(db='')} "
                       f"ORDER BY {order}").fetchall()
    src.close()
    out = {"table": table, "rows": len(rows)}
    for label in ("executemany", "insert_select"):
        path = tmp / f"raw_{label}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -65536"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(ddl)
        if label == "insert_select":
            conn.execute(f"ATTACH DATABASE '{db}' AS src")
        clock = _Clock()
        conn.execute("BEGIN")
        if label == "executemany":
            conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(cols))})", rows)
        else:
            conn.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table} "
                         f"WHERE {where.format(db='src.')} ORDER BY {order}")
        conn.execute("COMMIT")
        out[label] = clock.lap()
        conn.close()
    return out


def run(n: int, catalog_rows: int = 0) -> dict:
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
            if catalog_rows:
                prefill(cat, catalog_rows)
                cat.vacuum()
            before = os.path.getsize(db)
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
            ids = [r[0] for r in cat.conn.execute(
                "SELECT id FROM particle_sets WHERE project_id = (SELECT max(id) FROM projects)")]
            clock.lap()
            parts = cat.particles(ids)
            t_read = clock.lap()
            if len(parts) != n:
                raise RuntimeError("read back fewer particles")
            cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            written = os.path.getsize(db)
            raw = raw_insert(db, tmp, n)
            cat.vacuum()
        size = os.path.getsize(db)
        total = tuple(a + b + c for a, b, c in zip(t_scan, t_parse, t_write))
        return {
            "n": n, "np_load": t_load, "scan": t_scan, "parse": t_parse, "write": t_write,
            "total": total, "read": t_read, "raw_em": raw["executemany"],
            "raw_is": raw["insert_select"], "raw_table": raw["table"],
            "bytes_written": (written - before) / n, "bytes_per_row": size / (n + catalog_rows),
            "catalog_rows": catalog_rows,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=1_000_000)
    ap.add_argument("--catalog-rows", type=int, default=0,
                    help="particles already in the catalog before the job is written")
    args = ap.parse_args()
    r = run(args.particles, args.catalog_rows)
    n = r["n"]
    print(f"1 CryoSPARC job, {n:,} particles (main + passthrough .cs, real dtypes), into a "
          f"catalog holding {r['catalog_rows']:,} particles")
    print(f"load average (1 min) during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'step':36s} {'wall s':>7s} {'cpu s':>7s} {'particles/s (wall)':>19s} "
          f"{'(cpu)':>11s}")
    for label, key in (("baseline: np.load of the two .cs", "np_load"),
                       ("scan_project", "scan"), ("parse_job (harvest.cryosparc)", "parse"),
                       ("catalog write (one transaction)", "write"),
                       ("end to end (scan + parse + write)", "total"),
                       ("read back: Catalog.particles", "read"),
                       (f"raw sqlite3 executemany ({r['raw_table']})", "raw_em"),
                       (f"raw sqlite3 INSERT SELECT ({r['raw_table']})", "raw_is")):
        wall, cpu = r[key]
        print(f"{label:36s} {wall:7.2f} {cpu:7.2f} {n / max(wall, 1e-9):19,.0f} "
              f"{n / max(cpu, 1e-9):11,.0f}")
    ratio = r["total"][0] / r["np_load"][0]
    print(f"end to end / np.load (wall): {ratio:.1f}x")
    print(f"catalog bytes per particle row as written (job's growth of the file, WAL "
          f"checkpointed): {r['bytes_written']:.1f}")
    print(f"catalog bytes per particle row after VACUUM (whole file / all particles): "
          f"{r['bytes_per_row']:.1f} (target <= 40)")
    rate = n / r["total"][0]
    print(f"target >= 800,000 particles/s end to end (wall): {rate:,.0f} "
          f"{'met' if rate >= 800_000 else 'NOT met'}")
    rate_cpu = n / r["total"][1]
    print(f"target >= 800,000 particles/s end to end (cpu): {rate_cpu:,.0f} "
          f"{'met' if rate_cpu >= 800_000 else 'NOT met'}")
    print(f"catalog write / raw executemany (cpu): {r['write'][1] / r['raw_em'][1]:.2f}x")


if __name__ == "__main__":
    main()
