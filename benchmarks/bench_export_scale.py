"""Benchmark: export one project of 10^6 particles from a large catalog, labels only, end to end.

    .venv/bin/python benchmarks/bench_export_scale.py --catalog /work/bigcat/cat_21M.db \\
        --build 21000000 --formats topaz,star,box --repeat 2

``--build N`` writes the catalog first if the file does not exist (it is reused afterwards; keep
it outside the repository): project 1 is the one exported, then generated "filler" projects of
the same shape until the catalog holds about N particles. ``--milestones`` copies the
catalog file as it passes the given sizes (``cat_<n>.db`` beside ``--catalog``), so the growth
of the export time with the catalog size is measured on the same project.

Project 1: 1000 K3-sized micrographs (5760 × 4092 px, 0.83 Å/px; CTF max resolution 3–12 Å,
so some are dropped by the default 10 Å filter), 700 true particles each (a jittered grid, at
least 130 px apart; diameter 0.6 × 256 px, separation half that), seen by
``picked`` (J10, 1.2 M, true + junk), ``selected2d`` (J14, 0.6 M) and two ``refined`` sets:
J20 (600 k) and J21 (400 k, of which 300 k are J20's particles again, within 1.2 px, with the
same score for a third of them: ties that the lower set id wins). The export loads the 10^6
refined particles (the less curated sets lose on every micrograph), de-duplicates them across
the two refinements and writes the labels (``--images none``).

Rows per format: the ``export()`` call (catalog open to files written), in seconds and
particles loaded per second; the labels' SHA-256 (so two versions can be compared, run under
``benchmarks/before_after.py --script-from-after``). Baseline in the same run: Topaz 0.3's
``topaz convert`` (read + write, in process) on the exported positives, from the ``topaz``
export's table to per-micrograph ``.box`` files and to one coordinate table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_MICS = 1000
TRUE_PER_MIC = 700


def _mic_records(pid: int, rng: np.random.Generator):
    from harvest.records import MicrographRecord

    out = []
    for i in range(N_MICS):
        path = f"J5/motioncorrected/{pid:06d}{i:015d}_mic_{i:05d}_patch_aligned_doseweighted.mrc"
        out.append(MicrographRecord(
            path=path, abs_path=f"/nonexistent/P{pid}/{path}", key=f"mic_{i:05d}", nx=5760,
            ny=4092, pixel_size=0.83, ctf_max_res=float(rng.uniform(3, 12)),
            total_motion=float(rng.uniform(5, 40)), size_source="metadata"))
    return out


def _frame(paths: pd.Categorical, mic: np.ndarray, x, y, score, rng, shift=0.0) -> pd.DataFrame:
    n = len(mic)
    dx, dy = (rng.normal(0, shift, n), rng.normal(0, shift, n)) if shift else (0.0, 0.0)
    return pd.DataFrame({
        "micrograph": pd.Categorical.from_codes(mic, categories=paths.categories),
        "x": x + dx, "y": y + dy, "raw_x": x, "raw_y": y, "score": score,
        "class_id": np.full(n, -1), "uid": np.arange(n, dtype=np.int64),
    })


def _project(pid: int, seed: int, base: Path):
    """(scan, [(JobScan, JobRecord)]) of one generated project (see the module docstring)."""
    from harvest.records import JobRecord, JobScan, ParticleSetRecord, ProjectScan

    rng = np.random.default_rng(seed)
    mics = _mic_records(pid, rng)
    paths = pd.Categorical([m.path for m in mics])
    n_true = N_MICS * TRUE_PER_MIC
    mic = np.repeat(np.arange(N_MICS), TRUE_PER_MIC)
    # true particles on a jittered 36 × 20 grid (≥ 130 px apart, the diameter is 153 px)
    gx, gy = np.meshgrid(100 + 154.0 * np.arange(36), 100 + 195.0 * np.arange(20))
    cell = np.argsort(rng.uniform(size=(N_MICS, gx.size)), axis=1)[:, :TRUE_PER_MIC].ravel()
    tx = gx.ravel()[cell] + rng.uniform(-12, 12, n_true)
    ty = gy.ravel()[cell] + rng.uniform(-12, 12, n_true)

    def codes(i):
        return paths.codes[i]

    junk = 500_000
    jm = np.sort(rng.integers(0, N_MICS, junk))
    picked = _frame(paths, codes(np.concatenate([mic, jm])),
                    np.concatenate([tx, rng.uniform(0, 5760, junk)]),
                    np.concatenate([ty, rng.uniform(0, 4092, junk)]),
                    rng.normal(0, 1, n_true + junk), rng)
    sel = np.sort(rng.choice(n_true, 600_000, replace=False))
    sel2d = _frame(paths, codes(mic[sel]), tx[sel], ty[sel], rng.uniform(0, 1, len(sel)), rng,
                   shift=2.0)
    r20 = np.sort(rng.choice(n_true, 600_000, replace=False))
    s20 = rng.uniform(0, 1, len(r20))
    j20 = _frame(paths, codes(mic[r20]), tx[r20], ty[r20], s20, rng, shift=1.5)
    again = np.sort(rng.choice(len(r20), 300_000, replace=False))  # J20's particles again
    rest = np.setdiff1d(np.arange(n_true), r20)
    new = np.sort(rng.choice(rest, 100_000, replace=False))
    idx21 = np.concatenate([r20[again], new])
    s21 = rng.uniform(0, 1, len(idx21))
    tie = rng.uniform(size=len(again)) < 1 / 3
    s21[: len(again)][tie] = s20[again][tie]
    o = np.argsort(mic[idx21], kind="stable")
    j21 = _frame(paths, codes(mic[idx21][o]), tx[idx21][o] + rng.normal(0, 0.5, len(o)),
                 ty[idx21][o] + rng.normal(0, 0.5, len(o)), s21[o], rng, shift=0.5)
    scan = ProjectScan(root=str(base / f"P{pid}"), software="cryosparc", version="v4.4", title=f"bench {pid}")
    jobs = []
    for key, kind, stage, df, parents in (
        ("J10", "auto_pick", "picked", picked, []),
        ("J14", "select2d", "selected2d", sel2d, ["J10"]),
        ("J20", "refine3d", "refined", j20, ["J14"]),
        ("J21", "refine3d", "refined", j21, ["J14"]),
    ):
        job = JobScan(key=key, raw_type=kind, kind=kind, status="completed", parents=parents)
        ps = ParticleSetRecord(name="particles", stage=stage, particles=df,
                               source_file=f"{key}/particles.cs", box_size=256,
                               image_pixel_size=0.83)
        rec = JobRecord(key=key, raw_type=kind, kind=kind, status="completed", parents=parents,
                        particle_sets=[ps], micrographs=mics if key == "J10" else [])
        jobs.append((job, rec))
    return scan, jobs


def build(catalog: Path, total: int, milestones: list[int]) -> None:
    from harvest.catalog import Catalog

    catalog.parent.mkdir(parents=True, exist_ok=True)
    tmp = catalog.with_suffix(".building")
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    rows, pid, t0 = 0, 0, time.perf_counter()
    pending = sorted(milestones)
    with Catalog(tmp) as cat:
        while rows < total:
            pid += 1
            scan, jobs = _project(pid, seed=pid, base=catalog.parent / "projects")
            Path(scan.root).mkdir(parents=True, exist_ok=True)
            with cat.write_project(scan) as w:
                for job, rec in jobs:
                    w.put_job(job, rec)
            rows += sum(len(r.particle_sets[0].particles) for _, r in jobs)
            print(f"# built project {pid}: {rows:,} particles, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
            while pending and rows >= pending[0]:
                cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                shutil.copyfile(tmp, catalog.parent / f"cat_{pending.pop(0)}.db")
        cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.replace(tmp, catalog)


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", required=True, type=Path)
    ap.add_argument("--build", type=int, default=None, help="particles in the catalog to build")
    ap.add_argument("--milestones", default="", help="comma-separated sizes to copy at")
    ap.add_argument("--formats", default="topaz,star,box")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--topaz", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--profile", default=None, help="write a cProfile of one export here")
    args = ap.parse_args(argv)
    if not args.catalog.is_file():
        if args.build is None:
            ap.error(f"{args.catalog} does not exist; pass --build N")
        build(args.catalog, args.build,
              [int(m) for m in args.milestones.split(",") if m.strip()])

    from converters.export import ExportOptions, export
    from converters.select import SelectionOptions

    opts = ExportOptions(selection=SelectionOptions(projects=("1",)), images="none",
                         force=True)
    work = Path(tempfile.mkdtemp(prefix="bench_export_scale_"))
    import sqlite3

    with sqlite3.connect(f"file:{args.catalog}?mode=ro", uri=True) as c:
        n_cat = c.execute("SELECT sum(count) FROM particle_sets").fetchone()[0]
    print(f"catalog: {args.catalog.name}, {n_cat:,} particles; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| export (labels only, `--images none`) | best wall s | all runs wall s | CPU s "
          "| particles loaded/s (wall) | (CPU) | positives written | labels SHA-256 |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    try:
        topaz_table = None
        for fmt in args.formats.split(","):
            times, cpu, res = [], [], None
            for i in range(args.repeat):
                out = work / f"{fmt}{i}"
                t0, c0 = time.perf_counter(), time.process_time()
                res = export(args.catalog, fmt, out, opts)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            loaded = int(res.manifest["selection"]["particles_loaded"])
            written = sum(c["positives"] for c in res.counts.values())
            print(f"| {fmt} | {min(times):.2f} | {' / '.join(f'{t:.2f}' for t in times)} | "
                  f"{min(cpu):.2f} | {loaded / min(times):,.0f} | {loaded / min(cpu):,.0f} | "
                  f"{written:,} | {digest(out)} |", flush=True)
            if fmt == "topaz":
                topaz_table = [p for p in res.label_files if p.is_file()]
        if args.profile:
            import cProfile

            cProfile.runctx("export(args.catalog, 'topaz', work / 'prof', opts)", globals(),
                            {"export": export, "args": args, "work": work, "opts": opts},
                            args.profile)
        if args.topaz and topaz_table:
            _topaz_rows(topaz_table, work, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _topaz_rows(tables: list[Path], work: Path, repeat: int) -> None:
    try:
        from topaz.commands import convert as topaz_convert
    except Exception as exc:  # noqa: BLE001 - report and go on without the baseline
        print(f"\ntopaz not importable ({exc}); baseline skipped")
        return
    src = work / "topaz_all.txt"
    frames = [pd.read_csv(t, sep="\t") for t in tables]
    table = pd.concat(frames, ignore_index=True)
    table.to_csv(src, sep="\t", index=False)
    n = len(table)
    print(f"\nBaseline, same run: `topaz convert` (Topaz 0.3, in process) on the {n:,} exported "
          "positives (the topaz export's train + val tables in one file)\n")
    print("| topaz convert | best wall s | all runs wall s | CPU s | particles/s (wall) "
          "| (CPU) |")
    print("|---|---:|---|---:|---:|---:|")
    for k, (label, extra, dest) in enumerate((
            ("to .box per micrograph", ["--boxsize", "256"], ""),
            ("to one coordinate table", [], "coords.txt"))):
        times, cpu = [], []
        for i in range(repeat):
            d = work / f"tz{k}_{i}"
            d.mkdir()
            a = topaz_convert.add_arguments().parse_args([str(src), *extra, "-o", f"{d}/{dest}"])
            t0, c0 = time.perf_counter(), time.process_time()
            topaz_convert.main(a)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(f"| {label} | {min(times):.2f} | {' / '.join(f'{t:.2f}' for t in times)} | "
              f"{min(cpu):.2f} | {n / min(times):,.0f} | {n / min(cpu):,.0f} |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
