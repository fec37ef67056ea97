"""Throughput of the CryoSPARC parser on a large refinement job (main + passthrough).

Writes a project with one ``homo_refine_new`` job of N particles on M micrographs (main file:
blob + alignments3D, passthrough: location + ctf + pick_stats + alignments2D, rows shuffled,
CryoSPARC's full slot dtypes), then times, in the same run:

* ``cryoglean``: ``scan_project`` + ``parse_job`` (harvest.cryosparc), and where the catalog is
  available the whole ``crawl`` into a fresh catalog (parse + catalog write);
* ``baseline``: cryosparc-tools ``Dataset.load`` of both files + ``innerjoin`` on uid, fractions
  to pixels, and micrograph paths decoded per row (what a script with the official toolkit does).

Run: ``.venv/bin/python benchmarks/bench_cryosparc_parse.py [--particles 1000000]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _dtype(slots: dict[str, list]) -> list:
    out = [("uid", "<u8")]
    for slot, fields in slots.items():
        out += [(f"{slot}/{f[0]}",) + tuple(f[1:]) for f in fields]
    return out


ALIGN = [("split", "<u4"), ("shift", "<f4", (2,)), ("psize_A", "<f4"), ("error", "<f4"),
         ("error_min", "<f4"), ("resid_pow", "<f4"), ("slice_pow", "<f4"), ("image_pow", "<f4"),
         ("cross_cor", "<f4"), ("alpha", "<f4"), ("alpha_min", "<f4"), ("weight", "<f4"),
         ("pose_ess", "<f4"), ("shift_ess", "<f4"), ("class_posterior", "<f4"),
         ("class", "<u4"), ("class_ess", "<f4")]
MAIN = {
    "blob": [("path", "|S96"), ("idx", "<u4"), ("shape", "<u4", (2,)), ("psize_A", "<f4"),
             ("sign", "<f4"), ("import_sig", "<u8")],
    "alignments3D": ALIGN + [("pose", "<f4", (3,))],
}
PASS = {
    "location": [("micrograph_uid", "<u8"), ("exp_group_id", "<u4"),
                 ("micrograph_path", "|S96"), ("micrograph_shape", "<u4", (2,)),
                 ("micrograph_psize_A", "<f4"), ("center_x_frac", "<f4"),
                 ("center_y_frac", "<f4"), ("min_dist_A", "<f4")],
    "ctf": [("type", "|S9"), ("exp_group_id", "<u4"), ("accel_kv", "<f4"), ("cs_mm", "<f4"),
            ("amp_contrast", "<f4"), ("df1_A", "<f4"), ("df2_A", "<f4"),
            ("df_angle_rad", "<f4"), ("phase_shift_rad", "<f4"), ("scale", "<f4"),
            ("scale_const", "<f4"), ("shift_A", "<f4", (2,)), ("tilt_A", "<f4", (2,)),
            ("trefoil_A", "<f4", (2,)), ("tetra_A", "<f4", (4,)), ("anisomag", "<f4", (4,)),
            ("bfactor", "<f4")],
    "pick_stats": [("ncc_score", "<f4"), ("power", "<f4"), ("template_idx", "<u4"),
                   ("angle_rad", "<f4")],
    "alignments2D": ALIGN + [("pose", "<f4")],
}


def make_project(root: Path, n: int, n_mics: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    proj = root / "CS-bench"
    (proj / "J9").mkdir(parents=True)
    uids = np.unique(rng.integers(0, 2**64 - 1, size=n + n // 10, dtype=np.uint64))[:n]
    uids = rng.permutation(uids)
    mic_uids = rng.integers(0, 2**64 - 1, size=n_mics, dtype=np.uint64)
    names = np.array([f"J2/motioncorrected/{u:021d}_mic_{i:05d}_patch_aligned_doseweighted.mrc"
                      .encode() for i, u in enumerate(mic_uids)])
    mic = rng.integers(0, n_mics, size=n)
    main = np.zeros(n, dtype=_dtype(MAIN))
    main["uid"] = uids
    main["blob/path"] = np.char.replace(names, b"motioncorrected", b"extract")[mic]
    main["blob/idx"] = np.arange(n)
    main["blob/shape"] = 128
    main["blob/psize_A"] = 2.0
    main["alignments3D/shift"] = rng.normal(0, 2, (n, 2))
    main["alignments3D/psize_A"] = 2.0
    pt = np.zeros(n, dtype=_dtype(PASS))
    pt["uid"] = uids
    pt["location/micrograph_uid"] = mic_uids[mic]
    pt["location/micrograph_path"] = names[mic]
    pt["location/micrograph_shape"] = (4096, 4096)
    pt["location/micrograph_psize_A"] = 1.0
    pt["location/center_x_frac"] = rng.random(n)
    pt["location/center_y_frac"] = rng.random(n)
    pt["ctf/accel_kv"] = 300
    pt["pick_stats/ncc_score"] = rng.random(n)
    pt = pt[rng.permutation(n)]
    for name, arr in (("J9_002_particles.cs", main), ("J9_passthrough_particles.cs", pt)):
        with open(proj / "J9" / name, "wb") as fh:
            np.save(fh, arr)
    job = {
        "uid": "J9", "type": "homo_refine_new", "job_type": "homo_refine_new",
        "status": "completed", "version": "v4.7.1", "parents": [],
        "created_at": {"$date": 1767225600000}, "completed_at": {"$date": 1767225900000},
        "output_result_groups": [{"name": "particles", "type": "particle"}],
        "output_results": [
            {"group_name": "particles", "name": s, "type": f"particle.{s}",
             "metafiles": ["J9/J9_002_particles.cs"], "passthrough": False} for s in MAIN
        ] + [
            {"group_name": "particles", "name": s, "type": f"particle.{s}",
             "metafiles": ["J9/J9_passthrough_particles.cs"], "passthrough": True} for s in PASS
        ],
    }
    (proj / "J9" / "job.json").write_text(json.dumps(job))
    (proj / "project.json").write_text(json.dumps({"uid": "P1", "title": "bench"}))
    (proj / "workspaces.json").write_text("[]")
    (proj / "job_manifest.json").write_text(json.dumps({"jobs": ["J9"]}))
    return proj


class Clock:
    """Wall and CPU (this process) seconds; CPU time is the fairer figure on a busy machine."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def time_ours(proj: Path) -> tuple[float, int]:
    from harvest.cryosparc import parse_job, scan_project

    with Clock() as c:
        scan = scan_project(proj)
        rec = parse_job(scan, "J9")
    return c.wall, c.cpu, sum(len(s.particles) for s in rec.particle_sets)


