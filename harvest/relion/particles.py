"""Particle STAR files → particle sets, and the ``particles`` reader (Extract, Class2D, Select,
Class3D, InitialModel, Refine3D, PickTomo, particle imports), driven by the job's row in
:data:`harvest.relion.jobs.JOB_TYPES`.

Coordinates (DESIGN.md): pixels of the micrograph named by ``rlnMicrographName``, x = column,
y = row, as RELION stores ``rlnCoordinateX/Y`` (no flip). ``raw_x/raw_y`` = the stored
coordinates; ``x/y`` = recentred centres for the stages that recentre
(:func:`harvest.conventions.recentres`): 3.1+ ``x − rlnOriginXAngst / micrograph_px``
(:func:`harvest.conventions.recentre_relion31`), 3.0 ``x − rlnOriginX × particle_px /
micrograph_px`` (:func:`~harvest.conventions.recentre_relion30`).

Micrograph pixel size, in this order of preference: ``rlnMicrographPixelSize`` of the particle
star's optics group (3.1+); the micrographs STAR of a CtfFind job upstream of the job (else of any
CtfFind job of the project), matched by micrograph key; ``rlnMicrographOriginalPixelSize`` of the
optics group (movie pixel size: right unless motion correction binned); finally the particle
image pixel size (right when extraction did not rescale). Tomogram particles: see
:mod:`harvest.relion.tomo`.

Values are checked at this boundary (:mod:`harvest.validate`, tolerance
:data:`harvest.conventions.EDGE_MARGIN`) once the micrographs' sizes are known: rows whose
coordinates are not numbers (``abc``, ``nan``, ``inf``) or lie off their micrograph are left out
and counted in one Problem per set.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harvest import fsguard
from harvest.conventions import (
    NO_CLASS,
    micrograph_key,
    missing_to_nan,
    recentre_relion30,
    recentre_relion31,
    recentres,
    relion30_pixel_size,
    relion_class_numbers,
    stage_rank,
)
from harvest.imageio import mrc_header_size
from harvest.records import (
    JobRecord,
    MicrographRecord,
    ParticleSetRecord,
    Problem,
    ProjectScan,
)
from harvest.relion.context import Context
from harvest.relion.jobs import (
    LAST_ITERATION,
    OPTIMISATION_SET,
    RelionJob,
    describe,
    expand,
    job_row,
)
from harvest.relion.micrographs import ctf_pixel_sizes, micrograph_records
from harvest.relion.pipeline import Process
from harvest.relion.tables import (
    OpticsLookup,
    col,
    fingerprint,
    first,
    read_table,
)
from harvest.relion.tomo import (
    particles_file_from_optimisation_set,
    tomo_coordinates,
    tomogram_records,
    tomogram_table,
    tomograms_star_for,
)
from harvest.starread import StarFormatError
from harvest.validate import check_particles

# the particle-star labels a particle set needs (read only these: the reader's fast path)
PARTICLE_LABELS = (
    "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ",
    "rlnOriginX", "rlnOriginY", "rlnOriginZ", "rlnOriginXAngst", "rlnOriginYAngst",
    "rlnOriginZAngst", "rlnOpticsGroup", "rlnClassNumber", "rlnAutopickFigureOfMerit",
    "rlnMagnification", "rlnDetectorPixelSize", "rlnVoltage",
    "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnTomoName",
    "rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst",
)
REJECTED_SET, REJECTED_STAGE = "rejected", "rejected2d"
log = logging.getLogger(__name__)


@dataclass
class Particles:
    """A particle table normalised (vectorised) to the records' columns plus set metadata."""

    frame: pd.DataFrame  # PARTICLE_COLUMNS (+ z, raw_z)
    class_number: np.ndarray  # RELION's 1-based class (NO_CLASS = −1 where absent)
    image_name: np.ndarray | None
    mic_px_by_key: dict[str, float]
    meta: dict
    is_3d: bool = False
    tomograms: pd.DataFrame | None = None  # tomograms.star global table (tomo sets)
    mic_uniq: np.ndarray | None = None  # distinct micrograph paths, first-seen order


def _first_per_micrograph(uniq: np.ndarray, codes: np.ndarray, values: np.ndarray
                          ) -> dict[str, float]:
    """micrograph key → value of the first particle on it (finite values only)."""
    if not len(codes):
        return {}
    _, first_row = np.unique(codes, return_index=True)
    return {micrograph_key(m): float(v) for m, v in zip(uniq, values[first_row])
            if np.isfinite(v)}


