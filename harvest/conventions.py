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
# stored position. DESIGN.md's rule: every alignment that carries a shift recentres, 2D as well
# as 3D (measured on a real RELION chain: raw Select positions 10.3 px from the truth, with the
# 2D shifts applied 3.96 px).
RECENTRED_STAGES: frozenset[str] = ALIGNMENT_2D_STAGES | ALIGNMENT_3D_STAGES


def recentres(stage: str) -> bool:
    """Whether particle sets of ``stage`` get recentred positions (``x − shift``) in the catalog.

    Reads :data:`RECENTRED_STAGES` when called, so the rule lives in that one line."""
    return stage in RECENTRED_STAGES


# ---------------------------------------------------------------------------------------------
# Missing values and class numbers (read by the parsers and by converters.importer)
# ---------------------------------------------------------------------------------------------

# RELION writes −999 where a number has no value (manual picks: rlnAutopickFigureOfMerit and
# rlnAnglePsi, reference/formats.md §4.2). One rule everywhere: such a value is missing (NaN),
# in a crawl and in an import alike.
RELION_MISSING: float = -999.0
# RELION's motion metadata marks frames outside the summed window with −9999 (NOT_OBSERVED,
# [relion] micrograph_model.cpp); cryoglean reads no per-frame shift, the value is named here so
# that a reader of them treats it as missing as well.
RELION_NOT_OBSERVED: float = -9999.0
# No class: the catalog's class_id for a particle without one (CryoSPARC numbers classes from 0,
# so 0 cannot mean "none").
NO_CLASS: int = -1


def missing_to_nan(values) -> np.ndarray:
    """``values`` as float64 with RELION's "no value" (:data:`RELION_MISSING`,
    :data:`RELION_NOT_OBSERVED`) turned into NaN."""
    out = np.array(values, dtype=np.float64, copy=True)
    out[(out == RELION_MISSING) | (out == RELION_NOT_OBSERVED)] = np.nan
    return out


def relion_class_numbers(class_number) -> np.ndarray:
    """Class numbers as RELION numbers them (``rlnClassNumber``, 1-based) as stored in the
    catalog: kept as they are; 0, negative, −999 or missing → :data:`NO_CLASS`. CryoSPARC classes
    (0-based ``alignments*/class``) are stored as they are too: the catalog keeps each package's
    own numbering, so ``export --class 1`` means RELION's class 1 or CryoSPARC's class 1."""
    c = np.asarray(class_number, dtype=np.float64)
    ok = np.isfinite(c) & (c > 0)
    return np.where(ok, c, NO_CLASS).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Micrograph identity: the naming rules (stem, key, project prefix), defined here only
# ---------------------------------------------------------------------------------------------

# Extensions a micrograph, movie or tomogram *name* may carry (what naming strips), in the order
# a lookup of "<stem><ext>" beside labels prefers them: exported 8-bit images, then MRC/TIFF
# originals, then stacks, volumes and movies. The files cryoglean can *read* are fewer:
# harvest.imageio.IMAGE_SUFFIXES, a subset (a test checks).
MICROGRAPH_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".mrc", ".tif", ".tiff", ".mrcs", ".rec", ".st", ".map", ".eer",
)
_UID_PREFIX = re.compile(r"^\d{21}_")
# Warp names a tomogram's tilt series "<name>.tomostar" (rlnTomoName in WarpTools STAR files):
# the key drops it, so picks on "TS_01.tomostar" match the tomogram "TS_01.mrc".
WARP_SUFFIXES: tuple[str, ...] = (".tomostar",)
# Longest first, so that _patch_aligned_doseweighted is not left as _doseweighted.
PROCESSING_SUFFIXES: tuple[str, ...] = (
    "_patch_aligned_doseweighted",
    "_patch_aligned",
    "_doseweighted",
    "_DW",
)


