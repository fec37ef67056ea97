"""Writing speed of cryoglean's format writers against the reference writers, side by side.

1,000,000 particles on 1,000 micrographs (integer centres, as Topaz tables hold them, and a
score). Baselines, run in the same process on the same particles:

- Topaz 0.3.x ``topaz.utils.files.write_coordinates`` (the writing step of ``topaz convert``:
  ``--to box`` one EMAN .box per image, ``--to coord`` one table), timed on the already-parsed
  table, so only the writing is compared; ``topaz convert`` end to end (read + write) is also
  shown for reference.
- ``starfile.write`` of the same particles as a one-table STAR (the columns of cryoglean's
  ``relion30`` flavour: coordinates, micrograph name, figure of merit).

Each baseline run is followed by the cryoglean runs it is compared with (same machine load);
the table gives the best time of ``--repeat`` runs and the median of the per-run ratios. Usage:
    .venv/bin/python benchmarks/bench_formats_write.py [--particles N] [--micrographs M]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_picks(n: int, m: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mic = np.repeat([f"FoilHole_{i:05d}_Data_{i * 7:06d}" for i in range(m)], -(-n // m))[:n]
    return pd.DataFrame({
        "micrograph": mic,
        "x": rng.integers(0, 4096, n).astype(np.float64),
        "y": rng.integers(0, 4096, n).astype(np.float64),
        "score": rng.uniform(-5, 5, n),
    })


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=1_000_000)
    ap.add_argument("--micrographs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--boxsize", type=int, default=64)
    args = ap.parse_args(argv)

    import starfile

    from converters import registry

    try:
        from topaz.commands import convert as topaz_convert
        from topaz.utils import files as topaz_files
    except Exception as exc:  # noqa: BLE001 - report and go on without the baseline
        topaz_files = topaz_convert = None
        print(f"# topaz not importable ({exc}); Topaz baselines skipped", file=sys.stderr)

    n, m = args.particles, args.micrographs
    picks = make_picks(n, m)
    work = Path(tempfile.mkdtemp(prefix="bench_formats_"))
    counter = iter(range(10**6))

    def fresh_dir():
        d = work / f"run{next(counter)}"
        d.mkdir()
        return d

    # (label, function(target dir), baseline label or None); each repeat runs a baseline and
    # then the writers compared with it, so both see the same machine load (it may be shared)
    star_df = pd.DataFrame({"rlnCoordinateX": picks["x"], "rlnCoordinateY": picks["y"],
                            "rlnMicrographName": picks["micrograph"] + ".mrc",
                            "rlnAutopickFigureOfMerit": picks["score"]})
    star_picks = picks.assign(micrograph=picks["micrograph"] + ".mrc")
    groups = []
    if topaz_files is not None:
        table = pd.DataFrame({"image_name": picks["micrograph"],
                              "x_coord": picks["x"].astype(int),
                              "y_coord": picks["y"].astype(int),
                              "score": picks["score"]})

        def topaz_coord(d):
            with open(d / "out.txt", "w") as fh:
                topaz_files.write_coordinates(fh, table, format="coord")

        groups.append((
            (f"topaz write_coordinates --to box ({m} files)", lambda d: topaz_files.
             write_coordinates(str(d), table, format="box", boxsize=args.boxsize)),
            [(f"cryoglean box ({m} .box files)",
              lambda d: registry.write_picks(picks, d, "box", boxsize=args.boxsize)),
             (f"cryoglean thi ({m} .thi files)", lambda d: registry.write_picks(picks, d, "thi"))],
        ))
        groups.append((
            ("topaz write_coordinates --to coord (1 table)", topaz_coord),
            [("cryoglean topaz table (1 file)",
              lambda d: registry.write_picks(picks, d / "p.txt", "topaz"))],
        ))
    groups.append((
        ("starfile.write (1 table, %.6f)", lambda d: starfile.write(star_df, d / "s.star")),
        [("cryoglean star relion30 (1 table)", lambda d: registry.write_picks(
            star_picks, d / "p.star", "star", flavor="relion30")),
         ("cryoglean star relion31 (optics + particles)", lambda d: registry.write_picks(
             star_picks, d / "p.star", "star", flavor="relion31")),
         (f"cryoglean star coords ({m} files)",
          lambda d: registry.write_picks(star_picks, d, "star"))],
    ))

    def timed(fn) -> float:
        d = fresh_dir()
        t0 = time.perf_counter()
        fn(d)
        t = time.perf_counter() - t0
        shutil.rmtree(d, ignore_errors=True)
        return t

    results = []  # (label, best seconds, median ratio or None)
    try:
        for (blabel, bfn), ours in groups:
            btimes, otimes = [], {label: [] for label, _ in ours}
            for _ in range(args.repeat):
                btimes.append(timed(bfn))
                for label, fn in ours:
                    otimes[label].append(timed(fn))
            results.append((blabel, min(btimes), None))
            for label, _ in ours:
                ratios = [b / o for b, o in zip(btimes, otimes[label])]
                results.append((label, min(otimes[label]), float(np.median(ratios))))
        if topaz_convert is not None:
            src = work / "particles.txt"
            table.to_csv(src, sep="\t", index=False)

            def topaz_e2e(d):
                a = topaz_convert.add_arguments().parse_args(
                    [str(src), "--boxsize", str(args.boxsize), "-o", f"{d}/"])
                topaz_convert.main(a)

            results.append(("topaz convert end to end, box (read + write)", timed(topaz_e2e),
                            None))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"# {n} particles on {m} micrographs; best of {args.repeat} runs; ratio = median over "
          "runs of baseline time / cryoglean time, baseline and cryoglean run back to back")
    print(f"| {'writer':50s} | {'seconds':>8s} | {'rows/s':>12s} | {'vs baseline':>11s} |")
    print(f"|{'-' * 52}|{'-' * 10}|{'-' * 14}|{'-' * 13}|")
    for what, t, ratio in results:
        r = f"{ratio:.1f}x" if ratio else ""
        print(f"| {what:50s} | {t:8.3f} | {n / t:12,.0f} | {r:>11s} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
