"""PartiNet / CryoSegNet micrograph denoiser (PartiNet >= 1.0.1 semantics), faster and equal.

Long module: it holds one pipeline end to end, the five array stages with their bit-exactness
notes, plus the directory driver of the ``denoise`` command with its sharding, worker processes
and PartiNet log; reading files lives in :mod:`harvest.imageio`.

The pipeline (``shared/reference/pickers.md`` B2 and C1) on one micrograph:

1. float32, ``cv2.GaussianBlur`` 9x9 (sigma 0, so OpenCV uses 1.7), z-score with the global mean
   and standard deviation, ``transform`` = min-max to [0, 255] truncated to uint8;
2. ``cv2.fastNlMeansDenoising`` (h 10, template 7, search 21);
3. FFT Wiener filter, K = 30, 9x9 Gaussian kernel (std 3, sum 1) zero-padded at the top-left, so
   the result is circularly shifted by (-4, -4) px; float64, not rescaled;
4. CLAHE (clip 2.0, 16x16 tiles) on ``transform(wiener)``;
5. guided filter (He et al.): input CLAHE / 255, guidance wiener / 255 (float32), normalised
   20x20 box means (CryoSegNet passes ``radius=20`` as the box size), eps 0.1; ``transform``.

The output is uint8 with the input's shape, on the input's pixel grid (x = column, y = row of
the array ``mrcfile`` returns): no flip, no resize. Like PartiNet's, its content is displaced by
about (-3, -3) px (x and y): the Wiener kernel sits at the array origin (-4 px) and the even 20 px
box means of the guided filter move it back by 0.5 px each (+1 px); a test measures this. Picks
made on these images are therefore ~3 px up-left of the particle centres in micrograph pixels
(PartiNet does not correct this either). ``legacy_flip`` reproduces PartiNet 1.0.0, whose ``.T``
+ ``np.rot90`` flipped the micrograph vertically before denoising (row y of its input was row
ny - 1 - y of the micrograph).

What makes this faster than the plain transcription (``tests/denoise_reference.py``), with the
same uint8 output (a test checks equality within 1 grey level on at most 0.1 % of pixels):

- The Wiener step is one real FFT pair (``scipy.fft.rfft2``/``irfft2``, float64, threaded)
  instead of three complex FFTs. The kernel is separable and symmetric about its centre tap, so
  its transfer function is ``exp(2 pi i (4 ky / ny + 4 kx / nx)) * C(ky, kx)`` with ``C`` real
  (the centred kernel's transform, an outer product of two cosine sums); the phase factor is the
  (-4, -4) px circular shift, applied exactly as an index shift, and ``conj(H) / (|H|^2 + K)``
  becomes the real filter ``C / (C^2 + K)``. ``|ifft2(...)|`` of a real product is the absolute
  value of the real inverse transform.
- The guided filter reuses its float32 buffers (in-place arithmetic in the reference's order, so
  it is bit-identical for the same inputs).
- Every other step performs the same operations in the same dtypes as the reference, in place.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

import cv2
import mrcfile
import numpy as np
import scipy.fft

from converters import pngwrite
from converters.shard import parse_shard, shard_items  # noqa: F401 (parse_shard re-exported)
from harvest import imageio
from harvest.conventions import first_stem_clash, micrograph_stem

log = logging.getLogger(__name__)

INPUT_SUFFIXES = imageio.IMAGE_SUFFIXES  # the one list of readable micrograph files
OUTPUT_FORMATS = ("png", "jpg", "mrc")
LOG_NAME = "partinet_denoise.log"
OUTPUT_DIR = "denoised"

GAUSS_KSIZE = 9  # standard_scaler blur and Wiener kernel size
KERNEL_STD = 3.0  # Wiener kernel std (CryoSegNet: kernel_size / 3)
WIENER_K = 30.0
CLAHE_CLIP = 2.0
CLAHE_TILES = (16, 16)
BOX_SIZE = 20
GUIDED_EPS = 0.1
JPEG_QUALITY = 95  # cv2.imwrite's default

# IMOD header stamp and flags (words 39 and 40, bytes 152-159): with the stamp present and bit 0
# of the flags clear, mode 0 bytes are unsigned (IMOD's convention; the MRC2014 default is signed).
_IMOD_STAMP = imageio.IMOD_STAMP
_IMOD_STAMP_OFFSET = imageio.IMOD_STAMP_OFFSET


class DenoiseInputError(ValueError):
    """A micrograph that cannot be denoised (unreadable, wrong shape or dtype, non-finite)."""


# --------------------------------------------------------------------------------------------
# The pipeline on arrays


def _transform_inplace(image: np.ndarray) -> np.ndarray:
    """PartiNet's ``transform`` (min-max to [0, 255], truncated to uint8), computed in place in
    ``image``'s float dtype with the reference's operation order; zeros for a constant image."""
    lo = image.min()
    hi = image.max()
    if hi == lo:
        return np.zeros(image.shape, dtype=np.uint8)
    np.subtract(image, lo, out=image)
    np.divide(image, hi - lo, out=image)
    np.multiply(image, 255, out=image)
    return image.astype(np.uint8)


def _standard_scaler(image: np.ndarray) -> np.ndarray:
    """Step 1 on a float32 array: blur, z-score, transform (uint8)."""
    blurred = cv2.GaussianBlur(image, (GAUSS_KSIZE, GAUSS_KSIZE), 0)
    mean = np.mean(blurred)
    std = np.std(blurred)
    if std == 0:  # constant image: PartiNet computes 0/0 = NaN, which casts to 0 on x86
        return np.zeros(image.shape, dtype=np.uint8)
    np.subtract(blurred, mean, out=blurred)
    np.divide(blurred, std, out=blurred)
    return _transform_inplace(blurred)


def _nl_means(image: np.ndarray) -> np.ndarray:
    """Step 2: OpenCV's non-local means (exact integer arithmetic; OpenCV spreads it over its own
    threads, so it is called once on the whole image: stripes in parallel threads gave the same
    pixels and no speed-up on 2 cores)."""
    return cv2.fastNlMeansDenoising(image, None, h=10, templateWindowSize=7, searchWindowSize=21)


def _centred_kernel_transform(n: int) -> np.ndarray:
    """Real DFT (length ``n``) of the normalised 1-D Gaussian window centred on index 0.

    The 9x9 kernel is the outer product of this window with itself (std 3, sum 1), so the 2-D
    transform of the centred kernel is the outer product of two of these."""
    half = GAUSS_KSIZE // 2
    taps = np.arange(-half, half + 1, dtype=np.float64)
    window = np.exp(-0.5 * (taps / KERNEL_STD) ** 2)  # scipy.signal.windows.gaussian(9, std=3)
    window /= window.sum()
    k = np.arange(n, dtype=np.float64)
    out = np.full(n, window[half])
    for m in range(1, half + 1):
        out += 2.0 * window[half + m] * np.cos(2.0 * np.pi * ((k * m) % n) / n)
    return out


def wiener_filter_real(shape: tuple[int, int]) -> np.ndarray:
    """``C / (C^2 + K)`` on the rfft2 half-plane of ``shape`` (see the module docstring)."""
    ny, nx = shape
    rows = _centred_kernel_transform(ny)
    cols = _centred_kernel_transform(nx)[: nx // 2 + 1]
    c = np.multiply.outer(rows, cols)
    denom = c * c
    denom += WIENER_K
    c /= denom
    return c


def _wiener(image: np.ndarray, threads: int) -> np.ndarray:
    """Step 3: ``|ifft2(fft2(image) conj(H) / (|H|^2 + K))|`` via one real FFT pair; float64."""
    shape = image.shape
    spectrum = scipy.fft.rfft2(image.astype(np.float64), workers=threads)
    spectrum *= wiener_filter_real(shape)
    filtered = scipy.fft.irfft2(spectrum, s=shape, workers=threads, overwrite_x=True)
    del spectrum
    # kernel padded at the top-left: out[y, x] = |filtered[(y + 4) % ny, (x + 4) % nx]|
    s = GAUSS_KSIZE // 2
    out = np.empty_like(filtered)
    np.abs(filtered[s:, s:], out=out[:-s, :-s])
    np.abs(filtered[s:, :s], out=out[:-s, -s:])
    np.abs(filtered[:s, s:], out=out[-s:, :-s])
    np.abs(filtered[:s, :s], out=out[-s:, -s:])
    return out


def _guided_filter(clahe: np.ndarray, guidance: np.ndarray) -> np.ndarray:
    """Step 5: guided filter with the reference's float32 operations, in place; uint8."""
    size = (BOX_SIZE, BOX_SIZE)
    p = clahe.astype(np.float32)
    np.divide(p, 255.0, out=p)
    mean_i = cv2.boxFilter(guidance, -1, size)
    mean_p = cv2.boxFilter(p, -1, size)
    tmp = np.multiply(guidance, p, out=p)  # p itself is not needed any more
    cov = cv2.boxFilter(tmp, -1, size)
    np.multiply(mean_i, mean_p, out=tmp)
    cov -= tmp  # mean(I p) - mean(I) mean(p)
    np.multiply(guidance, guidance, out=tmp)
    var = cv2.boxFilter(tmp, -1, size)
    np.multiply(mean_i, mean_i, out=tmp)
    var -= tmp  # mean(I I) - mean(I)^2
    var += GUIDED_EPS
    a = np.divide(cov, var, out=cov)
    b = mean_p
    np.multiply(a, mean_i, out=tmp)
    b -= tmp  # mean(p) - a mean(I)
    mean_a = cv2.boxFilter(a, -1, size)
    mean_b = cv2.boxFilter(b, -1, size)
    mean_a *= guidance
    mean_a += mean_b
    return _transform_inplace(mean_a)


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise DenoiseInputError(
            f"{name}: expected a 2-D micrograph, got shape {image.shape}; average frames first"
        )
    if min(image.shape) < GAUSS_KSIZE:
        raise DenoiseInputError(
            f"{name}: image {image.shape[1]}x{image.shape[0]} px is smaller than the "
            f"{GAUSS_KSIZE}x{GAUSS_KSIZE} filter kernel"
        )
    if np.iscomplexobj(image) or not (
        np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_
    ):
        raise DenoiseInputError(f"{name}: unsupported pixel type {image.dtype}; need real numbers")
    return image


