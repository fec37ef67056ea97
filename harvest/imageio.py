"""Reading micrograph files: the one reader, lister, extension list and header-only size.

harvest, converters (export images, denoise) and trainers all read micrographs through here.

Files: MRC (``.mrc``, ``.mrcs``) through ``mrcfile``; PNG, JPEG and TIFF through OpenCV.
:data:`IMAGE_SUFFIXES` lists them; a micrograph *name* may carry more extensions
(:data:`harvest.conventions.MICROGRAPH_EXTENSIONS`, e.g. ``.eer`` movies), which naming strips
but which are not read here.

What :func:`read_micrograph` returns: a 2-D float32 array indexed ``[row y, column x]`` as
``mrcfile`` returns it (DESIGN.md's pixel frame: no flip, no transpose), and the voxel size in Å
from the MRC header (zeros when unknown or not an MRC).

- MRC stacks: ``(1, ny, nx)`` is squeezed; more sections are movie frames and are averaged
  (float64 sum, one frame at a time, so a memory-mapped movie is never loaded whole). Mode 0
  with IMOD's unsigned flag is read as uint8 (IMOD's convention; MRC2014's default is signed).
  Complex modes and 4-D data are errors.
- Images: colour (BGR/BGRA) is converted to grey with ``cv2.cvtColor``; a multi-page TIFF is
  averaged like frames.

Error policy (mrcfile's: strict by default, ``permissive=True`` turns defects into warnings):

- an MRC is first opened strictly. When that fails and the file is shorter than its header
  promises, the error says it is truncated (no retry can help). Other header defects (a missing
  ``MAP`` stamp, an unknown machine stamp, ...) are retried with ``permissive=True`` (the
  default here, as PartiNet's ``mrcfile.read``); the data is then used and a warning naming the
  file and the defect is logged. ``permissive=False`` raises instead.
- Every error is one line naming the file and what is wrong: ``FileNotFoundError`` for a missing
  file, :class:`MicrographError` (a ``ValueError``) otherwise.
- Sizes from a header (:func:`micrograph_shape`, :func:`mrc_header_size`) are given only when
  the header is consistent with the file: sizes ≥ 1, a known mode, and a file as long as the
  data the header promises; otherwise :class:`MicrographError` (the size is unknown).
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from harvest import fsguard

log = logging.getLogger(__name__)

# The micrograph files cryoglean reads (one list: denoise, export, trainers).
IMAGE_SUFFIXES: tuple[str, ...] = (".mrc", ".mrcs", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
MRC_SUFFIXES: tuple[str, ...] = (".mrc", ".mrcs")
# MRC files whose header :func:`micrograph_shape` also reads (tomograms, tilt series, maps)
MRC_HEADER_SUFFIXES: tuple[str, ...] = MRC_SUFFIXES + (".rec", ".st", ".map")
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")

# IMOD header stamp and flags (words 39 and 40, bytes 152-159): with the stamp present and bit 0
# of the flags clear, mode 0 bytes are unsigned.
IMOD_STAMP = 1146047817
IMOD_STAMP_OFFSET = 152 - 112  # inside mrcfile's ``extra2`` field, which starts at byte 112
_HEADER_BYTES = 1024
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class MicrographError(ValueError):
    """A micrograph file that cannot be read (the one-line message names the file and why)."""


class NoMicrographsError(FileNotFoundError):
    """A folder that holds no micrograph file with a known extension."""


class Micrograph(NamedTuple):
    """A micrograph read from a file: ``image`` 2-D float32 ``[row y, column x]``;
    ``voxel_size`` (x, y, z) in Å, zeros when unknown."""

    image: np.ndarray
    voxel_size: tuple[float, float, float]

    @property
    def pixel_size(self) -> float | None:
        """Å per pixel along x, None when the file does not say."""
        px = float(self.voxel_size[0])
        return px if px > 0 else None


_NO_VOXEL = (0.0, 0.0, 0.0)


def read_micrograph(path: str | os.PathLike, *, permissive: bool = True) -> Micrograph:
    """Read one micrograph file as 2-D float32 and its voxel size (see the module docstring)."""
    path = Path(path)
    _check_micrograph(path)
    suffix = path.suffix.lower()
    if suffix in MRC_SUFFIXES:
        return _read_mrc(path, permissive)
    if suffix in TIFF_SUFFIXES:
        import cv2

        ok, pages = cv2.imreadmulti(str(path), flags=cv2.IMREAD_UNCHANGED)
        if not ok or not pages:
            raise MicrographError(f"{path}: OpenCV cannot read this TIFF; check the file")
        pages = [_to_grey(p, path) for p in pages]
        if len(pages) == 1:
            return Micrograph(pages[0].astype(np.float32), _NO_VOXEL)
        return Micrograph(average_frames(np.stack(pages), path), _NO_VOXEL)
    if suffix in IMAGE_SUFFIXES:
        import cv2

        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise MicrographError(f"{path}: OpenCV cannot read this image; check the file")
        return Micrograph(_to_grey(data, path).astype(np.float32), _NO_VOXEL)
    raise MicrographError(
        f"{path}: unsupported extension {path.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
    )


def _check_micrograph(path: Path) -> None:
    """FileNotFoundError when missing; :class:`harvest.fsguard.NotARegularFile` (a FIFO, device
    or folder: never opened) or :class:`harvest.fsguard.OutsideRoots` during a crawl. The
    libraries that read the file (mrcfile, OpenCV) open it by name right after."""
    try:
        fsguard.check_file(path)
    except FileNotFoundError as exc:
        if isinstance(exc, fsguard.NotARegularFile):
            raise
        raise FileNotFoundError(f"{path}: micrograph not found") from None


def average_frames(frames: np.ndarray, path: str | os.PathLike = "frames") -> np.ndarray:
    """Mean over the first axis as float32 (float64 sum, one frame at a time)."""
    if frames.shape[0] == 0:
        raise MicrographError(f"{path}: the stack has no frames")
    total = np.zeros(frames.shape[1:], dtype=np.float64)
    for frame in frames:  # a memory-mapped movie is never loaded whole
        total += frame
    total /= frames.shape[0]
    return total.astype(np.float32)


def _to_grey(data: np.ndarray, path: Path) -> np.ndarray:
    import cv2

    if data.ndim == 2:
        return data
    if data.ndim == 3 and data.shape[2] == 3:
        return cv2.cvtColor(data, cv2.COLOR_BGR2GRAY)
    if data.ndim == 3 and data.shape[2] == 4:
        return cv2.cvtColor(data, cv2.COLOR_BGRA2GRAY)
    raise MicrographError(f"{path}: unsupported image shape {data.shape}; need grey or BGR")


def _read_mrc(path: Path, permissive: bool) -> Micrograph:
    try:
        return _read_mrc_data(path, permissive=False)
    except MicrographError:
        raise
    except ValueError as strict_error:
        _check_before_permissive(path, strict_error)
        if not permissive:
            raise MicrographError(
                f"{path}: MRC header defect ({strict_error}); fix the file or read it permissively"
            ) from strict_error
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                result = _read_mrc_data(path, permissive=True)
        except MicrographError:
            raise
        except (ValueError, OSError):
            raise MicrographError(
                f"{path}: not a readable MRC file ({strict_error})"
            ) from strict_error
        log.warning("%s: MRC header defect (%s); read permissively", path, strict_error)
        return result


def _read_mrc_data(path: Path, permissive: bool) -> Micrograph:
    import mrcfile

    with mrcfile.mmap(path, mode="r", permissive=permissive) as mrc:
        data = mrc.data
        if data is None:
            raise ValueError("mrcfile found no data")
        if np.iscomplexobj(data):
            raise MicrographError(f"{path}: complex MRC data (mode 3/4) is not a micrograph")
        if mrc.header.mode == 0 and imod_unsigned(mrc.header):
            data = data.view(np.uint8)
        voxel = mrc.voxel_size
        voxel_size = (float(voxel.x), float(voxel.y), float(voxel.z))
        if data.ndim == 2:
            image = np.array(data, dtype=np.float32)
        elif data.ndim == 3 and data.shape[0] == 1:
            image = np.array(data[0], dtype=np.float32)
        elif data.ndim == 3:
            image = average_frames(data, path)  # movie frames, averaged like EPicker
        else:
            raise MicrographError(
                f"{path}: MRC data has shape {data.shape}; need one micrograph or frames"
            )
    return Micrograph(image, voxel_size)


def imod_unsigned(header) -> bool:
    """IMOD stamp present (in either byte order) with the signed-bytes flag clear."""
    raw = bytes(header.extra2)[IMOD_STAMP_OFFSET : IMOD_STAMP_OFFSET + 8]
    for order in ("little", "big"):
        if int.from_bytes(raw[:4], order) == IMOD_STAMP:
            return not int.from_bytes(raw[4:], order) & 1
    return False


class _RawHeader(NamedTuple):
    nx: int
    ny: int
    nz: int
    mode: int
    nsymbt: int


def _plausible_header(path: Path) -> _RawHeader | None:
    """The size fields of an MRC header, read directly, when they make sense in either byte
    order (known mode, positive sizes); None for a file that is no MRC at all. Checked before a
    permissive retry: mrcfile would allocate whatever extended header garbage promises."""
    with fsguard.open_file(path) as fh:
        raw = fh.read(_HEADER_BYTES)
    if len(raw) < _HEADER_BYTES:
        return None
    return next(_header_candidates(raw), None)


def _header_candidates(raw: bytes) -> Iterator[_RawHeader]:
    """The size fields of a 1024-byte MRC header in each byte order (little first) where they
    make sense: positive sizes, a non-negative extended header, a mode mrcfile knows."""
    import mrcfile.utils

    for order in ("<", ">"):
        nx, ny, nz, mode = struct.unpack(order + "4i", raw[:16])
        (nsymbt,) = struct.unpack(order + "i", raw[92:96])
        if min(nx, ny, nz) < 1 or nsymbt < 0:
            continue
        try:
            mrcfile.utils.dtype_from_mode(mode)
        except ValueError:
            continue
        yield _RawHeader(nx, ny, nz, mode, nsymbt)


def _data_bytes(h: _RawHeader) -> int:
    """Bytes of pixel data the header promises."""
    import mrcfile.utils

    if h.mode == 101:  # 4-bit, two pixels per byte, rows padded to whole bytes
        return (h.nx + 1) // 2 * h.ny * h.nz
    return h.nx * h.ny * h.nz * mrcfile.utils.dtype_from_mode(h.mode).itemsize


def _check_before_permissive(path: Path, strict_error: Exception) -> None:
    """After a strict read failed: MicrographError when the file is shorter than its header
    says (truncated) or when its header is no MRC header (a permissive read cannot help)."""
    size = path.stat().st_size
    if size < _HEADER_BYTES:
        raise MicrographError(
            f"{path}: not a readable MRC file ({size} bytes, shorter than the "
            f"{_HEADER_BYTES}-byte MRC header: truncated, or not an MRC file)"
        )
    h = _plausible_header(path)
    if h is None:
        raise MicrographError(f"{path}: not a readable MRC file ({strict_error})")
    need = _HEADER_BYTES + h.nsymbt + _data_bytes(h)
    if size < need:
        raise MicrographError(
            f"{path}: truncated MRC file: the header promises {need} bytes ({h.nx}x{h.ny}x"
            f"{h.nz} pixels, mode {h.mode}), the file has {size}; copy it again"
        )


def mrc_header_size(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(nx, ny, nz)`` from an MRC header, refused unless it is consistent: sizes ≥ 1, a known
    mode, and a file at least as long as the header, extended header and data it promises
    (``nx=-576``, ``ny=0``, or ``nx=ny=100000`` in a 1 MB file are refused). Either byte order is
    tried; the one whose header fits the file wins. :class:`MicrographError` names the file, the
    sizes and the length otherwise (a size from such a header would be garbage in the catalog)."""
    path = Path(path)
    size = fsguard.check_file(path).st_size  # regular, inside the roots: else never opened
    with fsguard.open_file(path) as fh:
        raw = fh.read(_HEADER_BYTES)
    if len(raw) < _HEADER_BYTES:
        raise MicrographError(
            f"{path}: {size} bytes, shorter than the {_HEADER_BYTES}-byte MRC header; "
            "truncated or not an MRC file")
    for h in _header_candidates(raw):
        if size >= _HEADER_BYTES + h.nsymbt + _data_bytes(h):
            return h.nx, h.ny, h.nz
    nx, ny, nz, mode = struct.unpack("<4i", raw[:16])
    raise MicrographError(
        f"{path}: MRC header inconsistent with the file (nx={nx}, ny={ny}, nz={nz}, mode {mode} "
        f"in a {size}-byte file); header refused, size unknown")


