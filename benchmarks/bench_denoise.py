"""Benchmark: converters.denoise vs the plain transcription (tests/denoise_reference.py).

Both run on the same generated micrographs (white noise + Gaussian "particles" + a gradient,
written as MRC files under a temporary directory and read back), one after the other per
micrograph so that machine load affects both alike. Prints seconds per micrograph (wall and
process CPU), micrographs/s, the ratio, a per-stage breakdown for both, and checks the equality
rule (at most 1 grey level apart on at most 0.1 % of pixels), printing the fraction that differ.

    .venv/bin/python benchmarks/bench_denoise.py [--size 4096] [--count 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import mrcfile
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import denoise_reference as ref  # noqa: E402

from converters import denoise as dn  # noqa: E402

STAGES = ("scale", "nlm", "wiener", "clahe", "guided")


def make_micrograph(size: int, seed: int) -> np.ndarray:
    """Noise + blurred point "particles" (diameter ~ 40 px) + a gentle gradient, float32."""
    rng = np.random.default_rng(seed)
    particles = np.zeros((size, size), np.float32)
    n = size * size // 20000
    particles[rng.integers(0, size, n), rng.integers(0, size, n)] = 1.0
    particles = cv2.GaussianBlur(particles, (0, 0), 10.0) * 2 * np.pi * 100.0
    ramp = np.linspace(0.0, 0.5, size, dtype=np.float32)[None, :]
    return (rng.normal(size=(size, size)).astype(np.float32) + particles + ramp).astype(np.float32)


def reference_with_stages(image: np.ndarray, timings: dict[str, float]) -> np.ndarray:
    """The reference pipeline, step by step as denoise_reference(), timing each step with the
    same clock as the module (wall seconds and "cpu:<stage>" process CPU seconds)."""
    clock = dn._StageClock(timings)
    scaled = ref.standard_scaler(np.array(image))
    clock.lap("scale")
    smoothed = ref.nl_means(scaled)
    clock.lap("nlm")
    wiener = ref.wiener_filter(smoothed, ref.gaussian_kernel(), ref.WIENER_K)
    clock.lap("wiener")
    equalised = ref.clahe(wiener)
    clock.lap("clahe")
    out = ref.guided_filter(equalised, wiener)
    clock.lap("guided")
    return out


def _time_directories(source: Path, paths: list[Path]) -> list[tuple[str, float]]:
    """Whole-directory runs in the order A B C C B A (load on a shared machine drifts; the
    mirrored order gives each run the same average position). Returns mean seconds per run."""
    labels = [
        "reference, file by file, one process",
        "cryoglean denoise_directory, 1 worker",
        "cryoglean denoise_directory, 2 workers",
    ]
    totals = dict.fromkeys(labels, 0.0)
    for round_no, order in enumerate((labels, labels[::-1])):
        for label in order:
            start = time.perf_counter()
            if label.startswith("reference"):
                out = source / f"reference_out{round_no}"
                out.mkdir()
                for path in paths:
                    image, _ = dn.read_micrograph(path)
                    cv2.imwrite(str(out / f"{path.stem}.png"), ref.denoise_reference(image))
            else:
                workers = 1 if "1 worker" in label else 2
                summary = dn.denoise_directory(
                    source,
                    source / f"project_w{workers}_{round_no}",
                    num_workers=workers,
                    progress=False,
                )
                if not summary.ok or len(summary.processed) != len(paths):
                    raise RuntimeError(f"denoise_directory failed: {summary.failed}")
            seconds = time.perf_counter() - start
            totals[label] += seconds
            print(f"  {label}: {seconds:.1f} s", flush=True)
    return [(label, totals[label] / 2) for label in labels]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--directory",
        action="store_true",
        help="also time whole directories, twice in mirrored order: the reference file by file "
        "in one process (PartiNet's default on 2 CPUs is one worker) vs denoise_directory with "
        "1 and 2 workers",
    )
    args = parser.parse_args(argv)

    print(
        f"# denoise benchmark: {args.count} micrographs {args.size}x{args.size}, "
        f"{dn.available_cpus()} CPUs, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), "
        f"numpy {np.__version__}"
    )
    wall = {"reference": 0.0, "cryoglean": 0.0}
    cpu = {"reference": 0.0, "cryoglean": 0.0}
    stages = {"reference": {}, "cryoglean": {}}
    rows = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench_denoise_") as tmp:
        paths = []
        for i in range(args.count):
            path = Path(tmp) / f"mic_{i:03d}.mrc"
            mrcfile.write(path, make_micrograph(args.size, args.seed + i), voxel_size=1.0)
            paths.append(path)
        for path in paths:
            image, _ = dn.read_micrograph(path)
            outs = {}
            for name in ("reference", "cryoglean"):
                w0, c0 = time.perf_counter(), time.process_time()
                if name == "reference":
                    outs[name] = reference_with_stages(image, stages[name])
                else:
                    outs[name] = dn.denoise_image(image, timings=stages[name])
                wall[name] += time.perf_counter() - w0
                cpu[name] += time.process_time() - c0
            diff = np.abs(outs["reference"].astype(np.int16) - outs["cryoglean"].astype(np.int16))
            frac = np.count_nonzero(diff) / diff.size
            passed = diff.max() <= 1 and frac <= 0.001
            ok &= bool(passed)
            rows.append((path.name, int(diff.max()), frac, passed))
            print(f"  {path.name}: max |diff| {diff.max()}, differing {frac:.6%}", flush=True)
        directory_rows = _time_directories(Path(tmp), paths) if args.directory else []

    n = args.count
    print()
    print("| implementation | s / micrograph (wall) | CPU s / micrograph | micrographs / s |")
    print("|---|---:|---:|---:|")
    for name in ("reference", "cryoglean"):
        print(f"| {name} | {wall[name] / n:.2f} | {cpu[name] / n:.2f} | {n / wall[name]:.3f} |")
    print(
        f"\nthroughput ratio (cryoglean / reference, wall): {wall['reference'] / wall['cryoglean']:.2f}x"
    )
    print(f"CPU-time ratio (reference / cryoglean): {cpu['reference'] / cpu['cryoglean']:.2f}x")
    print("\nper-stage seconds per micrograph (wall, and process CPU incl. all threads):\n")
    print(
        "| stage | reference wall | cryoglean wall | ratio | reference CPU | cryoglean CPU | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")

    def row(label: str, keys: list[str]) -> None:
        vals = []
        for prefix in ("", "cpu:"):
            r = sum(stages["reference"].get(prefix + k, 0.0) for k in keys) / n
            c = sum(stages["cryoglean"].get(prefix + k, 0.0) for k in keys) / n
            vals += [f"{r:.3f}", f"{c:.3f}", f"{r / c:.2f}x" if c else "n/a"]
        print(f"| {label} | " + " | ".join(vals) + " |")

    for stage in STAGES:
        row(stage, [stage])
    row("all but nlm", [s for s in STAGES if s != "nlm"])
    row("total", list(STAGES))
    if directory_rows:
        print("\nwhole directory (read MRC, denoise, write PNG), same files, mean of 2 runs:\n")
        print("| run | seconds | micrographs / s | ratio to reference |")
        print("|---|---:|---:|---:|")
        base = directory_rows[0][1]
        for label, seconds in directory_rows:
            print(f"| {label} | {seconds:.1f} | {n / seconds:.3f} | {base / seconds:.2f}x |")
    print("\nequality rule (<= 1 grey level on <= 0.1 % of pixels):")
    for name, dmax, frac, passed in rows:
        print(f"  {name}: max {dmax}, {frac:.6%} differ -> {'ok' if passed else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
