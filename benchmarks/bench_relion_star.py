"""Benchmark: reading a 1M-row RELION 3.1 particles STAR into the catalog.

Compares, side by side on the same generated file (under a temp dir):

* ``starfile.read`` alone (the baseline);
* cryoglean: ``harvest.starread`` + building the ParticleSetRecord (optics join, recentring,
  micrograph records) + writing it into a catalog (``harvest.catalog.Catalog`` when it exists;
  otherwise reader + record building only, and the table says so).

Each measurement runs in its own subprocess so that peak memory (``resource.getrusage``
``ru_maxrss``, i.e. peak resident set size of that process, including the interpreter and the
imports) is not shared between them. The file is read once before timing so both runs see a warm
page cache.

Run: ``.venv/bin/python benchmarks/bench_relion_star.py [--rows 1000000] [--repeat 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

PARTICLE_LABELS = [
    "rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit", "rlnClassNumber",
    "rlnAnglePsi", "rlnImageName", "rlnMicrographName", "rlnOpticsGroup",
    "rlnCtfMaxResolution", "rlnCtfFigureOfMerit", "rlnDefocusU", "rlnDefocusV",
    "rlnDefocusAngle", "rlnCtfBfactor", "rlnCtfScalefactor", "rlnPhaseShift", "rlnGroupNumber",
    "rlnAngleRot", "rlnAngleTilt", "rlnOriginXAngst", "rlnOriginYAngst", "rlnNormCorrection",
    "rlnLogLikeliContribution", "rlnMaxValueProbDistribution", "rlnNrOfSignificantSamples",
    "rlnRandomSubset",
]


def write_particles_star(path: Path, rows: int, seed: int = 0, per_mic: int = 250) -> None:
    """A RELION 3.1 Refine3D-like run_data.star: optics (2 groups) + ``rows`` particles."""
    rng = np.random.default_rng(seed)
    n_mic = max(1, rows // per_mic)
    mic = rng.integers(0, n_mic, rows)
    mic.sort()
    with open(path, "w") as fh:
        fh.write("\n# version 30001\n\ndata_optics\n\nloop_ \n")
        for i, lab in enumerate([
            "rlnOpticsGroupName", "rlnOpticsGroup", "rlnMicrographOriginalPixelSize",
            "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
            "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality",
            "rlnMicrographPixelSize",
        ], 1):
            fh.write(f"_{lab} #{i} \n")
        fh.write("opticsGroup1 1 0.885000 300.000000 2.700000 0.100000 1.770000 256 2 1.770000\n")
        fh.write("opticsGroup2 2 0.885000 300.000000 2.700000 0.100000 1.770000 256 2 1.770000\n")
        fh.write("\n\n# version 30001\n\ndata_particles\n\nloop_ \n")
        for i, lab in enumerate(PARTICLE_LABELS, 1):
            fh.write(f"_{lab} #{i} \n")
        fmt = " ".join(
            ["%.6f", "%.6f", "%.6f", "%d", "%.6f", "%06d@Extract/job007/Movies/mic_%06d.mrcs",
             "MotionCorr/job002/Movies/mic_%06d.mrc", "%d", "%.6f", "%.6f", "%.6f", "%.6f",
             "%.6f", "%.6f", "%.6f", "%.6f", "%d", "%.6f", "%.6f", "%.6f", "%.6f", "%.6f",
             "%.6e", "%.6f", "%d", "%d"]
        ) + "\n"
        chunk = 100_000
        for s in range(0, rows, chunk):
            n = min(chunk, rows - s)
            m = mic[s : s + n].tolist()
            cols = [
                rng.uniform(0, 4096, n).tolist(), rng.uniform(0, 4096, n).tolist(),
                rng.normal(0, 1, n).tolist(), rng.integers(1, 51, n).tolist(),
                rng.uniform(-180, 180, n).tolist(),
                (np.arange(s, s + n) % per_mic + 1).tolist(), m, m,
                [k % 2 + 1 for k in m], rng.uniform(3, 8, n).tolist(),
                rng.uniform(0, 0.3, n).tolist(), rng.uniform(8000, 30000, n).tolist(),
                rng.uniform(8000, 30000, n).tolist(), rng.uniform(-180, 180, n).tolist(),
                [0.0] * n, [1.0] * n, [0.0] * n, [k % 100 + 1 for k in m],
                rng.uniform(-180, 180, n).tolist(), rng.uniform(0, 180, n).tolist(),
                rng.normal(0, 3, n).tolist(), rng.normal(0, 3, n).tolist(),
                rng.uniform(0.5, 1.5, n).tolist(), rng.uniform(1e5, 2e5, n).tolist(),
                rng.uniform(0, 1, n).tolist(), rng.integers(1, 500, n).tolist(),
                rng.integers(1, 3, n).tolist(),
            ]
            fh.write("".join(fmt % row for row in zip(*cols)))
        fh.write("\n")


CHILD = r"""
import json, resource, sys, time
import numpy, pandas  # imported before timing: every contender needs them
mode, path = sys.argv[1], sys.argv[2]
if mode == "starfile":
    import starfile
