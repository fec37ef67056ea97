"""Tomogram particles (RELION 4/5, WarpTools): tomograms.star lookup, positions, records.

Particles with ``rlnTomoName`` become 3D sets (``z``, ``raw_z``); ``micrograph`` is the
tomogram name. Positions start in unbinned tilt-series pixels (RELION 4 ``rlnCoordinateX/Y/Z``;
RELION 5 ``px = rlnCenteredCoordinateXAngst / rlnTomoTiltSeriesPixelSize + rlnTomoSizeX / 2``,
[relion] 5.0.1 ``particle_set.cpp``, which needs tomograms.star). Where tomograms.star names a
reconstructed tomogram (``rlnTomoReconstructedTomogram``, or only the denoised or half
tomograms: :data:`RECONSTRUCTION_LABELS`, the first whose file exists) they are divided by
``rlnTomoTomogramBinning``: voxels of that file (DESIGN.md frame), whose header gives
``nx/ny/nz`` (else ``rlnTomoSize / binning``) and which becomes the record's ``abs_path`` (so the
record names the reconstruction used); pixel size = tilt-series px × binning.
Otherwise (e.g. WarpTools exports) they stay in unbinned tilt-series pixels with
``nx/ny/nz = rlnTomoSizeX/Y/Z``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from harvest.conventions import micrograph_key
from harvest.records import MicrographRecord
from harvest.relion.context import Context
from harvest.relion.jobs import OPTIMISATION_SET
from harvest.relion.pipeline import Process
from harvest.relion.tables import STRING_LABELS, col, optics_values, read_table
from harvest.starread import StarFormatError, read_star


def tomogram_table(path: str | None) -> pd.DataFrame | None:
    """The global table of a tomograms.star (None when there is no such file)."""
    if not path or not os.path.isfile(path):
        return None
    table, _ = read_table(path, ("global",), "rlnTomoName", None)
    return table


def _set_value(block, label: str):
    """A value of an optimisation set: a key-value block (C++ programs) or the first row of a
    one-row loop (RELION 5's Python picker writes ``data_optimisation_set`` as a loop)."""
    if isinstance(block, dict):
        return block.get(label)
    if isinstance(block, pd.DataFrame) and label in block.columns and len(block):
        return block[label].iloc[0]
    return None


def tomograms_star_for(ctx: Context, proc: Process, jobdir: str) -> str | None:
    """The tomograms.star that describes a job's tomograms: named by its optimisation set, an
    input node, or the nearest upstream job that wrote one; None if there is none."""
    opt = os.path.join(jobdir, OPTIMISATION_SET)
    if os.path.isfile(opt):
        data = read_star(opt, parse_as_string=STRING_LABELS)
        for block in data.values():
            val = _set_value(block, "rlnTomoTomogramsFile")
            if val:
                return ctx.abs(str(val))
    for node in proc.inputs:
        if node.endswith("tomograms.star") and os.path.isfile(ctx.abs(node)):
            return ctx.abs(node)
    for k in ctx.ancestors(proc.key):
        p = os.path.join(ctx.root, k, "tomograms.star")
        if os.path.isfile(p):
            return p
    return None


def particles_file_from_optimisation_set(ctx: Context, opt: str) -> str | None:
    """``rlnTomoParticlesFile`` of an optimisation set (absolute), None if it names none."""
    path = None
    data = read_star(opt, parse_as_string=STRING_LABELS)
    for block in data.values():
        if _set_value(block, "rlnTomoParticlesFile"):
            path = ctx.abs(str(_set_value(block, "rlnTomoParticlesFile")))
    return path


# Reconstructions tomograms.star may name, in order of preference: the full tomogram, the
# denoised one, the half tomograms (RELION 5 writes only the halves when asked to, and
# DenoiseTomo adds the denoised one). All share rlnTomoTomogramBinning and rlnTomoSize / binning.
RECONSTRUCTION_LABELS: tuple[str, ...] = (
    "rlnTomoReconstructedTomogram", "rlnTomoReconstructedTomogramDenoised",
    "rlnTomoReconstructedTomogramHalf1", "rlnTomoReconstructedTomogramHalf2",
)


def _named(value) -> bool:
    return isinstance(value, str) and value not in ("", "None", "nan")


def tomogram_reconstructions(tomos: pd.DataFrame | None, exists=None) -> dict[str, tuple[str, str]]:
    """Tomogram name → (label, file as written) of the reconstruction its particles are placed
    in: the first of :data:`RECONSTRUCTION_LABELS` whose file exists (``exists(path)``), else the
    first named at all (its binning still applies: picks are made on binned tomograms)."""
    if tomos is None:
        return {}
    labels = [lab for lab in RECONSTRUCTION_LABELS if lab in tomos.columns]
    out: dict[str, tuple[str, str]] = {}
    for i, name in enumerate(tomos["rlnTomoName"].astype(str)):
        named = [(lab, str(tomos[lab].iloc[i])) for lab in labels if _named(tomos[lab].iloc[i])]
        if not named:
            continue
        there = [n for n in named if exists is not None and exists(n[1])]
        out.setdefault(name, (there or named)[0])
    return out


def tomogram_binning(tomos: pd.DataFrame | None) -> dict[str, float]:
    """Tomogram name → binning of its reconstructed tomogram file, for tomograms whose file is
    named in tomograms.star (any of :data:`RECONSTRUCTION_LABELS`); their particles are placed in
    voxels of that file (DESIGN.md: pixels of the file the coordinates refer to)."""
    named = tomogram_reconstructions(tomos)
    if not named:
        return {}
    binning = col(tomos, "rlnTomoTomogramBinning", 1.0)
    binning = np.where(np.isfinite(binning) & (binning > 0), binning, 1.0)
    return {str(name): float(b) for name, b in zip(tomos["rlnTomoName"], binning)
            if str(name) in named}


def tomo_coordinates(path, table, tomos, optics):
    """Tomogram particle positions and the pixel size of their frame (Å).

    Unbinned tilt-series pixels (RELION 4 ``rlnCoordinateX``; RELION 5 ``centred Å / tilt-series
    px + rlnTomoSize / 2``), then divided by ``rlnTomoTomogramBinning`` for tomograms whose
    reconstructed file tomograms.star names, so that they are voxels of that file."""
    n = len(table)
    names = table["rlnTomoName"].astype(str)
    ts_px = np.full(n, np.nan)
    size = {a: np.full(n, np.nan) for a in "XYZ"}
    if tomos is not None and "rlnTomoName" in tomos.columns:
        t = tomos.drop_duplicates("rlnTomoName")
        t = t.set_index(t["rlnTomoName"].astype(str))
        if "rlnTomoTiltSeriesPixelSize" in t.columns:
            ts_px = pd.to_numeric(t["rlnTomoTiltSeriesPixelSize"]).reindex(names).to_numpy(
                dtype=np.float64)
        for a in "XYZ":
            if f"rlnTomoSize{a}" in t.columns:
                size[a] = pd.to_numeric(t[f"rlnTomoSize{a}"]).reindex(names).to_numpy(
                    dtype=np.float64)
    if not np.all(np.isfinite(ts_px)):
        ts_px = np.where(np.isfinite(ts_px), ts_px,
                         optics_values(table, optics, "rlnTomoTiltSeriesPixelSize"))
    if "rlnCenteredCoordinateXAngst" in table.columns:
        if tomos is None:
            raise StarFormatError(
                f"{path}: RELION 5 centred coordinates (rlnCenteredCoordinateXAngst) need the "
                "tomograms.star of the project (rlnTomoSizeX/Y/Z); none found"
            )
        coords = [
            col(table, f"rlnCenteredCoordinate{a}Angst") / ts_px + size[a] / 2 for a in "XYZ"
        ]
    else:
        coords = [col(table, f"rlnCoordinate{a}") for a in "XYZ"]
    binning = tomogram_binning(tomos)
    if binning:
        b = names.map(binning).fillna(1.0).to_numpy(dtype=np.float64)
        coords = [c / b for c in coords]
        ts_px = ts_px * b
    return coords[0], coords[1], coords[2], ts_px


def tomogram_records(ctx: Context, tomos: pd.DataFrame, px_by_key: dict[str, float],
                     paths) -> list[MicrographRecord]:
    """Records for the tomograms named by rlnTomoName: the reconstructed file (its header gives
    nx/ny/nz) when tomograms.star names one, else the unbinned sizes rlnTomoSizeX/Y/Z."""
    names = tomos["rlnTomoName"].astype(str).tolist()
    row = {name: i for i, name in enumerate(names)}
    sizes = {a: col(tomos, f"rlnTomoSize{a}") for a in "XYZ"}
    binning = tomogram_binning(tomos)
    files = tomogram_reconstructions(tomos, exists=lambda f: os.path.isfile(ctx.abs(f)))
    recs = []
    for p in paths:
        rec = MicrographRecord(path=p, abs_path=ctx.abs(p), key=micrograph_key(p))
        i = row.get(p)
        b = binning.get(p, 1.0)
        if i is not None:
            for attr, a in (("nx", "X"), ("ny", "Y"), ("nz", "Z")):
                if np.isfinite(sizes[a][i]):
                    setattr(rec, attr, int(round(sizes[a][i] / b)))
                    rec.size_source = "metadata"
            if p in files:  # the reconstruction used (full, denoised or half) is the file
                rec.abs_path = ctx.abs(files[p][1])
                shape = ctx.mrc_shape(rec.abs_path)
                if shape is not None:
                    rec.nx, rec.ny, rec.nz = shape
                    rec.size_source = "header"
        rec.pixel_size = px_by_key.get(rec.key)
        recs.append(rec)
    return recs