def micrograph_shape(path: str | os.PathLike, *, permissive: bool = True) -> tuple[int, int]:
    """``(nx, ny)`` of a micrograph file without reading its pixels where the format allows:
    the MRC header (also ``.rec``/``.st``/``.map``; strict, then permissive with a logged warning as :func:`read_micrograph`),
    the PNG header, else OpenCV (JPEG, TIFF: decodes the first page)."""
    path = Path(path)
    _check_micrograph(path)
    suffix = path.suffix.lower()
    if suffix in MRC_HEADER_SUFFIXES:
        import mrcfile

        mrc_header_size(path)  # a header that does not fit the file gives no size
        try:
            with mrcfile.open(path, header_only=True, permissive=False) as mrc:
                return int(mrc.header.nx), int(mrc.header.ny)
        except (OSError, ValueError) as strict_error:
            if _plausible_header(path) is None:
                raise MicrographError(
                    f"{path}: not a readable MRC file ({strict_error})"
                ) from strict_error
            if not permissive:
                raise MicrographError(
                    f"{path}: MRC header defect ({strict_error}); fix the file"
                ) from strict_error
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                        nx, ny = int(mrc.header.nx), int(mrc.header.ny)
            except (OSError, ValueError) as exc:
                raise MicrographError(
                    f"{path}: cannot read the MRC header ({exc}); check the file"
                ) from exc
            log.warning("%s: MRC header defect (%s); read permissively", path, strict_error)
            return nx, ny
    if suffix == ".png":
        with fsguard.open_file(path) as fh:
            head = fh.read(24)
        if len(head) < 24 or head[:8] != _PNG_MAGIC:
            raise MicrographError(f"{path}: not a PNG file (no PNG signature); check the file")
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if suffix in IMAGE_SUFFIXES:
        import cv2

        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise MicrographError(f"{path}: OpenCV cannot read this image; check the file")
        return int(data.shape[1]), int(data.shape[0])
    raise MicrographError(
        f"{path}: unsupported extension {path.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
    )


def is_micrograph_file(path: Path) -> bool:
    """A regular, non-hidden file with one of :data:`IMAGE_SUFFIXES` (any case)."""
    return (
        path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


def list_micrographs(folder: str | os.PathLike, what: str = "micrograph folder") -> list[Path]:
    """Micrograph files directly in ``folder`` (not recursive), sorted by name: regular files
    with a known extension (:data:`IMAGE_SUFFIXES`), hidden files skipped.

    ``what`` names the folder in errors (``FileNotFoundError`` when it is missing,
    :class:`NoMicrographsError`, also a ``FileNotFoundError``, when it holds no micrograph)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} not found")
    files = sorted((p for p in folder.iterdir() if is_micrograph_file(p)), key=lambda p: p.name)
    if not files:
        raise NoMicrographsError(
            f"{folder}: no micrographs ({', '.join(IMAGE_SUFFIXES)}) in this {what}; point at "
            "the folder that holds them"
        )
    return files