def denoise_image(
    img: np.ndarray,
    legacy_flip: bool = False,
    *,
    threads: int | None = None,
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """Denoise one 2-D micrograph array (any real dtype) with the PartiNet pipeline.

    Returns uint8 of the same shape on the same pixel grid (row y, column x) as ``img``, content
    displaced by ~(-3, -3) px as in PartiNet (module docstring); with ``legacy_flip`` the rows are
    reversed first (PartiNet 1.0.0's y-flip). ``threads`` is the
    FFT thread count (default: the CPUs this process may use); OpenCV uses its own setting.
    ``timings``, when given, receives wall seconds per stage (scale, nlm, wiener, clahe, guided)
    and process CPU seconds under "cpu:<stage>".
    """
    image = _check_image(img, "image")
    threads = threads or available_cpus()
    clock = _StageClock(timings)
    image = image.astype(np.float32)  # always a fresh array: the blur below does not modify it
    if not np.isfinite(image).all():
        raise DenoiseInputError("image: contains NaN or infinite pixels")
    if legacy_flip:
        image = np.ascontiguousarray(image[::-1])  # rot90(image.T) == flipud(image)
    scaled = _standard_scaler(image)
    del image
    clock.lap("scale")
    smoothed = _nl_means(scaled)
    del scaled
    clock.lap("nlm")
    wiener = _wiener(smoothed, threads)
    del smoothed
    clock.lap("wiener")
    guidance = wiener.astype(np.float32)
    np.divide(guidance, 255.0, out=guidance)
    clahe_input = _transform_inplace(wiener)  # wiener is consumed here
    del wiener
    equaliser = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)
    equalised = equaliser.apply(clahe_input)
    del clahe_input
    clock.lap("clahe")
    out = _guided_filter(equalised, guidance)
    clock.lap("guided")
    return out


