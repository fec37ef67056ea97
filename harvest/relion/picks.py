"""The ``picks`` reader: ManualPick / AutoPick per-micrograph coordinate files → one set.

The micrographs and their coordinate files come from the job's index (RELION 4/5
``autopick.star`` / ``manualpick.star``: micrograph → coordinate file; listed files must exist),
else (3.x) from ``coords_suffix_<suffix>.star``, which names the micrographs STAR the picker read:
coordinates are then ``<job>/<micrograph path after its job dir>_<suffix>.star``, and a
micrograph without a file had no picks.

Coordinates that are not numbers (``abc``, ``nan``, ``inf``) or lie off their micrograph
(tolerance :data:`harvest.conventions.EDGE_MARGIN`) are left out and counted in one Problem for
the set, naming the coordinate file (:mod:`harvest.validate`).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from harvest import fsguard
from harvest.conventions import missing_to_nan
from harvest.records import JobRecord, ParticleSetRecord, Problem, empty_particles
from harvest.relion.context import Context
from harvest.relion.jobs import RelionJob, expand
from harvest.relion.micrographs import ctf_pixel_sizes, micrograph_records
from harvest.relion.pipeline import Process
from harvest.relion.tables import STRING_LABELS, col, fingerprint, read_table
from harvest.starread import StarFormatError, read_star
from harvest.validate import check_particles

_JOB_RE = re.compile(r"^(?:.*?/)?job\d+/(.*)$")


def _coords_file(jobdir: str, mic: str, suffix: str) -> str:
    """``<jobdir>/<path of mic after its job dir, no extension>_<suffix>.star`` (RELION 3.x)."""
    m = _JOB_RE.match(mic)
    rest = m.group(1) if m else mic.lstrip("/")
    stem = os.path.splitext(rest)[0]
    return os.path.join(jobdir, f"{stem}_{suffix}.star")


def _pick_list(ctx: Context, proc: Process, row: RelionJob) -> tuple[list[tuple[str, str]], bool]:
    """(micrograph as written, coordinate file abs path) pairs of a pick job, and whether the
    list came from a 4/5 index (listed files must exist)."""
    jobdir = os.path.join(ctx.root, proc.key)
    for index in (e for e in row.files if "*" not in e):
        p = os.path.join(jobdir, index)
        if os.path.isfile(p):
            ctx.files.append(p)
            table, _ = read_table(p, ("coordinate_files",), "rlnMicrographCoordinates", None)
            pairs = [
                (str(m), ctx.abs(str(c)))
                for m, c in zip(table["rlnMicrographName"], table["rlnMicrographCoordinates"])
            ]
            return pairs, True
    # RELION 3.x: coords_suffix_<suffix>.star names the micrographs STAR the picker read
    suffix_files = [p for e in row.files if "*" in e for p in expand(jobdir, e)]
    if not suffix_files:
        raise FileNotFoundError(
            f"{jobdir}: no {', '.join(row.files[:-1])} or {row.files[-1]}; "
            "is the pick job complete?"
        )
    suffix_path = suffix_files[0]
    ctx.files.append(suffix_path)
    suffix = os.path.basename(suffix_path)[len("coords_suffix_"):-len(".star")]
    mic_star = None
    try:
        with fsguard.open_file(suffix_path, "r", errors="replace") as fh:
            text = fh.read(4096).strip()
    except OSError:
        text = ""
    if text and "\n" not in text and os.path.isfile(ctx.abs(text)):
        mic_star = ctx.abs(text)
    if mic_star is None:  # fall back on the job's micrographs input node
        for node in proc.inputs:
            if node.endswith(".star") and os.path.isfile(ctx.abs(node)):
                mic_star = ctx.abs(node)
                break
    if mic_star is None:
        raise FileNotFoundError(
            f"{suffix_path}: cannot find the micrographs STAR the pick job read "
            "(this file names none that exists); no input node of the job exists either"
        )
    ctx.files.append(mic_star)
    table, _ = read_table(mic_star, ("micrographs", "images", ""), "rlnMicrographName",
                          ("rlnMicrographName",))
    mics = table["rlnMicrographName"].astype(str).tolist()
    return [(m, _coords_file(jobdir, m, suffix)) for m in mics], False


def _read_coords(path: str) -> pd.DataFrame:
    blocks = read_star(path, parse_as_string=STRING_LABELS)
    for b in blocks.values():
        if isinstance(b, pd.DataFrame) and "rlnCoordinateX" in b.columns:
            return b
    for b in blocks.values():
        if isinstance(b, pd.DataFrame) and len(b) == 0:
            return b
    raise StarFormatError(f"{path}: no loop with rlnCoordinateX (not a coordinate file)")


def read_picks(ctx: Context, proc: Process, row: RelionJob) -> JobRecord:
    """The ``picks`` reader: one set ``row.set_name`` of stage ``row.stage`` (raw = x/y: picks
    carry no shifts), scores from ``rlnAutopickFigureOfMerit`` (−999 → NaN)."""
    pairs, indexed = _pick_list(ctx, proc, row)
    frames = []
    files = []  # the coordinate file of each frame (named when its rows are left out)
    picked_mics = []
    missing = []
    for mic, cpath in pairs:
        if not os.path.lexists(cpath):  # a FIFO or folder is no missing file: read_star says
            # RELION 4/5 index every file; 3.x AutoPick writes one per micrograph (ManualPick
            # only where something was picked)
            if indexed or proc.jtype == "AutoPick":
                missing.append(cpath)
            continue
        ctx.files.append(cpath)
        try:
            t = _read_coords(cpath)
        except (ValueError, OSError) as exc:
            ctx.problems.append(Problem(cpath, str(exc)))
            continue
        picked_mics.append(mic)
        if len(t) == 0:
            continue
        score = missing_to_nan(col(t, "rlnAutopickFigureOfMerit"))
        xs, ys = col(t, "rlnCoordinateX"), col(t, "rlnCoordinateY")
        frames.append(pd.DataFrame({
            "micrograph": np.full(len(t), mic, dtype=object), "x": xs, "y": ys,
            "raw_x": xs.copy(), "raw_y": ys.copy(), "score": score,
            "class_id": np.full(len(t), -1, dtype=np.int64),
            "uid": np.arange(len(t), dtype=np.int64),
        }))
        files.append(np.full(len(t), cpath, dtype=object))
    if missing:
        listed = "listed by" if indexed else "expected from"
        ctx.problems.append(Problem(missing[0], (
            f"{len(missing)} coordinate files {listed} {proc.key} are missing, their picks "
            f"lost (e.g. {missing[0]})")))
    frame = pd.concat(frames, ignore_index=True) if frames else empty_particles()
    if len(frame):
        frame["uid"] = np.arange(len(frame), dtype=np.int64)
    rec = ctx.job_record(proc)
    index = next((f for f in ctx.files if f.endswith(".star")), os.path.join(ctx.root, proc.key))
    pset = ParticleSetRecord(
        name=row.set_name, stage=row.stage, particles=frame, source_file=index,
        fingerprint=fingerprint(index), sparse=row.sparse,
    )
    rec.particle_sets.append(pset)
    px = ctf_pixel_sizes(ctx, proc.key) if ctx.scan is not None else {}
    rec.micrographs = micrograph_records(ctx, picked_mics, proc.key, px)
    # values at the boundary (harvest.validate): coordinates that are no numbers (abc, nan,
    # inf) or lie off their micrograph are left out, counted in one Problem for the set
    sizes = {m.path: (m.nx, m.ny) for m in rec.micrographs}
    ctx.problems += check_particles(
        pset, sizes, row_files=np.concatenate(files) if files else None)
    return rec
