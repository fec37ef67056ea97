"""EPicker ``.coord`` labels (``--label_type coord``; EPicker ``lib/mrc_utils/coord.py``).

One file per micrograph, one particle per line, whitespace-separated; EPicker reads the first two
columns as ``int(float())`` x, y in pixels of the micrograph (x = column, y = row of the
``mrcfile`` array). Written as ``x<TAB>y`` integers (rounded half to even), plus the diameter as
a third column when the frame has one; a third column is read back as ``diameter``.

Export layout (``LAYOUT``, the generic one): ``{train,val}/images/<stem>.mrc`` (linked),
``{train,val}/labels/<stem>.coord``, negatives in ``{train,val}/labels_negative/``.
"""

from __future__ import annotations

from pathlib import Path

from converters.layout import Layout

from . import _text
from ._common import (
    check_picks,
    column,
    has_values,
    numeric_rows,
    picks_frame,
    read_text,
    write_per_micrograph,
)

CAPABILITIES = frozenset({"2d", "per_micrograph", "read", "write"})
EXTENSIONS = (".coord",)
LAYOUT = Layout()


def read(path, **_):
    path = Path(path)
    lines = [(i, s) for i, s in enumerate(read_text(path).splitlines(), 1) if s.strip()]
    rows = numeric_rows(path, lines, 2, "x y")
    diameter = rows[:, 2] if rows.shape[1] > 2 else None
    return picks_frame(path.stem, rows[:, 0], rows[:, 1], diameter=diameter)


def write(picks, dest, overwrite: bool = False, micrographs=None, **_):
    check_picks(picks, "EPicker .coord")
    with_d = has_values(picks, "diameter", every=True)

    def render(rows):
        cols = [_text.Int(column(rows, "x")), _text.Int(column(rows, "y"))]
        if with_d:
            cols.append(_text.Int(column(rows, "diameter")))
        return _text.render(cols, len(rows))

    return write_per_micrograph(
        picks, dest, ".coord", render, overwrite=overwrite, micrographs=micrographs
    )
