"""Micrographs of a RELION project: records (size from the MRC header), pixel sizes from
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

from harvest.conventions import micrograph_key, relion30_pixel_size
from harvest.records import JobRecord, MicrographRecord, Problem
from harvest.relion.context import Context
from harvest.relion.jobs import RelionJob
from harvest.relion.pipeline import Process
from harvest.relion.tables import col, optics_values, read_table

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
) -> list[MicrographRecord]:
    """One record per distinct path; nx/ny from the MRC header when the file exists; one Problem
    per job naming the missing ones. ``extra``: per-path columns (index = path) copied in."""
    records = []
    missing = []
    px_by_key = pixel_size or {}
    extra_rows = extra.to_dict("index") if extra is not None and len(extra) else {}
    for path in dict.fromkeys(paths):
        abs_path = ctx.abs(path)
        key = micrograph_key(path)
        rec = MicrographRecord(path=path, abs_path=abs_path, key=key)
        shape = ctx.mrc_shape(abs_path)
        if shape is None:
            missing.append(path)
        else:
            rec.nx, rec.ny = shape[0], shape[1]
        px = px_by_key.get(key)
        if px is not None and np.isfinite(px):
            rec.pixel_size = float(px)
        for k, v in extra_rows.get(path, {}).items():
            if v is not None and not (isinstance(v, float) and np.isnan(v)):
                setattr(rec, k, v.item() if hasattr(v, "item") else v)
        records.append(rec)
    if missing:
        ctx.problems.append(
            Problem(
                ctx.abs(missing[0]),
                f"{len(missing)} of {len(records)} micrographs referenced by {job_key} are "
                f"missing or unreadable (e.g. {missing[0]}); their size is unknown",
            )
        )
    return records


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
    rec.micrographs = micrograph_records(ctx, mics, proc.key, px_by_key,
                                         extra if len(extra.columns) else None)
    return rec