def load_particles(
    ctx: Context,
    path: str,
    job_key: str,
    recentre: bool,
    tomograms_star: str | None = None,
    image_names: bool = False,
) -> Particles:
    """Read a particles STAR into the normalised frame (coordinates in micrograph px).
    ``image_names``: also read rlnImageName (to match particles between jobs)."""
    labels = PARTICLE_LABELS + (("rlnImageName",) if image_names else ())
    # micrograph names as Categoricals from the tokenizer: no Python string per particle
    table, optics = read_table(path, ("particles", "images", ""), "rlnCoordinateX", labels,
                               categories=("rlnMicrographName", "rlnTomoName"))
    n = len(table)
    is_tomo = "rlnTomoName" in table.columns
    is_3d = is_tomo or "rlnCoordinateZ" in table.columns or "rlnCenteredCoordinateZAngst" in (
        table.columns
    )
    if "rlnCoordinateX" not in table.columns and "rlnCenteredCoordinateXAngst" not in table.columns:
        raise StarFormatError(f"{path}: particles without rlnCoordinateX/Y (nothing to place)")
    mic_col = "rlnTomoName" if is_tomo else "rlnMicrographName"
    if mic_col not in table.columns:
        raise StarFormatError(f"{path}: particles without {mic_col}; cannot tell their micrograph")
    # one factorisation serves every per-micrograph lookup below: the Categorical read_star
    # made (categories in order of first appearance, as pd.factorize(sort=False) gives them)
    mic_values = table[mic_col].array
    mic_codes = np.asarray(mic_values.codes, dtype=np.int64)
    mic_uniq = np.asarray(mic_values.categories, dtype=object)

    # pixel sizes: particle images and micrographs (see module docstring for the order)
    opt = OpticsLookup(table, optics)
    image_px = opt("rlnImagePixelSize")
    if "rlnMagnification" in table.columns and "rlnDetectorPixelSize" in table.columns:
        p30 = relion30_pixel_size(col(table, "rlnDetectorPixelSize"), col(table, "rlnMagnification"))
        image_px = np.where(np.isfinite(image_px), image_px, p30)
    meta = {
        "image_pixel_size": first(image_px),
        "box_size": first(opt("rlnImageSize")),
        "voltage": first(np.where(np.isfinite(v := opt("rlnVoltage")),
                                  v, col(table, "rlnVoltage"))),
        "cs": first(np.where(
            np.isfinite(v := opt("rlnSphericalAberration")),
            v, col(table, "rlnSphericalAberration"))),
        "amp_contrast": first(np.where(
            np.isfinite(v := opt("rlnAmplitudeContrast")),
            v, col(table, "rlnAmplitudeContrast"))),
    }
    if meta["box_size"] is not None:
        meta["box_size"] = int(meta["box_size"])

    tomos = None
    if is_tomo:
        tomos = tomogram_table(tomograms_star)
        x, y, z, mic_px = tomo_coordinates(path, table, tomos, optics)
        raw_x, raw_y, raw_z = x, y, z
        origin = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
        if recentre and all(c in table.columns for c in origin):
            x = x - col(table, origin[0]) / mic_px
            y = y - col(table, origin[1]) / mic_px
            z = z - col(table, origin[2]) / mic_px
        # pixel size of the frame the coordinates are in (tilt-series px × binning if binned)
        px_by_key = _first_per_micrograph(mic_uniq, mic_codes, mic_px)
    else:
        raw_x = col(table, "rlnCoordinateX")
        raw_y = col(table, "rlnCoordinateY")
        raw_z = col(table, "rlnCoordinateZ") if is_3d else None
        mic_px = opt("rlnMicrographPixelSize")
        ctf_px = ctf_pixel_sizes(ctx, job_key) if ctx.scan is not None else {}
        if ctf_px and not np.all(np.isfinite(mic_px)):
            per_mic = np.array([ctf_px.get(micrograph_key(m), np.nan) for m in mic_uniq],
                               dtype=np.float64)
            mic_px = np.where(np.isfinite(mic_px), mic_px, per_mic[mic_codes])
        for fallback in (opt("rlnMicrographOriginalPixelSize"), image_px):
            mic_px = np.where(np.isfinite(mic_px), mic_px, fallback)
        x, y, z = raw_x, raw_y, raw_z
        if recentre:
            if "rlnOriginXAngst" in table.columns:
                x, y = recentre_relion31(raw_x, raw_y, col(table, "rlnOriginXAngst", 0.0),
                                         col(table, "rlnOriginYAngst", 0.0), mic_px)
                if is_3d and "rlnOriginZAngst" in table.columns:
                    z = raw_z - col(table, "rlnOriginZAngst", 0.0) / mic_px
            elif "rlnOriginX" in table.columns:
                x, y = recentre_relion30(raw_x, raw_y, col(table, "rlnOriginX", 0.0),
                                         col(table, "rlnOriginY", 0.0), image_px, mic_px)
                if is_3d and "rlnOriginZ" in table.columns:
                    z = raw_z - col(table, "rlnOriginZ", 0.0) * image_px / mic_px
            # rows whose stored coordinates are no numbers are left out later (harvest.validate)
            bad = (~np.isfinite(x) | ~np.isfinite(y)) & np.isfinite(raw_x) & np.isfinite(raw_y)
            if bad.any():
                ctx.problems.append(Problem(path, (
                    f"{int(bad.sum())} particles could not be recentred (unknown micrograph "
                    "pixel size or origin); their stored coordinates are kept")))
                x = np.where(bad, raw_x, x)
                y = np.where(bad, raw_y, y)
        px_by_key = _first_per_micrograph(mic_uniq, mic_codes, mic_px)
        if ctf_px:
            for k, v in ctf_px.items():
                px_by_key.setdefault(k, v)

    score = missing_to_nan(col(table, "rlnAutopickFigureOfMerit"))
    class_number = relion_class_numbers(col(table, "rlnClassNumber"))
    cols = {
        # the factorisation above as a Categorical: no Arrow string per row (pandas 3), and the
        # catalog writer stores its codes as they are
        "micrograph": pd.Categorical.from_codes(mic_codes, pd.Index(mic_uniq, dtype=object)),
        "x": np.asarray(x, dtype=np.float64),
        "y": np.asarray(y, dtype=np.float64),
        "raw_x": np.asarray(raw_x, dtype=np.float64),
        "raw_y": np.asarray(raw_y, dtype=np.float64),
        "score": score,
        "class_id": np.full(n, -1, dtype=np.int64),
        "uid": np.arange(n, dtype=np.int64),
    }
    if is_3d:
        cols["z"] = np.asarray(z, dtype=np.float64)
        cols["raw_z"] = np.asarray(raw_z, dtype=np.float64)
    frame = pd.DataFrame(cols)
    image_name = (
        table["rlnImageName"].astype(str).to_numpy(dtype=object)
        if "rlnImageName" in table.columns else None
    )
    return Particles(frame, class_number, image_name, px_by_key, meta, is_3d, tomos, mic_uniq)


