"""IMOD ``model2point`` text (formats.md §10): one point per line, ``x y z`` (floats since IMOD
4.10.35); with ``-object``/``-contour`` the object and contour numbers come first
(``object contour x y z``). One file per tomogram; micrograph = file stem.

Coordinates are written as the pivot holds them (voxels, x = column, y = row, z = section of the
``mrcfile`` array). Whether model2point's numbers are 0- or 1-based with a half-voxel offset is
not verified (formats.md §13), so no offset is applied either way. Three columns are read as
x y z; ``order=`` (cet_pick's xzy/xyz/zxy) maps them otherwise.

Export layout (``LAYOUT``, the generic one): ``{train,val}/images/<stem>.mrc`` (linked
tomograms), ``{train,val}/labels/<stem>.txt`` (``z = 0`` for 2D micrographs), negatives in
``{train,val}/labels_negative/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.layout import Layout

from . import _text
from ._common import (
    FormatError,
    check_picks,
    column,
    numeric_rows,
    picks_frame,
    read_text,
    write_per_micrograph,
)

CAPABILITIES = frozenset({"3d", "per_micrograph", "read", "write"})
EXTENSIONS = (".txt", ".coords")
LAYOUT = Layout()


def looks_like(lines: list[str]) -> bool:
    rows = [s.split() for s in lines if s.strip()]
    if not rows or any(len(t) not in (3, 4, 5) for t in rows):
        return False
    try:
        [float(v) for t in rows for v in t]
    except ValueError:
        return False
    return True


def read(path, order: str = "xyz", **_):
    from .cetpick import axes_from_columns

    path = Path(path)
    lines = [(i, s) for i, s in enumerate(read_text(path).splitlines(), 1) if s.strip()]
    rows = numeric_rows(path, lines, 3, "x y z")
    if rows.shape[1] > 5:
        raise FormatError(path, f"expected 3 to 5 columns, found {rows.shape[1]}", lines[0][0])
    k = rows.shape[1]
    x, y, z = axes_from_columns(rows[:, k - 3], rows[:, k - 2], rows[:, k - 1], order)
    # object/contour numbers are 1-based in IMOD; the pivot's class/filament ids are 0-based
    obj = rows[:, 0] - 1 if k >= 4 else None
    contour = rows[:, 1] - 1 if k == 5 else None
    if obj is not None and np.isnan(obj).any():
        raise FormatError(path, "rows have different numbers of columns")
    return picks_frame(path.stem, x, y, z=z, class_id=obj, filament=contour)


def write(picks, dest, overwrite: bool = False, micrographs=None, object_columns: bool = False,
          decimals: int = 2, **_):
    """model2point text per tomogram; ``object_columns`` adds object (``class_id`` + 1 or 1) and
    contour (``filament`` + 1 or 1) columns first."""
    check_picks(picks, "IMOD point file", ("micrograph", "x", "y", "z"))

    def render(rows):
        cols = []
        if object_columns:
            cols.append(_text.Int(column(rows, "class_id", 0.0) + 1))
            cols.append(_text.Int(column(rows, "filament", 0.0) + 1))
        cols += [_text.Fixed(column(rows, c), decimals, strip=False) for c in "xyz"]
        return _text.render(cols, len(rows), sep=" ")

    return write_per_micrograph(
        picks, dest, ".txt", render, overwrite=overwrite, micrographs=micrographs
    )
