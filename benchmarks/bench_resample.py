"""Fourier resampling: the separable crop of ``converters.images.fourier_resize`` against the plain
``rfft2`` crop it replaced (the baseline, kept here verbatim in behaviour), side by side.

    .venv/bin/python benchmarks/bench_resample.py [--size 4096] [--repeat 5]

Rows: one 4096² float32 micrograph to 1024² (EPicker's view, CenterNet's input) and to 288²;
and the whole EPicker-view export of one micrograph (``converters.images.write_image`` with
THI's defaults: crop to width 1024, min-max uint8, equalisation, PNG) with each resampler.
Every output is checked bit-identical between the two before timing. Medians of ``--repeat``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import fft as sfft

from converters import images


def plain_rfft2_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The previous implementation: the whole rfft2, then the crop."""
    img = np.asarray(image, dtype=np.float32)
    ny, nx = img.shape
    my, mx = int(shape[0]), int(shape[1])
    spec = sfft.rfft2(img)
    out = np.zeros((my, mx // 2 + 1), dtype=spec.dtype)
    kx = min(nx // 2 + 1, mx // 2 + 1)
    top, bottom = min((ny + 1) // 2, (my + 1) // 2), min(ny // 2, my // 2)
    out[:top, :kx] = spec[:top, :kx]
    if bottom:
        out[my - bottom:, :kx] = spec[ny - bottom:, :kx]
    res = sfft.irfft2(out, s=(my, mx)) * np.float32((my * mx) / (ny * nx))
    return res.astype(np.float32, copy=False)


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    img = rng.standard_normal((args.size, args.size)).astype(np.float32)
    print(f"| step ({args.size}² float32) | plain rfft2 crop, s | separable crop, s | speed-up |")
    print("|---|---:|---:|---:|")
    for target in (t for t in (1024, 288) if t < args.size):
        shape = (target, target)
        assert np.array_equal(plain_rfft2_resize(img, shape), images.fourier_resize(img, shape))
        old = median_time(lambda s=shape: plain_rfft2_resize(img, s), args.repeat)
        new = median_time(lambda s=shape: images.fourier_resize(img, s), args.repeat)
        print(f"| resample to {target}² | {old:.3f} | {new:.3f} | {old / new:.2f}x |")

    import mrcfile

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "mic.mrc"
        with mrcfile.new(src) as m:
            m.set_data(img)
        shape = images.output_shape(args.size, args.size, width=1024)

        def export_view(tag: str):
            job = images.ImageJob(src=str(src), dest=str(Path(tmp) / f"{tag}.png"), mode="png",
                                  shape=shape, normalize="minmax", equalize=True)
            images.write_image(job)

        real = images.fourier_resize
        try:
            images.fourier_resize = plain_rfft2_resize
            export_view("old")
            old = median_time(lambda: export_view("old"), args.repeat)
        finally:
            images.fourier_resize = real
        export_view("new")
        new = median_time(lambda: export_view("new"), args.repeat)
        same = (Path(tmp) / "old.png").read_bytes() == (Path(tmp) / "new.png").read_bytes()
        print(f"| EPicker-view PNG export of one micrograph | {old:.3f} | {new:.3f} | "
              f"{old / new:.2f}x |")
        print(f"\nPNG files identical: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