def _set(
    name: str, stage: str, frame: pd.DataFrame, path: str, parts: Particles, **kw
) -> ParticleSetRecord:
    box = parts.meta.get("box_size")
    if box is None and not parts.is_3d:
        box = _box_from_stack(path)
        parts.meta["box_size"] = box
    return ParticleSetRecord(
        name=name,
        stage=stage,
        particles=frame.reset_index(drop=True),
        source_file=os.path.abspath(path),
        fingerprint=fingerprint(path),
        box_size=box,
        image_pixel_size=parts.meta.get("image_pixel_size"),
        voltage=parts.meta.get("voltage"),
        cs=parts.meta.get("cs"),
        amp_contrast=parts.meta.get("amp_contrast"),
        is_3d=parts.is_3d,
        **kw,
    )


def _first_image_name(path: str) -> str | None:
    """rlnImageName of the first particle row, read without parsing the whole file."""
    labels: list[str] = []
    in_loop = False
    with fsguard.open_file(path, "r", errors="replace") as fh:
        for line in fh:
            stripped = line.strip()
            if stripped.startswith("data_"):
                labels, in_loop = [], False
            elif stripped == "loop_":
                labels, in_loop = [], True
            elif in_loop and stripped.startswith("_"):
                labels.append(stripped.split()[0][1:])
            elif in_loop and stripped and not stripped.startswith("#") and labels:
                if "rlnImageName" in labels:
                    fields = stripped.split()
                    idx = labels.index("rlnImageName")
                    return fields[idx] if idx < len(fields) else None
                in_loop = False
    return None