def micrograph_stem(name: str | os.PathLike | bytes) -> str:
    """File stem of a micrograph name: the basename (``/`` or ``\\`` separators) without one
    known extension (:data:`MICROGRAPH_EXTENSIONS`, any case); other dots are kept
    (``a.b.c`` stays ``a.b.c``). Files written per micrograph are named ``<stem><ext>``."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    base = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    base = base.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    lower = base.lower()
    for ext in MICROGRAPH_EXTENSIONS:
        if lower.endswith(ext):
            return base[: -len(ext)]
    return base


def micrograph_key(path: str | os.PathLike | bytes) -> str:
    """Canonical key of a micrograph: the same exposure gets the same key across jobs and
    packages.

    The basename without directory, extension, CryoSPARC's 21-digit UID prefix and known
    processing suffixes (``_patch_aligned_doseweighted``, ``_patch_aligned``, ``_doseweighted``,
    ``_DW``); Warp's ``.tomostar`` is dropped too. ``J3/motioncorrected/014810031491354839884_mic_0001_patch_aligned_doseweighted.mrc``
    and ``MotionCorr/job002/Movies/mic_0001.mrc`` both give ``mic_0001``.
    """
    name = micrograph_stem(path)
    if name.startswith(">"):  # CryoSPARC marks paths relative to the .csg/.cs directory with '>'
        name = name[1:]
    name = _UID_PREFIX.sub("", name)
    for suffix in WARP_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    changed = True
    while changed:
        changed = False
        for suffix in PROCESSING_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                changed = True
    return name


def project_stem(key: str, project_id: int) -> str:
    """Export stem of a micrograph whose key occurs in more than one exported project:
    ``p<project id>_<key>`` (see :func:`export_stems`)."""
    return f"p{int(project_id)}_{key}"


def strip_project_prefix(name: str, project_id: int) -> str:
    """Inverse of :func:`project_stem` for one project: ``p7_mic_0001`` → ``mic_0001`` for
    project 7; any other name is returned unchanged."""
    prefix = f"p{int(project_id)}_"
    return name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else name


def export_stems(keys, project_ids) -> np.ndarray:
    """File stem per exported micrograph (one per row): its key, or :func:`project_stem` where
    the key occurs on more than one row (the same exposure name in several projects)."""
    keys = np.asarray([str(k) for k in keys], dtype=object)
    pids = np.asarray(project_ids).astype(np.int64)
    if keys.shape != pids.shape:
        raise ValueError(f"{keys.shape[0]} keys but {pids.shape[0]} project ids")
    _, inverse, counts = np.unique(keys.astype(str), return_inverse=True, return_counts=True)
    dup = counts[inverse] > 1
    out = keys.copy()
    for i in np.flatnonzero(dup):
        out[i] = project_stem(keys[i], pids[i])
    return out


# Suffixes pick programs append to a micrograph's name in its per-micrograph coordinate file:
# RELION's ``<mic>_autopick.star`` / ``<mic>_manualpick.star``, RELION's coordinate-import and
# external-job style ``<mic>_coords.star``, and RELION 5 tomography annotations
# ``<tomogram>_particles.star`` (get_particle_poses: name = file name up to its last "_").
PICK_FILE_SUFFIXES: tuple[str, ...] = ("_autopick", "_manualpick", "_coords", "_particles")


def pick_file_micrograph(name: str | os.PathLike) -> str:
    """Micrograph name of a per-micrograph pick file: its stem without one pick suffix
    (:data:`PICK_FILE_SUFFIXES`): ``Movies/mic_0001_autopick.star`` → ``mic_0001``."""
    stem = micrograph_stem(name)
    if stem.endswith(".star"):
        stem = stem[: -len(".star")]
    for suffix in PICK_FILE_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def first_stem_clash(names) -> tuple[str, str] | None:
    """The first two names (in order) that share a :func:`micrograph_stem`, as (later, earlier),
    or None: files named ``<stem><ext>`` from them would overwrite each other."""
    seen: dict[str, str] = {}
    for name in names:
        stem = micrograph_stem(name)
        if stem in seen:
            return name, seen[stem]
        seen[stem] = name
    return None


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


# Valid positions (checked where values enter: the harvest parsers, the catalog writer, import).
# A position is finite and lies on its micrograph (or tomogram), up to EDGE_MARGIN of the
# micrograph's size outside an edge, per axis: x in [−m·nx, (1 + m)·nx], y likewise with ny (z
# with nz). Why a margin: recentring moves a centre by the alignment shift and re-extraction
# writes recentred centres, which may fall just outside a micrograph for particles picked near
# its edge; 5 % is a half box for boxes up to a tenth of the micrograph (256 px on 4096) and
# tens of times a typical shift. Farther out no part of the particle is on the micrograph: such
# a value is garbage (CryoSPARC ``center_x_frac`` = −0.64 or 1.7, a RELION coordinate of −288
# on a 448-px micrograph). Where a micrograph's size is unknown only finiteness is checked.
EDGE_MARGIN: float = 0.05


def positions_valid(x, y, nx, ny, z=None, nz=None, margin: float = EDGE_MARGIN) -> np.ndarray:
    """Boolean mask of the positions that are finite and on their micrograph within ``margin``
    (see :data:`EDGE_MARGIN`). ``nx``, ``ny`` (``nz``): sizes in px, per position or one value;
    NaN, None or ≤ 0 = unknown (that axis is only checked to be finite)."""
    ok = np.isfinite(np.asarray(x, dtype=np.float64)) & np.isfinite(np.asarray(y, dtype=np.float64))
    axes = [(x, nx), (y, ny)]
    if z is not None:
        ok &= np.isfinite(np.asarray(z, dtype=np.float64))
        axes.append((z, nz))
    for v, n in axes:
        if n is None:
            continue
        v = np.asarray(v, dtype=np.float64)
        n = np.broadcast_to(np.asarray(n, dtype=np.float64), v.shape)
        known = np.isfinite(n) & (n > 0)
        with np.errstate(invalid="ignore"):
            inside = (v >= -margin * n) & (v <= (1.0 + margin) * n)
        ok &= ~known | inside
    return ok


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