elif mode == "starread":
    from harvest.starread import read_star
else:
    import harvest.relion, harvest.catalog
t0 = time.perf_counter()
c0 = time.process_time()
extra = {}
if mode == "starfile":
    import starfile
    data = starfile.read(path, always_dict=True)
    rows = len(data["particles"])
elif mode == "starread":
    from harvest.starread import read_star
    data = read_star(path)
    rows = len(data["particles"])
else:
    import os, shutil, tempfile
    from harvest.records import JobRecord
    from harvest.relion import particle_set_from_star
    pset, mics = particle_set_from_star(path, name="run_data", stage="refined", project_root="/p")
    rows = len(pset.particles)
    t_build = time.perf_counter() - t0
    extra["build_s"] = t_build
    extra["build_cpu_s"] = time.process_time() - c0
    try:
        from harvest.catalog import Catalog
    except ImportError:
        Catalog = None
    extra["catalog"] = Catalog is not None
    if Catalog is not None:
        from harvest.records import JobScan, ProjectScan
        d = tempfile.mkdtemp()
        scan = ProjectScan(root="/p", software="relion", version="3.1", title="bench")
        job = JobScan(key="Refine3D/job025", raw_type="Refine3D", kind="refine3d",
                      status="completed")
        record = JobRecord(key=job.key, raw_type=job.raw_type, kind=job.kind,
                           status="completed", particle_sets=[pset], micrographs=mics)
        with Catalog(os.path.join(d, "catalog.db")) as cat:
            with cat.write_project(scan) as writer:
                writer.put_job(job, record)
            extra["catalog_rows"] = int(cat.particle_sets()["count"].sum())
        shutil.rmtree(d)
elapsed = time.perf_counter() - t0
extra["cpu_s"] = time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"mode": mode, "rows": rows, "seconds": elapsed, "peak_mb": peak, **extra}))
"""


def run_child(mode: str, path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path)], capture_output=True, text=True, env=env,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--modes", default="starfile,starread,cryoglean")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run_data.star"
        t0 = time.perf_counter()
        # generated in a child process so this process stays small (ru_maxrss survives exec)
        subprocess.run(
            [sys.executable, "-c",
             "import sys; sys.path.insert(0, sys.argv[3]); "
             "from benchmarks.bench_relion_star import write_particles_star as w; "
             "w(sys.argv[1], int(sys.argv[2]))", str(path), str(args.rows), str(REPO)],
            check=True,
        )
        print(f"generated {args.rows} rows, {path.stat().st_size / 1e6:.0f} MB in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        with open(path, "rb") as fh:  # warm the page cache for every contender
            while fh.read(1 << 24):
                pass
        results = []
        for _ in range(args.repeat):
            for mode in args.modes.split(","):
                results.append(run_child(mode, path))
                print(results[-1], file=sys.stderr)
    best = {}
    for r in results:
        if r["mode"] not in best or r["seconds"] < best[r["mode"]]["seconds"]:
            best[r["mode"]] = r
    base = best.get("starfile")
    print("| contender | rows | wall s | rows/s | ratio vs starfile.read | CPU s | CPU ratio "
          "| peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, r in best.items():
        ratio = base["seconds"] / r["seconds"] if base else float("nan")
        cpu_ratio = base["cpu_s"] / r["cpu_s"] if base else float("nan")
        print(f"| {mode} | {r['rows']} | {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} | "
              f"{ratio:.2f}x | {r['cpu_s']:.2f} | {cpu_ratio:.2f}x | {r['peak_mb']:.0f} |")
    if "cryoglean" in best and not best["cryoglean"].get("catalog"):
        print("(harvest.catalog not importable: cryoglean = reader + record building only)")

if __name__ == "__main__":
    main()