class _StageClock:
    """Adds wall seconds per stage to ``timings[stage]`` and process CPU seconds (all threads)
    to ``timings["cpu:" + stage]``; does nothing when ``timings`` is None."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def lap(self, name: str) -> None:
        if self.timings is None:
            return
        wall, cpu = time.perf_counter(), time.process_time()
        self.timings[name] = self.timings.get(name, 0.0) + wall - self.wall
        key = "cpu:" + name
        self.timings[key] = self.timings.get(key, 0.0) + cpu - self.cpu
        self.wall, self.cpu = wall, cpu


# --------------------------------------------------------------------------------------------
# Files


def read_micrograph(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read one micrograph as a 2-D float32 array and its voxel size in Å (zeros if unknown):
    :func:`harvest.imageio.read_micrograph` (MRC frames averaged, IMOD unsigned bytes, TIFF
    pages averaged, colour to grey; strict, header defects read permissively with a warning)."""
    return imageio.read_micrograph(path)


def write_image(
    image: np.ndarray,
    dst: str | os.PathLike,
    img_format: str,
    voxel_size: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Path:
    """Write a uint8 image atomically (a temporary file beside ``dst``, then ``os.replace``).

    ``png`` is lossless; ``jpg`` uses quality 95; ``mrc`` stores the bytes as mode 0 with IMOD's
    unsigned-bytes stamp (flags 0) and the given voxel size in Å."""
    dst = Path(dst)
    if img_format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown image format {img_format!r}; use one of {OUTPUT_FORMATS}")
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"{dst}: need a 2-D uint8 image, got {image.dtype} {image.shape}")
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        if img_format == "mrc":
            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(np.ascontiguousarray(image).view(np.int8))  # mode 0
                mrc.voxel_size = voxel_size
                extra2 = bytearray(bytes(mrc.header.extra2))
                stamp_and_flags = _IMOD_STAMP.to_bytes(4, "little") + bytes(4)  # flags 0
                extra2[_IMOD_STAMP_OFFSET : _IMOD_STAMP_OFFSET + 8] = stamp_and_flags
                mrc.header.extra2 = bytes(extra2)
                mrc.header.dmin = float(image.min())
                mrc.header.dmax = float(image.max())
                mrc.header.dmean = float(image.mean(dtype=np.float64))
                mrc.header.rms = float(image.std(dtype=np.float64))
        elif img_format == "png":
            with open(tmp, "wb") as fh:
                fh.write(pngwrite.encode(image))
        else:
            params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if img_format == "jpg" else []
            ok, buf = cv2.imencode("." + img_format, image, params)
            if not ok:
                raise OSError(f"{dst}: OpenCV could not encode the image as {img_format}")
            with open(tmp, "wb") as fh:
                fh.write(buf.tobytes())
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def denoise_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    img_format: str = "png",
    legacy_flip: bool = False,
    *,
    threads: int | None = None,
) -> float:
    """Denoise one micrograph file into ``dst`` (written atomically); returns the seconds taken."""
    start = time.perf_counter()
    image, voxel_size = read_micrograph(src)
    try:
        out = denoise_image(image, legacy_flip=legacy_flip, threads=threads)
    except DenoiseInputError as exc:
        raise DenoiseInputError(str(exc).replace("image:", f"{src}:", 1)) from exc
    write_image(out, dst, img_format, voxel_size)
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# Directories (the `cryoglean denoise` command)