def time_crawl(proj: Path, db: Path) -> tuple[float, int] | None:
    try:
        from harvest.crawl import crawl
    except ImportError:
        return None
    with Clock() as c:
        summary = crawl([proj], db, progress=False)
    return c.wall, c.cpu, summary.new_particles


def time_baseline(proj: Path) -> tuple[float, int] | None:
    try:
        from cryosparc.dataset import Dataset
    except ImportError:
        return None
    c = Clock().__enter__()
    main = Dataset.load(str(proj / "J9" / "J9_002_particles.cs"))
    pt = Dataset.load(str(proj / "J9" / "J9_passthrough_particles.cs"))
    d = main.innerjoin(pt)
    shape = np.asarray(d["location/micrograph_shape"], dtype=np.float64)
    x = np.asarray(d["location/center_x_frac"]) * shape[:, 1]
    y = np.asarray(d["location/center_y_frac"]) * shape[:, 0]
    mics = [str(p) for p in d["location/micrograph_path"]]
    c.__exit__()
    assert len(x) == len(y) == len(mics)
    return c.wall, c.cpu, len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=1_000_000)
    ap.add_argument("--micrographs", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_cryosparc_") as tmp:
        proj = make_project(Path(tmp), args.particles, args.micrographs)
        size = sum(f.stat().st_size for f in (proj / "J9").glob("*.cs")) / 2**20
        print(f"{args.particles} particles, {args.micrographs} micrographs, "
              f"{size:.0f} MiB of .cs (main + passthrough), best of {args.repeats}")
        rows = []
        ours = min((time_ours(proj) for _ in range(args.repeats)), key=lambda r: r[1])
        rows.append(("cryoglean scan+parse_job", ours))
        crawls = []
        for i in range(args.repeats):
            c = time_crawl(proj, Path(tmp) / f"catalog{i}.db")
            if c is not None:
                crawls.append(c)
        if crawls:
            rows.append(("cryoglean crawl (parse + catalog write)", min(crawls, key=lambda r: r[1])))
        base = [time_baseline(proj) for _ in range(args.repeats)]
        if base[0] is not None:
            rows.append(("baseline cryosparc-tools load+innerjoin+decode",
                         min(base, key=lambda r: r[1])))
        print(f"{'contender':48s} {'wall s':>7s} {'cpu s':>7s} {'particles/cpu-s':>16s} "
              f"{'cpu vs baseline':>15s}")
        ref = min(base, key=lambda r: r[1])[1] if base[0] is not None else None
        for name, (wall, cpu, n) in rows:
            ratio = f"{ref / cpu:.2f}x" if ref else "-"
            print(f"{name:48s} {wall:7.3f} {cpu:7.3f} {n / cpu:16,.0f} {ratio:>15s}")


if __name__ == "__main__":
    main()
