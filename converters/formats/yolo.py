"""YOLO labels as PartiNet/DynamicDet use them (formats.md §9, pickers.md §B3).

One ``.txt`` per image, one line per particle: ``class cx cy w h`` normalised to [0, 1] by the
image width and height, square box of side = particle diameter (PartiNet's ``split`` writes
``f"{class} {x/W:.6f} {y/H:.6f} {d/W:.6f} {d/H:.6f}"``). PartiNet's detections add a sixth
column, the confidence (read as ``score``). The pixel frame is that of the PNG/MRC the labels
refer to (= the ``mrcfile`` array frame; PartiNet writes the denoised PNG without resizing).

Normalising needs the image size: ``image_size=(nx, ny)`` for all images, a mapping
micrograph -> (nx, ny), or ``images=DIR`` to read it from ``DIR/<stem>.{mrc,png,jpg,...}``.

Export layout (PartiNet/DynamicDet, ``LAYOUT``): ``images/{train,val}/<stem>.png`` (PNG by
default), ``labels/{train,val}/<stem>.txt``, ``train.txt``/``val.txt`` (absolute image paths of
the final location) and ``cryo_training.yaml`` (:func:`write_side_files`). Negatives are class 1
in the same label files (``nc: 2``, names ``particle``, ``negative``). Labels need a diameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from converters.layout import ImageList, Layout, SideFiles
from harvest.imageio import micrograph_shape

from . import _text
from ._common import (
    IMAGE_EXTENSIONS,
    FormatError,
    check_picks,
    column,
    factorize_names,
    mic_stem,
    numeric_rows,
    picks_frame,
    read_text,
    reset_rows,
    row_positions,
    sizes_px,
    take_rows,
    write_atomic,
    write_per_micrograph,
)

CAPABILITIES = frozenset({"2d", "score", "box", "diameter", "per_micrograph", "read", "write"})
EXTENSIONS = (".txt",)
# read() needs image_size={stem: (nx, ny)} (or images=DIR) to undo the normalisation, write()
# to normalise
READ_NEEDS = ("image_size",)
WRITE_NEEDS = ("image_size",)
IMAGE_LIST = "{split}.txt"
LAYOUT = Layout(
    images="images/{split}",
    labels="labels/{split}",
    negative_class=1,
    native=True,
    needs_diameter=True,
    image_defaults={"images": "png"},
    image_lists=(ImageList(IMAGE_LIST, "write_image_list"),),
    side_files="write_side_files",
)


def looks_like(lines: list[str]) -> bool:
    """5 or 6 numbers per line, an integer class first, the next four in [0, 1]."""
    rows = [s.split() for s in lines if s.strip()]
    if not rows:
        return False
    for tok in rows:
        if len(tok) not in (5, 6):
            return False
        try:
            vals = [float(t) for t in tok]
        except ValueError:
            return False
        if vals[0] != int(vals[0]) or not all(0.0 <= v <= 1.0 for v in vals[1:5]):
            return False
    return True


def _find_image(images: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:  # in lookup order (harvest.conventions)
        p = images / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _sizes_for(names: list[str], image_size=None, images=None, what="YOLO") -> np.ndarray:
    """(n_names, 2) array of (nx, ny)."""
    out = np.zeros((len(names), 2), dtype=np.float64)
    for i, name in enumerate(names):
        if isinstance(image_size, Mapping):
            size = image_size.get(name, image_size.get(mic_stem(name)))
        elif image_size is not None:
            size = image_size
        else:
            size = None
        if size is None and images is not None:
            img = _find_image(Path(images), mic_stem(name))
            if img is not None:
                size = micrograph_shape(img)  # header only: MRC, PNG; else decoded
        if size is None:
            raise ValueError(
                f"{what}: image size of micrograph {name!r} unknown; give image_size=(nx, ny), "
                "a mapping per micrograph, or images=DIR holding <stem>.png/.jpg/.mrc"
            )
        nx, ny = size
        if nx <= 0 or ny <= 0:
            raise ValueError(f"{what}: image size of {name!r} must be positive, got {size!r}")
        out[i] = (nx, ny)
    return out


def read(path, image_size=None, images=None, **_):
    """YOLO labels of one image back to pixels; ``diameter`` = max(w·W, h·H) (PartiNet's
    ``star`` conversion), ``class_id`` = class, ``score`` = the sixth column if present."""
    path = Path(path)
    lines = [(i, s) for i, s in enumerate(read_text(path).splitlines(), 1) if s.strip()]
    rows = numeric_rows(path, lines, 5, "class cx cy w h [conf]")
    if rows.shape[1] > 6:
        raise FormatError(path, f"expected 5 or 6 columns, found {rows.shape[1]}", lines[0][0])
    if rows.shape[0] == 0:  # an image without particles needs no size
        return picks_frame(path.stem, [], [], diameter=[], class_id=[])
    (nx, ny), = _sizes_for([path.stem], image_size, images, f"YOLO {path}")
    score = rows[:, 5] if rows.shape[1] == 6 else None
    if score is not None and np.isnan(score).all():
        score = None
    return picks_frame(
        path.stem,
        rows[:, 1] * nx,
        rows[:, 2] * ny,
        score=score,
        diameter=np.maximum(rows[:, 3] * nx, rows[:, 4] * ny),
        class_id=rows[:, 0],
    )


def write(picks, dest, image_size=None, images=None, diameter=None, class_id=None,
          overwrite: bool = False, micrographs=None, **_):
    """YOLO label per micrograph (``dest/<stem>.txt``). Box side = ``diameter`` (px) or the
    ``diameter`` column; class = ``class_id`` or the ``class_id`` column or 0."""
    check_picks(picks, "YOLO labels")
    picks = reset_rows(picks)
    d = sizes_px(picks, diameter, "YOLO labels", noun="box side")
    if class_id is not None:
        cls = np.full(len(picks), float(class_id))
    else:
        cls = column(picks, "class_id", default=0.0)
    codes, names = factorize_names(picks)  # names in first-seen order, as group_rows
    all_names = names + [str(m) for m in (micrographs or []) if str(m) not in set(names)]
    sizes = _sizes_for(all_names, image_size, images)
    nx, ny = sizes[codes, 0], sizes[codes, 1]
    cx, w = _visible(column(picks, "x"), d, nx)
    cy, h = _visible(column(picks, "y"), d, ny)
    keep = (w > 0) & (h > 0)
    if not keep.all():
        picks = take_rows(picks, keep)

    def render(rows):
        i = row_positions(rows)
        return _text.render(
            [
                _text.Int(cls[i]),
                _text.Fixed(cx[i] / nx[i], 6, strip=False),
                _text.Fixed(cy[i] / ny[i], 6, strip=False),
                _text.Fixed(w[i] / nx[i], 6, strip=False),
                _text.Fixed(h[i] / ny[i], 6, strip=False),
            ],
            len(rows),
            sep=" ",
        )

    return write_per_micrograph(
        picks, dest, ".txt", render, overwrite=overwrite, micrographs=all_names
    )


def _visible(centre: np.ndarray, side: np.ndarray, size: np.ndarray):
    """Centre and side of each box along one axis, as YOLO labels need them.

    A centre on the image keeps its full box, overhanging an edge or not (PartiNet's rule). A
    centre off the image (a recentred edge pick; the catalog allows 5 % outside, see
    ``harvest.validate``) cannot be written as such: YOLOv7-style loaders refuse the whole label
    file when a value is < 0 or a centre > 1. Its box becomes the part on the image; side 0 when
    none of it is (the caller drops those)."""
    centre = np.asarray(centre, dtype=np.float64)
    side = np.asarray(side, dtype=np.float64)
    off = (centre < 0) | (centre > size)
    if not off.any():
        return centre, side
    lo = np.clip(centre - side / 2, 0, size)
    hi = np.clip(centre + side / 2, 0, size)
    return np.where(off, (lo + hi) / 2, centre), np.where(off, hi - lo, side)


def write_image_list(paths, dest, overwrite: bool = False) -> Path:
    """``train.txt``/``val.txt``: one image path per line (PartiNet writes absolute paths);
    ``paths`` is a list of paths or a mapping name -> path."""
    if isinstance(paths, Mapping):
        paths = paths.values()
    text = "".join(f"{Path(p)}\n" for p in paths)
    return write_atomic(Path(dest), text, overwrite)


def write_dataset_yaml(out_dir, train_list, val_list, overwrite: bool = False,
                       names=("particle",)) -> Path:
    """``cryo_training.yaml`` as ``partinet split`` writes it: ``train``/``val`` paths,
    ``nc: 1``, ``names: [ 'particle' ]``; ``names`` gives further classes (``nc`` follows)."""
    for n in names:
        if not n or "'" in n:
            raise ValueError(f"YOLO class name {n!r} must be non-empty without quotes")
    text = (
        f"train: {train_list}\n"
        f"val: {val_list}\n"
        "\n"
        "# number of classes\n"
        f"nc: {len(names)}\n"
        "\n"
        "# class names\n"
        f"names: [ {', '.join(repr(str(n)) for n in names)} ]\n"
    )
    return write_atomic(Path(out_dir) / "cryo_training.yaml", text, overwrite)


def write_side_files(ctx: SideFiles) -> list[Path]:
    """The export's ``cryo_training.yaml``: the image lists of both splits and the classes
    the labels hold (``particle``, + ``negative`` when negatives are class 1)."""
    return [write_dataset_yaml(ctx.tmp, ctx.final_path(IMAGE_LIST, "train"),
                               ctx.final_path(IMAGE_LIST, "val"), names=ctx.class_names)]
