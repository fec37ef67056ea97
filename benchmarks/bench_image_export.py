"""Image export: one 4096² micrograph to an 8-bit PNG (YOLO's default image), the way the
previous release wrote it (the baseline: ``np.percentile`` and the formula on a float64 copy,
OpenCV's default PNG settings) and as ``converters.images.write_image`` writes it now, side by
side in one run; the decoded pixels are compared first (they must be equal).

    .venv/bin/python benchmarks/bench_image_export.py [--size 4096] [--repeat 5] [--view]

The micrograph is simulated (harvest.synth: CTF-modulated particles, ice, carbon, noise), so
PNG compression sees realistic content. ``--view`` adds EPicker's 1024-wide view (THI export).
Medians of ``--repeat``; one process, one core for the arithmetic (OpenCV may thread PNG).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

import numpy as np


def _baseline_u8(image, normalize="percentile"):
    img = np.asarray(image, dtype=np.float64)
    lo, hi = (np.percentile(img, (0.5, 99.5)) if normalize == "percentile"
              else (img.min(), img.max()))
    if not hi > lo:
        return np.zeros(img.shape, dtype=np.uint8)
    return np.round(np.clip((img - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def main(argv=None) -> int:
    import cv2
    import mrcfile

    from converters import images
    from harvest.synth import FacilityConfig
    from harvest.synth.micrographs import simulate_micrograph

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--view", action="store_true")
    args = ap.parse_args(argv)
    cfg = dataclasses.replace(FacilityConfig(), nx=args.size, ny=args.size)
    img, _ = simulate_micrograph(cfg, np.random.default_rng(0), with_carbon=True)
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "mic.mrc")
    with mrcfile.new(src) as m:
        m.set_data(img.astype(np.float32))

    def baseline(dest, shape, normalize, equalize):
        data, _ = images.read_micrograph(src)
        if shape != data.shape:
            data = images.fourier_crop(data, shape)
        u8 = _baseline_u8(data, normalize)
        if equalize:
            u8 = images.equalize_hist(u8)
        cv2.imwrite(dest, u8)

    def current(dest, shape, normalize, equalize):
        images.write_image(images.ImageJob(src=src, dest=dest, mode="png", shape=shape,
                                           normalize=normalize, equalize=equalize))

    cases = [(f"{args.size}² → 8-bit PNG (percentile)", (args.size, args.size), "percentile",
              False)]
    if args.view:
        cases.append(("EPicker view: 1024 wide, min-max, equalised PNG",
                      images.output_shape(args.size, args.size, width=1024), "minmax", True))
    print("| export | baseline s | now s | speed-up | micrographs/s now | PNG kB base / now |")
    print("|---|---:|---:|---:|---:|---|")
    for label, shape, norm, eq in cases:
        a, b = os.path.join(tmp, "a.png"), os.path.join(tmp, "b.png")
        baseline(a, shape, norm, eq)
        current(b, shape, norm, eq)
        same = np.array_equal(cv2.imread(a, cv2.IMREAD_UNCHANGED),
                              cv2.imread(b, cv2.IMREAD_UNCHANGED))
        if not same:
            raise SystemExit(f"{label}: decoded pixels differ")
        tb, tn = [], []
        for _ in range(args.repeat):  # alternate, so load changes hit both alike
            t0 = time.perf_counter()
            baseline(a, shape, norm, eq)
            tb.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            current(b, shape, norm, eq)
            tn.append(time.perf_counter() - t0)
        mb, mn = statistics.median(tb), statistics.median(tn)
        print(f"| {label} | {mb:.3f} | {mn:.3f} | {mb / mn:.2f}x | {1 / mn:.2f} | "
              f"{os.path.getsize(a) // 1000} / {os.path.getsize(b) // 1000} |")
    print(f"\ndecoded pixels identical: yes; load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
