"""Micrographs of a RELION project: records (size from the MRC header, else from metadata:
:func:`metadata_sizes`), pixel sizes from
micrographs STAR files, and the ``micrographs`` reader (MotionCorr / CtfFind outputs: CTF fit,
total motion, pixel size).

Micrograph pixel size from a micrographs STAR: 3.1+ its optics group's
``rlnMicrographPixelSize``; 3.0 ``rlnDetectorPixelSize × 1e4 / rlnMagnification``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from harvest import fsguard
from harvest.conventions import micrograph_key, relion30_pixel_size
from harvest.records import JobRecord, MicrographRecord, Problem
from harvest.relion.context import Context
from harvest.relion.jobs import RelionJob
from harvest.relion.pipeline import Process
from harvest.relion.tables import col, optics_values, read_table
from harvest.starread import read_star

MICROGRAPH_LABELS = (
    "rlnMicrographName", "rlnOpticsGroup", "rlnMagnification", "rlnDetectorPixelSize",
    "rlnMicrographPixelSize",
)
# record attribute ← label of a micrographs STAR
MICROGRAPH_FIELDS = (
    ("defocus_u", "rlnDefocusU"), ("defocus_v", "rlnDefocusV"),
    ("defocus_angle", "rlnDefocusAngle"), ("ctf_max_res", "rlnCtfMaxResolution"),
    ("ctf_fom", "rlnCtfFigureOfMerit"), ("total_motion", "rlnAccumMotionTotal"),
)


def micrograph_records(
    ctx: Context,
    paths: Iterable[str],
    job_key: str,
    pixel_size: dict[str, float] | None = None,
    extra: pd.DataFrame | None = None,
    sizes: dict[str, tuple[int, int]] | None = None,
) -> list[MicrographRecord]:
    """One record per distinct path; nx/ny from the MRC header when the file exists
    (``size_source`` header), else from ``sizes`` (path → (nx, ny) from metadata, ``size_source``
    metadata); one Problem per job naming the missing files. ``extra``: per-path columns
    (index = path) copied in."""
    records = []
    missing = []
    unsized = 0
    sizes = sizes or {}
    px_by_key = pixel_size or {}
    extra_rows = extra.to_dict("index") if extra is not None and len(extra) else {}
    for path in dict.fromkeys(paths):
        abs_path = ctx.abs(path)
        if not fsguard.inside(abs_path):
            continue  # named outside the crawl roots: the crawl drops its particles, one Problem
        key = micrograph_key(path)
        rec = MicrographRecord(path=path, abs_path=abs_path, key=key)
        shape = ctx.mrc_shape(abs_path)
        if shape is None:
            missing.append(path)
            size = sizes[path] if path in sizes else motion_sizes(ctx).get(key)
            if size is not None:
                (rec.nx, rec.ny), rec.size_source = size, "metadata"
            else:
                unsized += 1
        else:
            rec.nx, rec.ny, rec.size_source = shape[0], shape[1], "header"
        px = px_by_key.get(key)
        if px is not None and np.isfinite(px):
            rec.pixel_size = float(px)
        for k, v in extra_rows.get(path, {}).items():
            if v is not None and not (isinstance(v, float) and np.isnan(v)):
                setattr(rec, k, v.item() if hasattr(v, "item") else v)
        records.append(rec)
    if missing:
        # a refused header (harvest.imageio.mrc_header_size) is the example: its reason is shown
        example = next((m for m in missing if ctx.abs(m) in ctx.mrc_refused), missing[0])
        why = ctx.mrc_refused.get(ctx.abs(example))
        ctx.problems.append(
            Problem(
                ctx.abs(example),
                f"{len(missing)} of {len(records)} micrographs referenced by {job_key} are "
                f"missing or unreadable (e.g. {example}{': ' + why if why else ''}); "
                + (f"the size of {unsized} is unknown" if unsized else
                   "their sizes come from metadata"),
            )
        )
    return records


def metadata_sizes(ctx: Context, table: pd.DataFrame, only) -> dict[str, tuple[int, int]]:
    """Micrograph path → (nx, ny) from metadata, for the paths in ``only`` (those whose image
    file cannot be read): the micrographs STAR's own ``rlnImageSizeX/Y`` columns where present,
    else the ``data_general`` block of the micrograph's ``rlnMicrographMetadata`` STAR (RELION's
    motion correction writes one per micrograph: ``rlnImageSizeX/Y`` of the movie, binned by
    ``rlnMicrographBinning`` into the micrograph)."""
    only = set(only)
    if not only:
        return {}
    names = table["rlnMicrographName"].astype(str).tolist()
    out: dict[str, tuple[int, int]] = {}
    if "rlnImageSizeX" in table.columns and "rlnImageSizeY" in table.columns:
        for name, nx, ny in zip(names, col(table, "rlnImageSizeX"), col(table, "rlnImageSizeY")):
            if name in only and np.isfinite(nx) and np.isfinite(ny) and nx > 0 and ny > 0:
                out[name] = (int(round(nx)), int(round(ny)))
    if "rlnMicrographMetadata" in table.columns:
        for name, meta in zip(names, table["rlnMicrographMetadata"].astype(str)):
            if name not in only or name in out or meta in ("", "None"):
                continue
            size = _motion_metadata_size(ctx.abs(meta))
            if size is not None:
                out[name] = size
                ctx.files.append(ctx.abs(meta))
    return out


def motion_sizes(ctx: Context) -> dict[str, tuple[int, int]]:
    """Micrograph key → (nx, ny) from the motion metadata of the project's MotionCorr jobs, for
    micrographs whose file cannot be read (computed once per scan, on the first such file)."""
    scan = ctx.scan
    if scan is None:
        return {}
    if "motion_sizes" not in scan.extra:
        found: dict[str, tuple[int, int]] = {}
        for job in (j for j in scan.jobs if j.kind == "motion"):
            path = os.path.join(scan.root, job.key, "corrected_micrographs.star")
            try:
                table, _ = read_table(path, ("micrographs", "images", ""), "rlnMicrographName",
                                      None)
            except (OSError, ValueError):
                continue
            names = table["rlnMicrographName"].astype(str)
            unreadable = [m for m in names if ctx.mrc_shape(ctx.abs(m)) is None]
            for name, size in metadata_sizes(ctx, table, unreadable).items():
                found.setdefault(micrograph_key(name), size)
        scan.extra["motion_sizes"] = found
    return scan.extra["motion_sizes"]


def _motion_metadata_size(path: str) -> tuple[int, int] | None:
    """(nx, ny) of the motion-corrected micrograph from its motion metadata STAR, or None."""
    if not os.path.isfile(path):
        return None
    try:
        general = read_star(path).get("general")
    except (OSError, ValueError):
        return None
    if not isinstance(general, dict):
        return None
    try:
        nx, ny = float(general["rlnImageSizeX"]), float(general["rlnImageSizeY"])
        binning = float(general.get("rlnMicrographBinning", 1.0) or 1.0)
    except (KeyError, TypeError, ValueError):
        return None
    if not (nx > 0 and ny > 0 and binning > 0):
        return None
    return int(round(nx / binning)), int(round(ny / binning))


def _pixel_sizes(table: pd.DataFrame, optics: pd.DataFrame | None) -> np.ndarray:
    px = optics_values(table, optics, "rlnMicrographPixelSize")
    if "rlnMagnification" in table.columns and "rlnDetectorPixelSize" in table.columns:
        p30 = relion30_pixel_size(col(table, "rlnDetectorPixelSize"), col(table, "rlnMagnification"))
        px = np.where(np.isfinite(px), px, p30)
    return px


def pixel_sizes_from_star(path: str) -> dict[str, float]:
    """micrograph key → pixel size (Å) from a micrographs STAR (CtfFind/MotionCorr output)."""
    table, optics = read_table(path, ("micrographs", "images", ""), "rlnMicrographName",
                               MICROGRAPH_LABELS)
    px = optics_values(table, optics, "rlnMicrographPixelSize")
    if "rlnMicrographPixelSize" in table.columns:
        px = np.where(np.isfinite(px), px, col(table, "rlnMicrographPixelSize"))
    if "rlnMagnification" in table.columns and "rlnDetectorPixelSize" in table.columns:
        p30 = relion30_pixel_size(col(table, "rlnDetectorPixelSize"), col(table, "rlnMagnification"))
        px = np.where(np.isfinite(px), px, p30)
    keys = [micrograph_key(m) for m in table["rlnMicrographName"].astype(str)]
    return {k: float(v) for k, v in zip(keys, px) if np.isfinite(v)}


def ctf_pixel_sizes(ctx: Context, job_key: str) -> dict[str, float]:
    """Micrograph key → pixel size from CtfFind jobs upstream of ``job_key`` (else any)."""
    if ctx.mic_px is not None:
        return ctx.mic_px
    scan = ctx.scan
    result: dict[str, float] = {}
    if scan is not None:
        ctf_jobs = [j.key for j in scan.jobs if j.kind == "ctf"]
        upstream = set(ctx.ancestors(job_key))
        ordered = [k for k in ctf_jobs if k in upstream] or ctf_jobs
        for k in ordered:
            path = os.path.join(scan.root, k, "micrographs_ctf.star")
            if path not in ctx.ctf_cache:
                try:
                    ctx.ctf_cache[path] = pixel_sizes_from_star(path)
                except (OSError, ValueError):
                    ctx.ctf_cache[path] = {}
            for mk, v in ctx.ctf_cache[path].items():
                result.setdefault(mk, v)
    ctx.mic_px = result
    return result


def read_micrographs(ctx: Context, proc: Process, row: RelionJob) -> JobRecord:
    """The ``micrographs`` reader: the micrographs STAR ``row.files[0]`` → micrograph records
    with pixel size, CTF fit and total motion where the file has them."""
    rec = ctx.job_record(proc)
    path = os.path.join(ctx.root, proc.key, row.files[0])
    table, optics = read_table(path, ("micrographs", "images", ""), "rlnMicrographName", None)
    ctx.files.append(path)
    mics = table["rlnMicrographName"].astype(str).tolist()
    px = _pixel_sizes(table, optics)
    extra = pd.DataFrame(index=pd.Index(mics))
    for attr, label in MICROGRAPH_FIELDS:
        if label in table.columns:
            extra[attr] = col(table, label)
    extra = extra[~extra.index.duplicated()]
    px_by_key = {micrograph_key(m): float(v) for m, v in zip(mics, px) if np.isfinite(v)}
    unreadable = [m for m in dict.fromkeys(mics) if ctx.mrc_shape(ctx.abs(m)) is None]
    rec.micrographs = micrograph_records(ctx, mics, proc.key, px_by_key,
                                         extra if len(extra.columns) else None,
                                         sizes=metadata_sizes(ctx, table, unreadable))
    return rec
