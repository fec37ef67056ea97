"""Topaz coordinate table (formats.md §7): tab-separated, header
``image_name<TAB>x_coord<TAB>y_coord[<TAB>score]``, one row per pick, ``image_name`` = image file
name without extension, integer pixel coordinates indexed from the top left (the ``mrcfile``
array frame: x = column, y = row).

Scaling: Topaz trains on images down-scaled by ``topaz preprocess -s S``; its coordinates are then
``topaz convert -s S`` of the original ones, i.e. ``numpy.round(x * (1/S))`` (round half to even,
``topaz/commands/convert.py``). ``write(..., scale=S)`` does exactly that; ``read`` returns the
coordinates as written (pixels of the images they refer to) and ``read(..., scale=S)`` multiplies
them back by S.

Export layout (``LAYOUT``): ``images/<stem>.mrc`` (all splits in one folder; MRC by default),
``particles_{train,val}.txt`` (``image_name`` = the stem), negatives in
``particles_negative_{train,val}.txt``, and the image lists ``images_{train,val}.txt`` for
``--train-images``/``--test-images``.
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

CAPABILITIES = frozenset({"2d", "score", "table", "read", "write"})
EXTENSIONS = (".txt", ".tab")
HEADER = ("image_name", "x_coord", "y_coord")
LAYOUT = Layout(
    images="images",
    labels="particles_{split}.txt",
    negatives="particles_negative_{split}.txt",
    native=True,
    image_defaults={"images": "mrc"},
    micrograph_name="stem",
    image_lists=(ImageList("images_{split}.txt", "write_image_list"),),
)


def looks_like(lines: list[str]) -> bool:
    """A Topaz table starts with the ``image_name x_coord y_coord`` header (and has no z)."""
    head = lines[0].split() if lines else []
    return head[:3] == list(HEADER) and "z_coord" not in head


def read(path, scale: float = 1.0, **_):
    """Picks from a Topaz table; coordinates as float px (times ``scale``, for tables of images
    down-scaled by ``scale``)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(errors="replace") as fh:
        first = fh.readline()
    head = first.rstrip("\n").split("\t")
    missing = [c for c in HEADER if c not in head]
    if missing:
        raise FormatError(
            path, f"header {first.strip()!r} lacks {', '.join(missing)}; expected "
            "'image_name<TAB>x_coord<TAB>y_coord[<TAB>score]'", 1,
        )
    try:
        table = pd.read_csv(path, sep="\t", dtype={"image_name": str}, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise FormatError(path, f"malformed table ({exc})") from None
    coords = {}
    for name in ("x_coord", "y_coord", "score"):
        if name not in table.columns:
            continue
        values = pd.to_numeric(table[name], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FormatError(path, f"{name} {table[name].iloc[i]!r} is not a number", i + 2)
        coords[name] = values.to_numpy(dtype=np.float64)
    names = np.array([mic_stem(n) for n in table["image_name"].astype(str)], dtype=object)
    s = float(scale)
    return picks_frame(
        names, coords["x_coord"] * s, coords["y_coord"] * s, score=coords.get("score")
    )


def write(picks, dest, scale: float = 1.0, overwrite: bool = False, score: bool = True, **_):
    """Write one Topaz table (``dest`` or ``dest/particles.txt``).

    ``scale``: the preprocess down-scale factor S; coordinates become ``round(x / S)`` exactly as
    ``topaz convert -s S`` computes them. ``score=False`` leaves the score column out.
    """
    check_picks(picks, "Topaz table")
    if not scale or scale <= 0:
        raise ValueError(f"Topaz scale must be a positive down-scale factor, got {scale!r}")
    target = table_target(dest, "particles.txt")
    factor = 1.0 / float(scale)  # topaz: scale = up/down; coord_new = round(scale * coord)
    codes, uniques = factorize_names(picks)
    cols = [
        _text.Str(codes=codes, uniques=[mic_stem(u) for u in uniques]),
        _text.Int(np.round(factor * column(picks, "x"))),
        _text.Int(np.round(factor * column(picks, "y"))),
    ]
    header = list(HEADER)
    if score and "score" in picks.columns:
        header.append("score")
        cols.append(_text.Fixed(column(picks, "score"), 6, strip=True))
    body = _text.render_bytes(cols, len(picks))
    return [write_atomic(target, ["\t".join(header) + "\n", body], overwrite)]


def write_image_list(images, dest, overwrite: bool = False) -> Path:
    """Topaz image list ``image_name<TAB>path`` (``--train-images``); ``images`` maps image name
    (or any micrograph name; its stem is used) to the image path, or is a list of paths."""
    if isinstance(images, dict):
        items = [(mic_stem(k), str(v)) for k, v in images.items()]
    else:
        items = [(mic_stem(p), str(p)) for p in images]
    text = "image_name\tpath\n" + "".join(f"{n}\t{p}\n" for n, p in items)
    return write_atomic(Path(dest), text, overwrite)
