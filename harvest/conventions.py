"""Conventions that hold everywhere in cryoglean (see DESIGN.md).

Pixel frame
    A 2D coordinate (x, y) is in pixels of the micrograph file it refers to, in the array frame
    that ``mrcfile`` returns: x = column, y = row, origin at the first stored pixel. 3D adds
    z = section. Floats are kept; rounding happens only where a format demands integers.

Units
    Distances in Å where physical (pixel sizes, diameters, separations); pixels for coordinates.

Every function here takes and returns numpy arrays (or scalars) so parsers can apply them to a
whole particle set at once.
"""

from __future__ import annotations

import os
import re

import numpy as np

# Curation stages, least to most curated. rejected2d sits beside selected2d: equally curated,
# but the particles are explicit negatives.
STAGES: tuple[str, ...] = (
    "picked",
    "extracted",
    "classified2d",
    "selected2d",
    "rejected2d",
    "classified3d",
    "refined",
)
STAGE_RANK: dict[str, int] = {
    "picked": 0,
    "extracted": 1,
    "classified2d": 2,
    "selected2d": 3,
    "rejected2d": 3,
    "classified3d": 4,
    "refined": 5,
}
NEGATIVE_STAGES = frozenset({"rejected2d"})


def stage_rank(stage: str) -> int:
    """Rank of a curation stage (higher = more curated); ValueError for an unknown stage."""
    try:
        return STAGE_RANK[stage]
    except KeyError:
        raise ValueError(f"unknown curation stage {stage!r}; known: {', '.join(STAGES)}") from None


# ---------------------------------------------------------------------------------------------
# Curation stages / recentring (read by harvest.cryosparc and harvest.relion)
# ---------------------------------------------------------------------------------------------

# Stages whose particles went through an alignment that carries per-particle shifts: 2D
# classification (and the selections made from it) and 3D classification / refinement. Which
# alignment a set's shifts come from follows these (CryoSPARC ``alignments2D`` vs ``alignments3D``;
# RELION's rlnOrigin* of the job's own data STAR either way).
ALIGNMENT_2D_STAGES = frozenset({"classified2d", "selected2d", "rejected2d"})
ALIGNMENT_3D_STAGES = frozenset({"classified3d", "refined"})
# Stages whose catalog centre (x, y) applies the alignment shifts; raw_x/raw_y always keep the
# stored position. DESIGN.md's rule is that every alignment recentres; for now 2D shifts are kept
# raw. Flipping 2D to recentring is this one line:
#     RECENTRED_STAGES = ALIGNMENT_2D_STAGES | ALIGNMENT_3D_STAGES
RECENTRED_STAGES: frozenset[str] = ALIGNMENT_3D_STAGES


def recentres(stage: str) -> bool:
    """Whether particle sets of ``stage`` get recentred positions (``x − shift``) in the catalog.

    Reads :data:`RECENTRED_STAGES` when called, so the rule lives in that one line."""
    return stage in RECENTRED_STAGES


# ---------------------------------------------------------------------------------------------
# Micrograph identity
# ---------------------------------------------------------------------------------------------

_UID_PREFIX = re.compile(r"^\d{21}_")
# Longest first, so that _patch_aligned_doseweighted is not left as _doseweighted.
PROCESSING_SUFFIXES: tuple[str, ...] = (
    "_patch_aligned_doseweighted",
    "_patch_aligned",
    "_doseweighted",
    "_DW",
)
_IMAGE_EXTENSIONS = (
    ".mrc", ".mrcs", ".tif", ".tiff", ".eer", ".png", ".jpg", ".jpeg", ".rec", ".st", ".map",
)


