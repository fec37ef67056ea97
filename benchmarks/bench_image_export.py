"""Image export: one 4096² micrograph to an 8-bit PNG (YOLO's default image), three ways side by
side in one run, after checking that the decoded pixels are equal:

- *baseline*, as the first release wrote it: ``np.percentile`` and the formula on a float64
  copy, OpenCV's default PNG settings;
- *previous*, issue 15's first step: ``to_uint8`` (exact percentiles without a sort), OpenCV
  with zlib level 1 and the run-length strategy;
- *now*, ``converters.images.write_image``: ``to_uint8`` and ``converters.pngwrite``.

    .venv/bin/python benchmarks/bench_image_export.py [--size 4096] [--repeat 5] [--view]

The micrograph is simulated (harvest.synth: CTF-modulated particles, ice, carbon, noise), so
PNG compression sees realistic content. ``--view`` adds EPicker's 1024-wide view (THI export).
Medians of ``--repeat``, wall and CPU time of this process (the target is per core).
``--encoders`` adds the PNG encoders alone on the 8-bit micrograph and on a smoothed copy
(Gaussian σ 3 px, a denoised micrograph's kind of content): OpenCV's default and level 1 +
run-length, and ``converters.pngwrite`` with each filter, with ISA-L and with the zlib fallback.
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
    ap.add_argument("--encoders", action="store_true")
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

    def previous(dest, shape, normalize, equalize):
        data, _ = images.read_micrograph(src)
        if shape != data.shape:
            data = images.fourier_crop(data, shape)
        u8 = images.to_uint8(data, normalize)
        if equalize:
            u8 = images.equalize_hist(u8)
            cv2.imwrite(dest, u8)
        else:
            cv2.imwrite(dest, u8, [cv2.IMWRITE_PNG_COMPRESSION, 1,
                                   cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])

    def current(dest, shape, normalize, equalize):
        images.write_image(images.ImageJob(src=src, dest=dest, mode="png", shape=shape,
                                           normalize=normalize, equalize=equalize))

    cases = [(f"{args.size}² → 8-bit PNG (percentile)", (args.size, args.size), "percentile",
              False)]
    if args.view:
        cases.append(("EPicker view: 1024 wide, min-max, equalised PNG",
                      images.output_shape(args.size, args.size, width=1024), "minmax", True))
    ways = {"baseline": baseline, "previous": previous, "now": current}
    print("| export | way | wall s | CPU s | micrographs/s per core (CPU) | now vs this way (CPU) "
          "| PNG kB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, shape, norm, eq in cases:
        paths = {k: os.path.join(tmp, f"{k}.png") for k in ways}
        for k, fn in ways.items():
            fn(paths[k], shape, norm, eq)
        decoded = {k: cv2.imread(p, cv2.IMREAD_UNCHANGED) for k, p in paths.items()}
        if not all(np.array_equal(decoded["baseline"], d) for d in decoded.values()):
            raise SystemExit(f"{label}: decoded pixels differ")
        wall = {k: [] for k in ways}
        cpu = {k: [] for k in ways}
        for _ in range(args.repeat):  # alternate, so load changes hit all alike
            for k, fn in ways.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn(paths[k], shape, norm, eq)
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        now = statistics.median(cpu["now"])
        for k in ways:
            w, c = statistics.median(wall[k]), statistics.median(cpu[k])
            print(f"| {label} | {k} | {w:.3f} | {c:.3f} | {1 / c:.2f} | {c / now:.2f}x | "
                  f"{os.path.getsize(paths[k]) // 1000} |")
    print(f"\ndecoded pixels identical: yes; load average at the end {os.getloadavg()[0]:.1f}")
    if args.encoders:
        _encoders(img, args.repeat)
    return 0


def _encoders(img, repeat: int) -> None:
    import cv2
    from scipy import ndimage

    from converters import images, pngwrite

    rle = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]

    def ours(u8, ftype, isal=True):
        keep = pngwrite._isal
        pngwrite._isal = keep if isal else None
        try:
            return pngwrite.encode(u8, ftype)
        finally:
            pngwrite._isal = keep

    ways = {
        "OpenCV default": lambda u8: cv2.imencode(".png", u8)[1].tobytes(),
        "OpenCV level 1 + RLE": lambda u8: cv2.imencode(".png", u8, rle)[1].tobytes(),
        "pngwrite, chosen filter, ISA-L": lambda u8: ours(u8, None),
        "pngwrite, None, ISA-L": lambda u8: ours(u8, pngwrite.NONE),
        "pngwrite, Up, ISA-L": lambda u8: ours(u8, pngwrite.UP),
        "pngwrite, chosen filter, zlib": lambda u8: ours(u8, None, isal=False),
    }
    print("\n| image | encoder | CPU s | MB | decoded = input |\n|---|---|---:|---:|---|")
    for label, src in (("micrograph", img), ("smoothed σ 3 px", ndimage.gaussian_filter(img, 3))):
        u8 = images.to_uint8(src)
        for name, fn in ways.items():
            times = []
            for _ in range(repeat):
                c0 = time.process_time()
                data = fn(u8)
                times.append(time.process_time() - c0)
            same = np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8),
                                               cv2.IMREAD_UNCHANGED), u8)
            print(f"| {label} | {name} | {statistics.median(times):.3f} | "
                  f"{len(data) / 1e6:.2f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    raise SystemExit(main())