def _box_from_stack(path: str) -> int | None:
    """Box size in pixels from the header of the first particle's stack (RELION 3.0 stars carry
    no rlnImageSize). Stack paths are relative to the project root, two levels above the job
    directory that holds ``path``. None when no stack can be read."""
    try:
        name = _first_image_name(path)
    except OSError:
        return None
    if not name or "@" not in name:
        return None
    stack = name.split("@", 1)[1]
    here = os.path.dirname(os.path.abspath(path))
    for base in (os.path.dirname(os.path.dirname(here)), here, os.path.dirname(here)):
        candidate = os.path.normpath(os.path.join(base, stack))
        if fsguard.inside(candidate) and fsguard.is_regular(candidate):
            try:  # only a header consistent with its file (harvest.imageio), opened guarded
                return mrc_header_size(candidate)[0]
            except (OSError, ValueError):
                return None
    return None


def _class_sets(path: str, parts: Particles, stage: str) -> list[ParticleSetRecord]:
    """One set per RELION class ``class_<N>`` with class_id N (RELION's own 1-based number)."""
    sets = []
    cls = parts.class_number
    frame = parts.frame
    frame["class_id"] = cls
    for c in np.unique(cls):
        mask = cls == c
        name = f"class_{int(c)}" if c != NO_CLASS else "class_0"
        sets.append(_set(name, stage, frame[mask], path, parts,
                         class_id=int(c) if c != NO_CLASS else None))
    return sets


def _rejected_mask(selected: Particles, parent: Particles) -> np.ndarray:
    """Rows of the parent Class2D table that Select left out: by rlnImageName when both have it,
    else by (micrograph, coordinates rounded to 0.01 px)."""
    if selected.image_name is not None and parent.image_name is not None:
        return ~pd.Index(parent.image_name).isin(pd.Index(selected.image_name))

    def keys(frame: pd.DataFrame) -> pd.MultiIndex:
        return pd.MultiIndex.from_arrays([
            frame["micrograph"].to_numpy(dtype=object),
            np.round(frame["raw_x"].to_numpy(), 2),
            np.round(frame["raw_y"].to_numpy(), 2),
        ])

    return ~keys(parent.frame).isin(keys(selected.frame))


def particle_micrographs(ctx: Context, parts: Particles, job_key: str) -> list[MicrographRecord]:
    """Records of the micrographs (or tomograms) a particle table names."""
    paths = parts.mic_uniq
    if paths is None:
        paths = pd.unique(parts.frame["micrograph"].to_numpy(dtype=object))
    if parts.tomograms is not None and parts.is_3d:
        return tomogram_records(ctx, parts.tomograms, parts.mic_px_by_key, paths)
    return micrograph_records(ctx, paths, job_key, parts.mic_px_by_key)


def particle_set_from_star(
    path: str | os.PathLike,
    name: str,
    stage: str,
    project_root: str | os.PathLike,
    recentre: bool | None = None,
    scan: ProjectScan | None = None,
    job_key: str = "",
    tomograms_star: str | os.PathLike | None = None,
) -> tuple[ParticleSetRecord, list[MicrographRecord]]:
    """One particle set from a RELION particles STAR (any version), without a pipeline.

    ``recentre`` defaults to whether ``stage`` recentres (:func:`harvest.conventions.recentres`).
    Coordinates in pixels of the micrographs named by ``rlnMicrographName`` (see module
    docstring); tomogram particles (``rlnTomoName``) in unbinned tilt-series pixels, using
    ``tomograms_star`` (RELION 5 tomograms.star / WarpTools ``*_tomograms.star``) for sizes and
    centred coordinates.
    """
    path = os.fspath(path)
    ctx = Context(scan, os.path.abspath(os.fspath(project_root)))
    if recentre is None:
        recentre = recentres(stage)
    tomos = None if tomograms_star is None else os.fspath(tomograms_star)
    parts = load_particles(ctx, path, job_key, recentre, tomos)
    pset = _set(name, stage, parts.frame, path, parts)
    mics = particle_micrographs(ctx, parts, job_key)
    _check_positions(ctx, [pset], mics)
    for problem in ctx.problems:  # no catalog here to hold them: rows left out are logged
        log.warning("%s", problem)
    return pset, mics


# ---------------------------------------------------------------------------------------------
# the ``particles`` reader
# ---------------------------------------------------------------------------------------------


