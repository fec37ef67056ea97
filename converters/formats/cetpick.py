"""MiLoPYP / cet_pick tomogram coordinates (formats.md §10, cet_pick
``utils/generate_train_file.py``, ``merge_output.py``).

Training coordinates: one tab-separated table with header
``image_name<TAB>x_coord<TAB>y_coord<TAB>z_coord`` (integers, ``int(float())`` in cet_pick),
``image_name`` = tomogram name without extension, plus an image list ``image_name<TAB>rec_path``
(:func:`write_image_list`). Inference output is in x-z-y column order with a score
(``image_name x_coord z_coord y_coord score``); columns are read by their header names, so both
orders read the same.

``order`` (``xzy`` default, ``xyz``, ``zxy``) is cet_pick's ``generate_train_file.py -r``: how
three IMOD ``model2point`` columns (c0, c1, c2) map to x, y, z (``xzy``: x=c0, z=c1, y=c2;
``xyz``: x=c0, y=c1, z=c2; ``zxy``: x=c1, z=c0, y=c2); see :func:`axes_from_columns`. The
tables themselves always hold x, y, z under their own header names (voxels of the tomogram,
x = column, y = row, z = section of the ``mrcfile`` array).

Export layout (``LAYOUT``): ``{train,val}/images/<stem>.mrc`` (linked tomograms),
``{train,val}/labels/particles.txt`` (one table; ``z = 0`` for 2D micrographs), negatives in
``{train,val}/labels_negative/particles.txt``, and the image list ``{train,val}/images.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.layout import ImageList, Layout

from . import _text
from ._common import (
    FormatError,
    check_picks,
    column,
    factorize_names,
    mic_stem,
    picks_frame,
    table_target,
    write_atomic,
)

CAPABILITIES = frozenset({"3d", "score", "table", "read", "write"})
EXTENSIONS = (".txt",)
ORDERS = ("xzy", "xyz", "zxy")
LAYOUT = Layout(
    micrograph_name="stem",
    image_lists=(ImageList("{split}/images.txt", "write_image_list", every_split=False),),
)


def looks_like(lines: list[str]) -> bool:
    head = lines[0].split() if lines else []
    return bool(head) and head[0] == "image_name" and "z_coord" in head


def axes_from_columns(c0, c1, c2, order: str = "xzy"):
    """(x, y, z) from three model2point columns, as ``generate_train_file.py -r ORDER``."""
    if order == "xzy":
        return c0, c2, c1
    if order == "xyz":
        return c0, c1, c2
    if order == "zxy":
        return c1, c2, c0
    raise ValueError(f"unknown cet_pick axis order {order!r}; known: {', '.join(ORDERS)}")


def read(path, **_):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        table = pd.read_csv(path, sep=r"\s+", dtype={"image_name": str}, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise FormatError(path, "empty file: no header 'image_name x_coord y_coord z_coord'",
                          1) from None
    except pd.errors.ParserError as exc:
        raise FormatError(path, f"malformed table ({exc})") from None
    need = ("image_name", "x_coord", "y_coord", "z_coord")
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise FormatError(path, f"header lacks {', '.join(missing)}; expected "
                          "'image_name x_coord y_coord z_coord [score]'", 1)
    vals = {}
    for name in need[1:] + ("score",):
        if name in table.columns:
            v = pd.to_numeric(table[name], errors="coerce")
            bad = np.flatnonzero(v.isna().to_numpy())
            if bad.size:
                i = int(bad[0])
                raw = table[name].iloc[i]
                what = ("is missing (a truncated row?)" if pd.isna(raw) or str(raw) == ""
                        else f"{str(raw)!r} is not a number")
                raise FormatError(path, f"{name} {what}", i + 2)
            vals[name] = v.to_numpy(dtype=np.float64)
    names = np.array([mic_stem(n) for n in table["image_name"].astype(str)], dtype=object)
    return picks_frame(names, vals["x_coord"], vals["y_coord"], z=vals["z_coord"],
                       score=vals.get("score"))


def write(picks, dest, overwrite: bool = False, score: bool = False, **_):
    """One coordinate table (``dest`` or ``dest/particles.txt``), integer voxels."""
    check_picks(picks, "cet_pick coordinates", ("micrograph", "x", "y", "z"))
    target = table_target(dest, "particles.txt")
    codes, uniques = factorize_names(picks)
    cols = [_text.Str(codes=codes, uniques=[mic_stem(u) for u in uniques])]
    cols += [_text.Int(column(picks, c)) for c in "xyz"]
    header = ["image_name", "x_coord", "y_coord", "z_coord"]
    if score and "score" in picks.columns:
        header.append("score")
        cols.append(_text.Fixed(column(picks, "score"), 6))
    body = _text.render_bytes(cols, len(picks))
    return [write_atomic(target, ["\t".join(header) + "\n", body], overwrite)]


def write_image_list(images, dest, overwrite: bool = False) -> Path:
    """``image_name<TAB>rec_path`` list; ``images`` maps name -> path, or is a list of paths."""
    items = images.items() if isinstance(images, dict) else [(p, p) for p in images]
    text = "image_name\trec_path\n" + "".join(f"{mic_stem(k)}\t{v}\n" for k, v in items)
    return write_atomic(Path(dest), text, overwrite)
