"""Micrograph images for exported datasets: Fourier-cropped, normalised PNG/JPG or float32 MRC,
or links to the original MRC files.

Pixel frame and scale
    Images keep the DESIGN.md frame (x = column, y = row of the ``mrcfile`` array, origin at the
    first stored pixel). A Fourier crop from ``(ny, nx)`` to ``(ny', nx')`` resamples the same
    periodic signal on a coarser grid whose sample ``j`` sits at old position ``j * nx / nx'``,
    so a coordinate maps as ``x' = x * nx' / nx`` and ``y' = y * ny' / ny``. With a downsample
    factor ``S`` the new size is ``int(nx / S)`` (as ``topaz preprocess``, [topaz]
    ``utils/image.py downsample``), so the coordinate scale is ``nx' / nx``, which equals ``1 / S``
    only when ``S`` divides ``nx``. :func:`output_shape` and :class:`ImageJob` carry both scales.

Normalisation to 8 bit (PNG/JPG)
    ``percentile`` (default): values between the 0.5th and 99.5th percentile map linearly to
    0..255, outliers are clipped (hot pixels and carbon edges do not squash the contrast).
    ``minmax``: min..max map to 0..255, as EPicker and PartiNet quantise.
    ``equalize=True`` applies histogram equalisation after quantisation (``cv2.equalizeHist``'s
    rule, in numpy: :func:`equalize_hist`):
    EPicker's view is ``width=1024, normalize="minmax", equalize=True``
    ([epicker] ``mrc_utils/preprocess.py``: Fourier crop to width 1024, min–max uint8,
    equalizeHist).

MRC output (``mode="mrc"``) is float32, Fourier-cropped when a scale is asked for, values kept
(the crop preserves the mean), voxel size scaled to the new pixel size.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harvest import imageio
from harvest.imageio import MicrographError

IMAGE_MODES = ("link", "mrc", "png", "jpg", "none")
NORMALIZATIONS = ("percentile", "minmax")
PERCENTILES = (0.5, 99.5)


class ImageError(MicrographError):
    """A micrograph image that cannot be converted or written (the message names the file);
    reading raises :class:`harvest.imageio.MicrographError`, its base class."""


@dataclass(frozen=True)
class ImageJob:
    """One micrograph to export.

    ``src``: the MRC file; ``dest``: the file to write (extension per mode; for ``link`` the link
    itself); ``final_dest``: where ``dest`` will live after the export's atomic rename (relative
    links are computed from there); ``shape``: output ``(ny', nx')``.
    """

    src: str
    dest: str
    mode: str
    shape: tuple[int, int]
    final_dest: str | None = None
    normalize: str = "percentile"
    equalize: bool = False
    pixel_size: float | None = None  # Å/px of the source, for the MRC header of the output


def image_extension(mode: str) -> str:
    """File extension written for an image mode (``link`` and ``mrc`` keep ``.mrc``)."""
    if mode not in IMAGE_MODES:
        raise ValueError(f"unknown image mode {mode!r}; known: {', '.join(IMAGE_MODES)}")
    return {"link": ".mrc", "mrc": ".mrc", "png": ".png", "jpg": ".jpg", "none": ""}[mode]


def output_shape(
    nx: int, ny: int, scale: float | None = None, width: int | None = None
) -> tuple[int, int]:
    """Exported image size ``(ny', nx')`` for a micrograph of ``nx`` × ``ny`` pixels.

    ``scale`` S is a downsample factor: ``(int(ny / S), int(nx / S))`` as Topaz does.
    ``width`` W fixes ``nx' = W`` and ``ny' = round(ny * W / nx)`` (EPicker's 1024-wide view).
    Neither: unchanged. The coordinate scale is then ``nx'/nx`` and ``ny'/ny``.
    """
    if scale is not None and width is not None:
        raise ValueError("give either a scale (downsample factor) or a width, not both")
    nx, ny = int(nx), int(ny)
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"--scale must be > 0 (a downsample factor), got {scale}")
        out = (int(ny / scale), int(nx / scale))
    elif width is not None:
        if int(width) < 1:
            raise ValueError(f"--width must be a positive number of pixels, got {width}")
        out = (max(1, int(round(ny * int(width) / nx))), int(width))
    else:
        out = (ny, nx)
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"a {nx}x{ny} micrograph at scale {scale} would be empty")
    return out


def fourier_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample a 2D image to ``shape = (ny', nx')`` by cropping or zero-padding its spectrum
    (rfft2, float32).

    Keeps the frequencies ``-(n'//2) .. (n'-1)//2`` both grids share along each axis and rescales
    by ``(ny' nx') / (ny nx)`` so the mean intensity is unchanged. Sample ``i`` of the output sits
    at input position ``i · n/n'`` (origin kept), so pixel coordinates scale by ``n'/n`` exactly.
    Returns float32.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"Fourier resampling needs a 2D image, got shape {img.shape}")
    ny, nx = img.shape
    my, mx = int(shape[0]), int(shape[1])
    if my < 1 or mx < 1:
        raise ValueError(f"cannot resample {img.shape} to {(my, mx)}")
    if (my, mx) == (ny, nx):
        return img.copy()
    from scipy import fft as sfft  # single-precision FFTs: ~3x numpy's float64 path

    kx = min(nx // 2 + 1, mx // 2 + 1)
    top = min((ny + 1) // 2, (my + 1) // 2)  # non-negative row frequencies
    bottom = min(ny // 2, my // 2)  # negative row frequencies
    # Separable forward transform: along x first, keep the kx columns the output needs, then
    # along y on those columns only. rfft2 does the same two passes over every column, so the
    # kept coefficients are bit-identical (tested) at ~mx/nx of the second pass's cost.
    spec = sfft.fft(sfft.rfft(img, axis=1)[:, :kx], axis=0)
    out = np.zeros((my, mx // 2 + 1), dtype=spec.dtype)
    out[:top, :kx] = spec[:top]
    if bottom:
        out[my - bottom:, :kx] = spec[ny - bottom:]
    res = sfft.irfft2(out, s=(my, mx)) * np.float32((my * mx) / (ny * nx))
    return res.astype(np.float32, copy=False)


def fourier_crop(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`fourier_resize` restricted to downsampling (or the same size): exports never
    invent resolution."""
    ny, nx = np.shape(image)[-2:]
    if int(shape[0]) > ny or int(shape[1]) > nx:
        raise ValueError(
            f"cannot Fourier-crop {tuple(np.shape(image))} to {tuple(shape)}: only downsampling"
        )
    return fourier_resize(image, shape)


def to_uint8(image: np.ndarray, normalize: str = "percentile") -> np.ndarray:
    """Quantise to uint8: ``percentile`` (0.5..99.5 % → 0..255, clipped) or ``minmax``.

    The one 8-bit conversion of cryoglean (exports and the pickers' preprocessing). In float64,
    ``v = clip((x - lo) / (hi - lo), 0, 1) * 255`` is rounded to the nearest integer
    (``np.round``: halves to even), not truncated, so ``lo`` → 0, ``hi`` → 255 and the mid-grey
    level is unbiased. A constant image becomes all zeros.

    Fast and equal: the percentiles are numpy's (linear interpolation) computed from the two
    order statistics each needs, found by :func:`_tail_values` without sorting or copying the
    whole image to float64, and the transform runs in row blocks with in-place float64 steps.
    The result is bit-identical to ``np.percentile`` + the formula above on a float64 copy
    (tested); images with NaN or inf take that plain path.
    """
    img = np.asarray(image)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {normalize!r}; known: {', '.join(NORMALIZATIONS)}")
    if img.dtype not in (np.float32, np.float64) or not np.isfinite(img).all():
        return _to_uint8_plain(img, normalize)
    if normalize == "percentile":
        lo, hi = _percentiles(img.ravel(), PERCENTILES)
    else:
        lo, hi = float(img.min()), float(img.max())
    out = np.empty(img.shape, dtype=np.uint8)
    if not hi > lo:
        out[...] = 0
        return out
    span = hi - lo
    rows = max(1, (1 << 18) // max(1, int(np.prod(img.shape[1:]))))  # ~2 MB float64 blocks
    buf = np.empty((min(rows, img.shape[0]),) + img.shape[1:], dtype=np.float64)
    for r in range(0, img.shape[0], rows):
        blk = img[r:r + rows]
        b = buf[: blk.shape[0]]
        np.subtract(blk, lo, out=b, dtype=np.float64)
        np.divide(b, span, out=b)
        np.clip(b, 0.0, 1.0, out=b)
        np.multiply(b, 255.0, out=b)
        np.rint(b, out=b)
        out[r:r + rows] = b
    return out


def _to_uint8_plain(img: np.ndarray, normalize: str) -> np.ndarray:
    """The reference formula on a float64 copy (any dtype, NaN/inf included)."""
    img = np.asarray(img, dtype=np.float64)
    if normalize == "percentile":
        lo, hi = np.percentile(img, PERCENTILES)
    else:
        lo, hi = float(img.min()), float(img.max())
    if not hi > lo:
        return np.zeros(img.shape, dtype=np.uint8)
    out = np.clip((img - lo) / (hi - lo), 0.0, 1.0) * 255.0
    return np.round(out).astype(np.uint8)


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's percentile interpolation (``numpy.lib._function_base_impl._lerp``): from ``a``
    for t < 0.5 and from ``b`` otherwise, so that the result is exact at both ends."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _percentiles(flat: np.ndarray, qs) -> list[float]:
    """``np.percentile(flat.astype(float64), qs)`` (method 'linear'), exactly, for finite data:
    the order statistics ``floor(v)`` and ``floor(v) + 1`` of ``v = q/100 (n − 1)`` come from
    :func:`_tail_values`, the interpolation is numpy's."""
    n = flat.size
    out = []
    for q in qs:
        v = q / 100 * (n - 1)
        lo = int(np.floor(v))
        hi = min(lo + 1, n - 1)
        a, b = _tail_values(flat, lo, hi, q)
        out.append(_lerp(float(a), float(b), v - lo))
    return out


def _tail_values(flat: np.ndarray, lo: int, hi: int, q: float):
    """The ``lo``-th and ``hi``-th smallest values of ``flat``. For a percentile in a tail, a
    bound from a small sample selects the few values beyond it; when the count shows the wanted
    ranks are among them only those are partitioned (exact either way; else the whole array)."""
    n = flat.size
    if n > 1 << 16 and (q < 10 or q > 90):
        sample = flat[np.random.default_rng(0).integers(0, n, size=1 << 14)]
        margin = 0.01  # the sample's quantile error is far below this at 16k samples
        if q < 50:
            bound = np.quantile(sample, min(1.0, q / 100 + margin))
            sub = flat[flat <= bound]
            if sub.size > hi:
                part = np.partition(sub, [lo, hi])
                return part[lo], part[hi]
        else:
            bound = np.quantile(sample, max(0.0, q / 100 - margin))
            sub = flat[flat >= bound]
            skip = n - sub.size  # values below the bound: ranks shift by this many
            if lo >= skip:
                part = np.partition(sub, [lo - skip, hi - skip])
                return part[lo - skip], part[hi - skip]
    part = np.partition(flat, [lo, hi])
    return part[lo], part[hi]


def equalize_hist(image: np.ndarray) -> np.ndarray:
    """Histogram equalisation of a uint8 image, bit-identical to ``cv2.equalizeHist`` (as
    EPicker) without importing OpenCV (the pick path's start-up, issue 16).

    OpenCV's rule ([opencv] ``imgproc/src/histogram.cpp``, ``EqualizeHistLut_Invoker``): with
    ``i`` the lowest level present and ``n`` the pixel count, ``lut[i] = 0`` and
    ``lut[j] = round(cumsum_{i<k<=j} hist[k] * (255.f / (n - hist[i])))`` for ``j > i``, in
    single precision, rounded half to even (``cvRound``); an image of one level keeps it.
    """
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.size == 0:
        return img.copy()
    hist = np.bincount(img.ravel(), minlength=256)
    i = int(np.flatnonzero(hist)[0])
    total = img.size
    if hist[i] == total:
        return np.full_like(img, i)
    scale = np.float32(255.0) / np.float32(total - hist[i])
    csum = np.cumsum(hist, dtype=np.int64) - hist[: i + 1].sum()
    lut = np.rint(csum.astype(np.float32) * scale)
    lut[: i + 1] = 0
    return np.clip(lut, 0, 255).astype(np.uint8)[img]


def read_micrograph(path: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """2D float32 array (row = y, column = x) and pixel size in Å (None when 0/absent), read by
    :func:`harvest.imageio.read_micrograph` (stacks ``(n, ny, nx)`` averaged over frames,
    ``(1, ny, nx)`` squeezed; PNG/JPG/TIFF too)."""
    mic = imageio.read_micrograph(path)
    return mic.image, mic.pixel_size


def micrograph_shape(path: str | os.PathLike) -> tuple[int, int]:
    """``(nx, ny)`` from the file's header, no pixel data read
    (:func:`harvest.imageio.micrograph_shape`)."""
    return imageio.micrograph_shape(path)


def link_or_copy(src: str | os.PathLike, dest: str | os.PathLike, final_dest=None) -> str:
    """Relative symlink ``dest -> src`` (computed from ``final_dest``, where ``dest`` will end
    up); falls back to a copy where links fail. Returns ``"link"`` or ``"copy"``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    where = Path(final_dest) if final_dest is not None else dest
    target = os.path.relpath(os.path.abspath(src), os.path.abspath(where.parent))
    try:
        os.symlink(target, dest)
        return "link"
    except OSError:
        shutil.copyfile(src, dest)
        return "copy"


def write_image(job: ImageJob) -> str:
    """Write one exported image; returns what was done (``link``/``copy``/``write``)."""
    if job.mode == "none":
        return "none"
    if job.mode == "link":
        return link_or_copy(job.src, job.dest, job.final_dest)
    data, px = read_micrograph(job.src)
    ny0, nx0 = data.shape
    if tuple(job.shape) != data.shape:
        data = fourier_crop(data, job.shape)
    dest = Path(job.dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if job.mode == "mrc":
        import mrcfile

        src_px = job.pixel_size or px
        with mrcfile.new(dest, overwrite=True) as out:
            out.set_data(np.ascontiguousarray(data, dtype=np.float32))
            if src_px:
                out.voxel_size = (
                    src_px * nx0 / job.shape[1], src_px * ny0 / job.shape[0], src_px
                )
        return "write"
    img8 = to_uint8(data, job.normalize)
    if job.equalize:
        img8 = equalize_hist(img8)
    if job.mode == "png":
        from converters.pngwrite import write_png

        write_png(dest, img8)
        return "write"
    import cv2

    if not cv2.imwrite(str(dest), img8):
        raise ImageError(f"{dest}: could not write {job.mode} image")
    return "write"


def write_images(jobs: list[ImageJob], num_workers: int = 1, progress: bool = False) -> list[str]:
    """Write all images, in parallel over micrographs when ``num_workers > 1``
    (ProcessPoolExecutor), with progress on stderr when ``progress`` (:mod:`harvest.progress`:
    a bar on a terminal, log lines otherwise). Results in input order."""
    from harvest.progress import Progress

    results: list[str] = []
    bar = Progress(len(jobs), "images", "micrographs", enabled=progress)
    try:
        if num_workers > 1 and len(jobs) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=num_workers) as pool:
                chunk = max(1, len(jobs) // (8 * num_workers))
                for res in pool.map(write_image, jobs, chunksize=chunk):
                    results.append(res)
                    bar.update(1)
        else:
            for job in jobs:
                results.append(write_image(job))
                bar.update(1)
    finally:
        bar.close()
    return results