def _source(ctx: Context, proc: Process, row: RelionJob, jobdir: str) -> str | None:
    """The particle STAR the row names (``row.files[0]``); None for an optional absent one."""
    entry = row.files[0]
    found = expand(jobdir, entry)
    if found:
        return found[0]
    if row.optional:
        declared = f"{proc.key}/{entry}"
        if declared in {o.rstrip("/") for o in proc.outputs}:  # the pipeline lists it: a gap
            ctx.problems.append(Problem(os.path.join(jobdir, entry), (
                f"{proc.jtype} job {proc.key} declares {entry} in the pipeline but the file "
                "is missing; its particles are not harvested")))
        return None
    if entry == LAST_ITERATION:
        raise FileNotFoundError(f"{jobdir}: no {describe(entry)} ({proc.jtype} not finished?)")
    path = os.path.join(jobdir, entry)
    opt = os.path.join(jobdir, OPTIMISATION_SET)
    if OPTIMISATION_SET in row.files and os.path.isfile(opt):
        path = particles_file_from_optimisation_set(ctx, opt) or path
        ctx.files.append(opt)
    return path  # read_star names it when it is missing


def particle_stage(ctx: Context, proc: Process, row: RelionJob,
                   _seen: frozenset = frozenset()) -> str | None:
    """The row's stage; for rows that follow their parents, the most curated of it and the
    parent jobs' stages (each computed the same way, up the pipeline)."""
    stage = row.stage
    if not row.follows_parents or stage is None:
        return stage
    for parent in ctx.parents(proc.key):
        if parent.key in _seen:
            continue
        prow = job_row(parent)
        if prow.stage is None:
            continue
        pstage = particle_stage(ctx, parent, prow, _seen | {proc.key})
        if stage_rank(pstage) > stage_rank(stage):
            stage = pstage
    return stage


def read_particles(ctx: Context, proc: Process, row: RelionJob) -> JobRecord:
    """The ``particles`` reader: the row's particle STAR → its set(s), stage and class ids as the
    row says, recentred where the stage recentres; plus the ``rejected`` set of a parent whose
    particles the job left out (:attr:`RelionJob.rejects_from`)."""
    jobdir = os.path.join(ctx.root, proc.key)
    rec = ctx.job_record(proc)
    path = _source(ctx, proc, row, jobdir)
    if path is None:
        return rec  # e.g. a Select of micrographs or class averages: no particles
    stage = particle_stage(ctx, proc, row)
    tomograms = tomograms_star_for(ctx, proc, jobdir) if row.tomograms else None
    parts = load_particles(ctx, path, proc.key, recentres(stage), tomograms,
                           image_names=row.rejects_from is not None)
    loaded = [parts]
    ctx.files.append(path)
    if row.per_class:
        rec.particle_sets += _class_sets(path, parts, stage)
    else:
        if row.class_ids:
            parts.frame["class_id"] = parts.class_number
        name = row.set_name.format(stem=os.path.basename(path)[: -len(".star")])
        rec.particle_sets.append(_set(name, stage, parts.frame, path, parts))
    if row.rejects_from:
        for parent in ctx.parents(proc.key):
            prow = job_row(parent)
            if prow.kind != row.rejects_from:
                continue
            pdir = os.path.join(ctx.root, parent.key)
            found = expand(pdir, prow.files[0])
            if not found:
                ctx.problems.append(Problem(pdir, (
                    f"parent {parent.jtype} has no {describe(prow.files[0])}; "
                    "rejected particles unknown")))
                continue
            ppath = found[0]
            pparts = load_particles(ctx, ppath, parent.key, recentres(REJECTED_STAGE),
                                    image_names=True)
            loaded.append(pparts)
            ctx.files.append(ppath)
            keep = _rejected_mask(parts, pparts)
            frame = pparts.frame[keep].copy()
            frame["class_id"] = pparts.class_number[keep] if prow.class_ids else NO_CLASS
            rec.particle_sets.append(_set(REJECTED_SET, REJECTED_STAGE, frame, ppath, pparts))
            break
    mics: dict[str, MicrographRecord] = {}
    for one in loaded:
        for m in particle_micrographs(ctx, one, proc.key):
            mics.setdefault(m.path, m)
    rec.micrographs = list(mics.values())
    _check_positions(ctx, rec.particle_sets, rec.micrographs)
    return rec


def _check_positions(ctx: Context, sets: list[ParticleSetRecord],
                     mics: list[MicrographRecord]) -> None:
    """Values at the boundary (:mod:`harvest.validate`): rows whose coordinates are not numbers
    (``abc``, ``nan``, ``inf``) or lie off their micrograph are left out, one Problem per set."""
    sizes = {m.path: (m.nx, m.ny, m.nz) for m in mics}
    for pset in sets:
        ctx.problems += check_particles(pset, sizes)