def micrograph_key(path: str | os.PathLike | bytes) -> str:
    """Canonical key of a micrograph: the same exposure gets the same key across jobs and
    packages.

    The basename without directory, extension, CryoSPARC's 21-digit UID prefix and known
    processing suffixes (``_patch_aligned_doseweighted``, ``_patch_aligned``, ``_doseweighted``,
    ``_DW``). ``J3/motioncorrected/014810031491354839884_mic_0001_patch_aligned_doseweighted.mrc``
    and ``MotionCorr/job002/Movies/mic_0001.mrc`` both give ``mic_0001``.
    """
    if isinstance(path, bytes):
        path = path.decode("utf-8", "replace")
    name = str(path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if name.startswith(">"):  # CryoSPARC marks paths relative to the .csg/.cs directory with '>'
        name = name[1:]
    lower = name.lower()
    for ext in _IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            name = name[: -len(ext)]
            break
    name = _UID_PREFIX.sub("", name)
    changed = True
    while changed:
        changed = False
        for suffix in PROCESSING_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                changed = True
    return name


# ---------------------------------------------------------------------------------------------
# Coordinates
# ---------------------------------------------------------------------------------------------


def cryosparc_frac_to_pixels(x_frac, y_frac, micrograph_shape):
    """CryoSPARC ``location/center_{x,y}_frac`` to pixels of the same micrograph file.

    ``micrograph_shape`` is CryoSPARC's ``location/micrograph_shape``: ``[ny, nx]`` (numpy order),
    per particle (shape (n, 2)) or one pair. No y-flip: ``x = x_frac * nx``, ``y = y_frac * ny``.
    """
    shape = np.asarray(micrograph_shape, dtype=np.float64)
    ny = shape[..., 0]
    nx = shape[..., 1]
    return np.asarray(x_frac, dtype=np.float64) * nx, np.asarray(y_frac, dtype=np.float64) * ny


def recentre_cryosparc(x, y, shift_x, shift_y, alignment_psize_A, micrograph_psize_A):
    """Particle centre after refinement, CryoSPARC: ``x − shift_x × psize_align / psize_mic``.

    ``shift_*`` are ``alignments{2D,3D}/shift`` in pixels of the alignment (``alignments*/psize_A``).
    """
    scale = np.asarray(alignment_psize_A, dtype=np.float64) / np.asarray(
        micrograph_psize_A, dtype=np.float64
    )
    return (
        np.asarray(x, dtype=np.float64) - np.asarray(shift_x, dtype=np.float64) * scale,
        np.asarray(y, dtype=np.float64) - np.asarray(shift_y, dtype=np.float64) * scale,
    )


def recentre_relion31(x, y, origin_x_angst, origin_y_angst, micrograph_pixel_size):
    """Particle centre, RELION 3.1+: ``rlnCoordinateX − rlnOriginXAngst / micrograph pixel size``."""
    mpx = np.asarray(micrograph_pixel_size, dtype=np.float64)
    return (
        np.asarray(x, dtype=np.float64) - np.asarray(origin_x_angst, dtype=np.float64) / mpx,
        np.asarray(y, dtype=np.float64) - np.asarray(origin_y_angst, dtype=np.float64) / mpx,
    )


def recentre_relion30(x, y, origin_x_px, origin_y_px, particle_pixel_size, micrograph_pixel_size):
    """Particle centre, RELION 3.0: ``rlnCoordinateX − rlnOriginX × particle_px / micrograph_px``
    (origins are in pixels of the extracted particle images)."""
    scale = np.asarray(particle_pixel_size, dtype=np.float64) / np.asarray(
        micrograph_pixel_size, dtype=np.float64
    )
    return (
        np.asarray(x, dtype=np.float64) - np.asarray(origin_x_px, dtype=np.float64) * scale,
        np.asarray(y, dtype=np.float64) - np.asarray(origin_y_px, dtype=np.float64) * scale,
    )


def flip_y(y, ny):
    """Explicit y-flip (pyem's default for RELION/MotionCor2 micrographs): ``ny − y``.

    Never applied silently: exports call it only on request and record it in their manifest.
    """
    return np.asarray(ny, dtype=np.float64) - np.asarray(y, dtype=np.float64)


def relion30_pixel_size(detector_pixel_size_um, magnification):
    """RELION 3.0 pixel size in Å: ``rlnDetectorPixelSize (µm) × 1e4 / rlnMagnification``."""
    return (
        np.asarray(detector_pixel_size_um, dtype=np.float64)
        * 1e4
        / np.asarray(magnification, dtype=np.float64)
    )
