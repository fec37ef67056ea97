"""CryoPPP-style CSV (the ground truth of CryoPPP, also used by CryoSegNet):
one file per micrograph, header ``X-Coordinate,Y-Coordinate,Diameter``, integer pixel centres of
the micrograph (x = column, y = row of the ``mrcfile`` array) and the particle diameter in
pixels. Extra columns are read through (a ``Confidence``/``Score`` column becomes ``score``,
others keep their names).

Export layout (``LAYOUT``, the generic one): ``{train,val}/images/<stem>.mrc`` (linked),
``{train,val}/labels/<stem>.csv``, negatives in ``{train,val}/labels_negative/``. Labels need a
diameter.
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
    picks_frame,
    reset_rows,
    row_positions,
    sizes_px,
    write_per_micrograph,
)

CAPABILITIES = frozenset({"2d", "diameter", "per_micrograph", "read", "write"})
EXTENSIONS = (".csv",)
HEADER = ("X-Coordinate", "Y-Coordinate", "Diameter")
LAYOUT = Layout(needs_diameter=True)
_SCORE_NAMES = ("confidence", "score", "probability")


def read(path, **_):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"malformed CSV ({exc})") from None
    except pd.errors.EmptyDataError:
        raise FormatError(path, f"empty file; expected header {','.join(HEADER)}", 1) from None
    for need in HEADER[:2]:
        if need not in table.columns:
            raise FormatError(
                path, f"header lacks {need!r}; expected {','.join(HEADER)}", 1
            )
    values = {}
    for name in table.columns:
        if name in HEADER or name.lower() in _SCORE_NAMES:
            v = pd.to_numeric(table[name], errors="coerce")
            bad = np.flatnonzero(v.isna().to_numpy() & table[name].notna().to_numpy())
            if bad.size:
                i = int(bad[0])
                raise FormatError(path, f"{name} {table[name].iloc[i]!r} is not a number", i + 2)
            gap = np.flatnonzero(table[name].isna().to_numpy()) if name in HEADER[:2] else []
            if len(gap):  # a coordinate is required: an empty cell is a truncated row
                raise FormatError(path, f"{name} is empty (a truncated row?)", int(gap[0]) + 2)
            values[name] = v.to_numpy(dtype=np.float64)
    score = next((values[c] for c in values if c.lower() in _SCORE_NAMES), None)
    frame = picks_frame(
        path.stem, values["X-Coordinate"], values["Y-Coordinate"],
        diameter=values.get("Diameter"), score=score,
    )
    for name in table.columns:
        if name not in HEADER and name.lower() not in _SCORE_NAMES and name not in frame.columns:
            frame[name] = table[name].to_numpy()
    return frame


def write(picks, dest, diameter=None, overwrite: bool = False, micrographs=None, **_):
    """CSV per micrograph; ``Diameter`` from ``diameter`` (px) or the ``diameter`` column."""
    check_picks(picks, "CryoPPP CSV")
    picks = reset_rows(picks)
    d = sizes_px(picks, diameter, "CryoPPP CSV")

    def render(rows):
        i = row_positions(rows)
        cols = [_text.Int(column(rows, "x")), _text.Int(column(rows, "y")), _text.Int(d[i])]
        return _text.render(cols, len(rows), sep=",")

    return write_per_micrograph(
        picks, dest, ".csv", render, overwrite=overwrite, micrographs=micrographs,
        header=(",".join(HEADER) + "\n").encode(),
    )