def available_cpus() -> int:
    """CPUs this process may run on (Slurm/cgroup affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def shard_files(files: Sequence[Path], k: int, n: int) -> list[Path]:
    """The K-th of N contiguous chunks of ``files`` (see :mod:`converters.shard`)."""
    return shard_items(files, k, n)


def list_micrographs(source: str | os.PathLike) -> list[Path]:
    """Micrograph files directly in ``source`` (not recursive), sorted by name; an error when
    there is none (:func:`harvest.imageio.list_micrographs`)."""
    return imageio.list_micrographs(source, what="source directory")


@dataclass
class DenoiseSummary:
    """What one ``denoise_directory`` run did (paths are absolute)."""

    selected: int = 0
    processed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1
    log_file: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


class _RunLog:
    """Appends timestamped lines to PROJECT/partinet_denoise.log (PartiNet's log file)."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str) -> None:
        stamp = datetime.now().isoformat(sep=" ", timespec="milliseconds")
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} - {message}\n")
        log.debug(message)


def _init_worker(threads: int) -> None:
    cv2.setNumThreads(threads)


def _denoise_task(src: str, dst: str, img_format: str, legacy_flip: bool, threads: int) -> float:
    return denoise_file(src, dst, img_format, legacy_flip, threads=threads)


def denoise_directory(
    source: str | os.PathLike,
    project: str | os.PathLike,
    num_workers: int | None = None,
    img_format: str = "png",
    legacy_flip: bool = False,
    shard: str | tuple[int, int] | None = None,
    progress: bool = True,
    force: bool = False,
) -> DenoiseSummary:
    """Denoise every micrograph in ``source`` into ``PROJECT/denoised/<stem>.<img_format>``.

    PartiNet's ``denoise`` stage: workers = min(``num_workers``, CPUs) processes (default: half
    the CPUs, at least 1, as PartiNet); existing outputs are skipped unless ``force``; each output
    is written atomically; one unreadable micrograph is logged and listed in the summary while the
    others are still written. ``shard`` = "K/N" (or (K, N)) keeps the K-th (0-based) of N
    contiguous chunks of the sorted file list. Lines are appended to PROJECT/partinet_denoise.log.
    More than one worker uses "spawn" processes (forking a process with running thread pools is
    unsafe), so
    a script that calls this must keep its top-level code under ``if __name__ == "__main__":``.
    """
    if img_format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown --img_format {img_format!r}; use one of {OUTPUT_FORMATS}")
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"--num_workers {num_workers}: need at least 1")
    start = time.perf_counter()
    source = Path(source).resolve()
    files = list_micrographs(source)
    _check_unique_stems(files)
    total = len(files)
    if shard is not None:
        k, n = parse_shard(shard) if isinstance(shard, str) else shard
        if n < 1 or not 0 <= k < n:
            raise ValueError(f"shard {k}/{n}: need N >= 1 and 0 <= K < N")
        files = shard_files(files, k, n)

    project = Path(project).resolve()
    out_dir = project / OUTPUT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    runlog = _RunLog(project / LOG_NAME)
    ncpu = available_cpus()
    workers = min(num_workers if num_workers is not None else max(1, ncpu // 2), ncpu)
    summary = DenoiseSummary(selected=len(files), workers=workers, log_file=runlog.path)

    runlog(f"Using {workers} workers out of {ncpu} available CPUs.")
    runlog(f"Processing raw micrographs in {source}")
    runlog(f"Saving denoised micrographs in {out_dir}")
    if shard is not None:
        runlog(f"Shard {k}/{n}: {len(files)} of {total} micrographs")

    tasks: list[tuple[Path, Path]] = []
    for src in files:
        dst = out_dir / f"{micrograph_stem(src.name)}.{img_format}"
        if dst.exists() and not force:
            runlog(f"{dst} already exists!")
            summary.skipped.append(dst)
        else:
            tasks.append((src, dst))

    threads = max(1, ncpu // workers)
    bar = _progress(len(tasks), progress)
    try:
        if workers == 1 or len(tasks) <= 1:
            for src, dst in tasks:
                work = partial(denoise_file, src, dst, img_format, legacy_flip, threads=threads)
                _record(summary, runlog, src, dst, work)
                bar.update(1)
        else:
            import multiprocessing

            # spawn: fork() of a process whose OpenCV/FFT thread pools already run is unsafe
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
            ) as pool:
                futures = {
                    pool.submit(_denoise_task, str(s), str(d), img_format, legacy_flip, threads): (
                        s,
                        d,
                    )
                    for s, d in tasks
                }
                for fut in as_completed(futures):
                    src, dst = futures[fut]
                    _record(summary, runlog, src, dst, fut.result)
                    bar.update(1)
    finally:
        bar.close()

    summary.seconds = time.perf_counter() - start
    done = len(summary.processed)
    rate = f" ({summary.seconds / done:.2f} s per micrograph)" if done else ""
    runlog(
        f"Done: {done} processed, {len(summary.skipped)} skipped, {len(summary.failed)} failed "
        f"in {summary.seconds:.2f} s{rate}"
    )
    for src, err in summary.failed:
        runlog(f"Failed: {src}: {err}")
    return summary


def _record(
    summary: DenoiseSummary, runlog: _RunLog, src: Path, dst: Path, work: Callable[[], float]
) -> None:
    try:
        seconds = work()
    except Exception as exc:  # one bad micrograph must not stop the others
        message = str(exc) or type(exc).__name__
        message = message.removeprefix(f"{src}: ")  # the log line names the file already
        summary.failed.append((src, message))
        runlog(f"Failed to process {src}: {message}")
        return
    summary.processed.append(dst)
    runlog(f"Processed image {src} to dest. {dst} in {seconds:.2f} s")


def _check_unique_stems(files: Sequence[Path]) -> None:
    clash = first_stem_clash(files)
    if clash is not None:
        later, earlier = clash
        stem = micrograph_stem(later)
        raise ValueError(
            f"{later} and {earlier} would both be written as denoised/{stem}.*; "
            "keep one of them in the source directory"
        )


def _progress(total: int, enabled: bool):
    """The project's one progress mechanism: a bar on a terminal, plain periodic lines
    (percentage, rate, ETA) elsewhere, e.g. in a Slurm output file."""
    from harvest.progress import Progress

    return Progress(total, "denoise", "micrographs", enabled=enabled)
