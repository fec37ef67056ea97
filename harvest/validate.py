"""Values checked where they enter the catalog: particle positions and micrograph sizes.

The harvest parsers call these at their boundary (they know the file a value came from) and the
catalog writer calls them once more as a last guard, with the sizes the project's micrographs
have in the catalog. Nothing outside its valid range is stored, and nothing is dropped
silently: each check returns at most one :class:`~harvest.records.Problem` per particle set (or
per job, for micrographs) that names the file and the count.

Particles (the rule and its tolerance: :data:`harvest.conventions.EDGE_MARGIN`):

- a row whose stored position (``raw_x``, ``raw_y``, ``raw_z``) is not finite or lies off its
  micrograph by more than the margin is left out (CryoSPARC ``center_x_frac`` NaN, inf, −0.64
  or 1.7; RELION ``abc``/``nan``/``inf`` coordinates);
- a row whose stored position is valid but whose recentred centre (``x``, ``y``, ``z``) is not
  keeps its stored position as centre (a garbage shift or pixel size);
- a score of ±inf becomes NaN (unknown).

Set metadata: a box size that is not an integer in [1, :data:`MAX_SIZE_PX`], a pixel size or
voltage that is not finite and positive, a Cs that is not finite, an amplitude contrast outside
[0, 1] are stored as unknown (one Problem per set naming them).

Micrographs: a size (``nx``, ``ny``, ``nz``) that is not an integer in [1, :data:`MAX_SIZE_PX`],
and a pixel size that is not finite and positive, are stored as unknown (NULL).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from harvest.conventions import EDGE_MARGIN, positions_valid
from harvest.records import MicrographRecord, ParticleSetRecord, Problem

Size = tuple  # (nx, ny) or (nx, ny, nz); None or ≤ 0 entries mean unknown


def _micrograph_codes(frame: pd.DataFrame) -> tuple[np.ndarray, list]:
    col = frame["micrograph"]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(), list(col.cat.categories)
    codes, uniques = pd.factorize(col.to_numpy(dtype=object), sort=False)
    return codes, list(uniques)


def _per_row(sizes: Mapping, paths: list, codes: np.ndarray, axis: int) -> np.ndarray:
    table = np.full(len(paths) + 1, np.nan)
    for i, p in enumerate(paths):
        s = sizes.get(p)
        if s is not None and len(s) > axis and s[axis] is not None:
            table[i] = float(s[axis])
    return table[codes]  # code −1 (no micrograph) reads the NaN at the end


def _all_valid(frame: pd.DataFrame, sizes: Mapping, is_3d: bool) -> bool:
    """True when every row passes for sure: all values finite and inside the margin of the
    smallest known micrograph (a row's own micrograph is at least as large, or of unknown size,
    where only finiteness counts)."""
    smallest = []
    for axis in range(3 if is_3d else 2):
        known = [float(s[axis]) for s in sizes.values()
                 if s is not None and len(s) > axis and s[axis] is not None and s[axis] > 0]
        smallest.append(min(known) if known else np.inf)
    axes = ("x", "y", "z")
    for i, n in enumerate(smallest):
        for c in (axes[i], "raw_" + axes[i]):
            if c not in frame.columns:
                continue
            v = frame[c].to_numpy(np.float64)
            lo, hi = (-np.inf, np.inf) if np.isinf(n) else (-EDGE_MARGIN * n,
                                                             (1 + EDGE_MARGIN) * n)
            if not (np.isfinite(v).all() and v.min() >= lo and v.max() <= hi):
                return False
    return "score" not in frame.columns or not np.isinf(frame["score"].to_numpy(np.float64)).any()


def check_particles(pset: ParticleSetRecord, sizes: Mapping, source: str | None = None,
                    factorized: tuple[np.ndarray, list] | None = None,
                    row_files: np.ndarray | None = None) -> list[Problem]:
    """Apply the module's particle rules to ``pset.particles`` in place; ``sizes``: micrograph
    path (as the frame names it) → (nx, ny[, nz]) in px. Returns one Problem naming ``source``
    (default: the set's source file) and the counts, or none when every row is valid.
    ``factorized``: (code per row, distinct paths) when the caller has them; ``row_files``: the
    file each row was read from (per-micrograph pick files), the Problem then names the file of
    the first row left out."""
    frame = pset.particles
    n = len(frame)
    if n == 0 or "raw_x" not in frame.columns:
        return []
    if _all_valid(frame, sizes, pset.is_3d):
        return []  # the usual case, decided without factorising 10^6 micrograph names
    codes, paths = factorized if factorized is not None else _micrograph_codes(frame)
    nx, ny = _per_row(sizes, paths, codes, 0), _per_row(sizes, paths, codes, 1)
    has_z = "raw_z" in frame.columns and pset.is_3d
    nz = _per_row(sizes, paths, codes, 2) if has_z else None

    def cols(names):
        return [frame[c].to_numpy(np.float64) for c in names if c in frame.columns]

    raw = cols(("raw_x", "raw_y", "raw_z") if has_z else ("raw_x", "raw_y"))
    keep = positions_valid(*raw[:2], nx, ny, *(raw[2:3] or [None]), nz)
    centre = cols(("x", "y", "z") if has_z else ("x", "y"))
    moved = keep & ~positions_valid(*centre[:2], nx, ny, *(centre[2:3] or [None]), nz)
    score = frame["score"].to_numpy(np.float64) if "score" in frame.columns else None
    infinite = 0 if score is None else int(np.isinf(score).sum())
    dropped = int(n - keep.sum())
    if not (dropped or moved.any() or infinite):
        return []
    frame = frame.copy()
    if moved.any():
        for c, r in zip(("x", "y", "z"), ("raw_x", "raw_y", "raw_z")):
            if c in frame.columns and r in frame.columns:
                frame[c] = np.where(moved, frame[r].to_numpy(np.float64),
                                    frame[c].to_numpy(np.float64))
    if infinite:
        frame["score"] = np.where(np.isinf(score), np.nan, score)
    parts = []
    if dropped:
        i = int(np.flatnonzero(~keep)[0])
        where = f"x={raw[0][i]:g}, y={raw[1][i]:g}" + (f", z={raw[2][i]:g}" if has_z else "")
        size = "size unknown" if not np.isfinite(nx[i]) else f"{nx[i]:.0f}x{ny[i]:.0f} px"
        mic = paths[codes[i]] if codes[i] >= 0 else "?"
        files = 1
        if row_files is not None:  # the Problem's path names the file of the first one
            source = str(row_files[i])
            files = len(pd.unique(np.asarray(row_files, dtype=object)[~keep]))
        parts.append(
            f"{dropped} of {n} particles of set '{pset.name}' have a position that is not finite "
            f"or lies more than {EDGE_MARGIN:.0%} of the micrograph's size outside it "
            f"(e.g. {where} on {mic}, {size}"
            + (f"; such rows are in {files} files" if files > 1 else "") + "); left out")
        frame = frame[keep]
    if moved.any():
        parts.append(f"{int(moved.sum())} recentred centres of set '{pset.name}' are not finite "
                     "or lie off their micrograph (shift or pixel size wrong); their stored "
                     "positions are kept")
    if infinite:
        parts.append(f"{infinite} infinite scores of set '{pset.name}' stored as unknown")
    pset.particles = frame.reset_index(drop=True)
    return [Problem(source or pset.source_file, "; ".join(parts))]


# Largest micrograph/tomogram side taken as real, in px (detectors are ~12k px; a header or a
# metadata field beyond this is garbage, e.g. an unsigned −1).
MAX_SIZE_PX = 1_000_000


def _size(v) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if np.isfinite(f) and 1 <= f <= MAX_SIZE_PX and f == int(f) else None


def check_micrographs(records: list[MicrographRecord], job_key: str) -> list[Problem]:
    """Sizes and pixel sizes of ``records`` outside their range set to None (unknown), in place;
    one Problem naming the first such micrograph and the count."""
    bad = []
    for m in records:
        wrong = []
        for attr in ("nx", "ny", "nz"):
            v = getattr(m, attr)
            if v is not None and _size(v) is None:
                wrong.append(f"{attr}={v}")
        if wrong:
            m.nx = m.ny = m.nz = None
            m.size_source = None
        if m.pixel_size is not None and not (np.isfinite(m.pixel_size) and m.pixel_size > 0):
            wrong.append(f"pixel size {m.pixel_size}")
            m.pixel_size = None
        if wrong:
            bad.append((m, wrong))
    if not bad:
        return []
    m, wrong = bad[0]
    return [Problem(m.abs_path or m.path, (
        f"{len(bad)} micrographs of {job_key} have sizes or pixel sizes out of range (e.g. "
        f"{', '.join(wrong)}); stored as unknown"))]


def check_set_metadata(pset: ParticleSetRecord) -> list[Problem]:
    """The set's box size, pixel size, voltage, Cs and amplitude contrast outside their range set
    to None (unknown), in place; one Problem naming them."""
    rules = {
        "box_size": lambda v: _size(v) is not None,
        "image_pixel_size": lambda v: np.isfinite(v) and v > 0,
        "voltage": lambda v: np.isfinite(v) and v > 0,
        "cs": lambda v: np.isfinite(v),
        "amp_contrast": lambda v: np.isfinite(v) and 0 <= v <= 1,
    }
    wrong = []
    for attr, ok in rules.items():
        v = getattr(pset, attr)
        if v is None:
            continue
        try:
            good = bool(ok(float(v)))
        except (TypeError, ValueError):
            good = False
        if not good:
            wrong.append(f"{attr}={v}")
            setattr(pset, attr, None)
    if not wrong:
        return []
    return [Problem(pset.source_file, f"set '{pset.name}': {', '.join(wrong)} out of range; "
                    "stored as unknown")]
