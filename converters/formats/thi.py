"""EPicker ``.thi`` labels and predictions (formats.md §8, EPicker ``lib/mrc_utils/thi.py``,
``fiber.py``).

One file per micrograph, coordinates in pixels of the original micrograph (x = column, y = row
of the ``mrcfile`` array), written as integers (rounded half to even here; EPicker's own
``%d`` truncates):

- particle: ``[Particle Coordinates: X Y Value]``, rows ``%d\\t%d\\t%f``, ``[End]`` + newline;
- vesicle: ``[Vesicle Coordinates: X Y Radius Value]``, rows ``%d\\t%d\\t%d\\t%f``, ``[End]`` +
  newline;
- helix (fiber): ``[Helix Coordinates: X Y Group Value]``, rows ``%d %d %d 1.0``
  (space-separated), ``[End]`` without a trailing newline.

Readers (EPicker's and this one) skip every line starting with ``[``.
The micrograph list (``--data`` as a ``.thi`` list, ``merge_results.thi``) is
:func:`write_file_list` / :func:`read_file_list`.

Export layout (``LAYOUT``): ``{train,val}/images/<stem>.png``, by default EPicker's view (width
1024, smaller micrographs never upsampled, min–max normalised, histogram-equalised),
``{train,val}/labels/<stem>.thi``, negatives in ``{train,val}/labels_negative/``, and the
micrograph list ``{train,val}/images.thi`` when images were written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from converters.layout import ImageList, Layout

from . import _text
from ._common import (
    FormatError,
    check_picks,
    column,
    numeric_rows,
    picks_frame,
    read_text,
    write_atomic,
    write_per_micrograph,
)

CAPABILITIES = frozenset(
    {"2d", "score", "vesicle", "filament", "per_micrograph", "read", "write"}
)
EXTENSIONS = (".thi",)
HEADERS = {
    "particle": "[Particle Coordinates: X Y Value]",
    "vesicle": "[Vesicle Coordinates: X Y Radius Value]",
    "fiber": "[Helix Coordinates: X Y Group Value]",
}
MODES = ("particle", "vesicle", "fiber")
LAYOUT = Layout(
    image_defaults={"images": "png", "width": 1024, "normalize": "minmax", "equalize": True},
    image_lists=(ImageList("{split}/images.thi", "write_file_list", every_split=False,
                           needs_images=True),),
)


def read(path, **_):
    """Picks of one ``.thi`` file; the header decides the columns (particle: x y score;
    vesicle: x y radius score; helix: x y filament score; other headers: x y [score])."""
    path = Path(path)
    text = read_text(path)
    mode = None
    data = []
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("["):
            if mode is None and s != "[End]":
                mode = next((m for m, h in HEADERS.items() if s == h), "other")
            continue
        data.append((no, s))
    rows = numeric_rows(path, data, 2, "X Y ...")
    x, y = rows[:, 0], rows[:, 1]
    extra = rows.shape[1]
    if mode == "vesicle":
        if extra < 3:
            raise FormatError(path, "vesicle rows need X Y Radius [Value]", data[0][0])
        score = rows[:, 3] if extra > 3 else None
        return picks_frame(path.stem, x, y, score=score, radius=rows[:, 2])
    if mode == "fiber":
        if extra < 3:
            raise FormatError(path, "helix rows need X Y Group [Value]", data[0][0])
        score = rows[:, 3] if extra > 3 else None
        return picks_frame(path.stem, x, y, score=score, filament=rows[:, 2])
    return picks_frame(path.stem, x, y, score=rows[:, 2] if extra > 2 else None)


def write(picks, dest, mode: str | None = None, overwrite: bool = False, micrographs=None, **_):
    """``.thi`` per micrograph. ``mode`` particle|vesicle|fiber (default: vesicle when the frame
    has ``radius``, fiber when it has ``filament``, else particle). Missing scores are 1.0."""
    check_picks(picks, "EPicker .thi")
    if mode is None:
        mode = "vesicle" if "radius" in picks.columns else (
            "fiber" if "filament" in picks.columns else "particle")
    if mode == "helix":
        mode = "fiber"
    if mode not in MODES:
        raise ValueError(f"unknown EPicker mode {mode!r}; known: {', '.join(MODES)}")
    need = {"vesicle": "radius", "fiber": "filament"}.get(mode)
    if need:
        check_picks(picks, f"EPicker .thi ({mode})", ("micrograph", "x", "y", need))

    def render(rows):
        cols = [_text.Int(column(rows, "x")), _text.Int(column(rows, "y"))]
        if mode == "fiber":
            cols += [_text.Int(column(rows, "filament")), _text.Const("1.0")]
            return _text.render(cols, len(rows), sep=" ")
        if mode == "vesicle":
            cols.append(_text.Int(column(rows, "radius")))
        if "score" in rows.columns:
            cols.append(_text.Fixed(column(rows, "score"), 6, strip=False))
        else:
            cols.append(_text.Const("1.000000"))
        return _text.render(cols, len(rows))

    footer = b"[End]" if mode == "fiber" else b"[End]\n"
    return write_per_micrograph(
        picks, dest, ".thi", render, overwrite=overwrite, micrographs=micrographs,
        header=(HEADERS[mode] + "\n").encode(), footer=footer,
    )


def write_file_list(paths, dest, overwrite: bool = False) -> Path:
    """Micrograph list for EPicker's ``--data``: a single-line ``[...]`` header (EPicker skips
    lines starting with ``[``; a multi-line header would be read as paths), then one path per
    line. ``paths``: a list of paths or a mapping name -> path."""
    if isinstance(paths, Mapping):
        paths = paths.values()
    lines = ["[Micrograph Path]"] + [str(p) for p in paths]
    for p in lines[1:]:
        if not p or p.startswith("[") or "\n" in p:
            raise ValueError(f"{dest}: micrograph path {p!r} cannot be listed in a .thi list")
    return write_atomic(Path(dest), "\n".join(lines) + "\n", overwrite)


def read_file_list(path) -> list[tuple[str, str | None]]:
    """(micrograph path, particle file or None) per entry of a ``.thi`` list or of EPicker's
    ``merge_results.thi`` (whose bracketed header spans three lines)."""
    path = Path(path)
    out = []
    in_header = False
    for line in read_text(path).splitlines():
        s = line.strip()
        if not s:
            continue
        if in_header or s.startswith("["):
            in_header = not s.endswith("]")
            continue
        tok = s.split()
        out.append((tok[0], tok[1] if len(tok) > 1 else None))
    return out
