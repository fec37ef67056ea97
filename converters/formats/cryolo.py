"""crYOLO coordinate files (formats.md §6.1) and its training ``config.json`` (§6.2).

Three registry entries live here:

``box``  (EMAN1 ``.box``)
    one file per micrograph, ``x<TAB>y<TAB>w<TAB>h`` per line, no header; (x, y) is the box's
    lower-left corner = centre − size/2 in the ``mrcfile`` array frame (crYOLO flips both the
    image and the box on reading, the two cancel). Integers by default: the side is rounded,
    then the corner ``round(centre − side/2)`` (Topaz's reader parses ``int()``,
    ``topaz/utils/files.py read_box``; EMAN writes integers), so a centre read back is within
    0.5 px per axis. ``integer=False`` (flavour ``float``) keeps float corners where they are not
    integral.
``cbox`` (crYOLO ≥ 1.8 STAR-style ``.cbox``)
    ``data_global`` / ``_cbox_format_version 1.0``, ``data_cryolo`` loop ``_CoordinateX
    _CoordinateY _CoordinateZ _Width _Height _Depth _EstWidth _EstHeight _Confidence _NumBoxes
    _Angle`` [``_filamentid``] and ``data_cryolo_include`` loop ``_slice_index``. X/Y are corners
    (napari-boxmanager reads centre = X + Width/2); Z is the centre slice (3-D). Missing values
    are ``<NA>`` (``None``/``nan`` are read too). Pre-1.8 cbox (``x y w h conf estw esth``) is
    read as well.
``cryolo`` (the training dataset flavour the exporter uses)
    ``.box`` per micrograph (as ``box``) plus :func:`write_config`.

crYOLO's per-micrograph STAR output (``_rlnCoordinateX/Y`` centres) is the ``star`` format's
``coords`` flavour.

Export layout of ``cryolo`` (``LAYOUT``): ``train_image/``, ``train_annot/``, ``valid_image/``,
``valid_annot/`` (linked micrographs and ``.box`` files), negatives in
``{train,valid}_annot_negative/``, and ``config.json`` whose anchors are the median particle
diameter in exported pixels (:func:`write_side_files`). ``box`` and ``cbox`` exports use the
generic ``{train,val}/images``, ``{train,val}/labels`` layout. All three need a diameter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from converters.layout import Layout, SideFiles

from . import _text
from ._common import (
    FormatError,
    check_picks,
    check_targets,
    column,
    group_rows,
    has_values,
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

CAPABILITIES = frozenset({"2d", "box", "diameter", "per_micrograph", "read", "write"})
EXTENSIONS = (".box",)
LAYOUT = Layout(
    images="{split}_image",
    labels="{split}_annot",
    negatives="{split}_annot_negative",
    split_dirs={"train": "train", "val": "valid"},
    native=True,
    needs_diameter=True,
    side_files="write_side_files",
)
VARIANTS = {
    "box": {
        "capabilities": frozenset({"2d", "box", "diameter", "per_micrograph", "read", "write"}),
        "extensions": (".box",),
        "read": "read_box",
        "write": "write_box",
        "layout": Layout(needs_diameter=True),
        # the CLI's --flavour: integer corners (default, what Topaz and EMAN read) or floats
        "flavours": {"integer": {"options": {"integer": True}},
                     "float": {"options": {"integer": False}}},
    },
    "cbox": {
        "capabilities": frozenset(
            {"2d", "3d", "box", "score", "diameter", "filament", "per_micrograph", "read", "write"}
        ),
        "extensions": (".cbox",),
        "read": "read_cbox",
        "write": "write_cbox",
        "layout": Layout(needs_diameter=True),
    },
}
_NA_TOKENS = ("<NA>", "None", "nan", "NaN", "NA")
CBOX_COLUMNS = (
    "CoordinateX", "CoordinateY", "CoordinateZ", "Width", "Height", "Depth",
    "EstWidth", "EstHeight", "Confidence", "NumBoxes", "Angle",
)
DECIMALS = 6


def _box_sizes(picks, boxsize, what: str) -> np.ndarray:
    return sizes_px(picks, boxsize, what, option="boxsize", noun="box size")


# --- EMAN .box ---------------------------------------------------------------------------------


def read_box(path, **_):
    """EMAN1 ``.box``: centres = corner + size/2; ``diameter`` = box width; micrograph = stem."""
    path = Path(path)
    lines = [(i, s) for i, s in enumerate(read_text(path).splitlines(), 1) if s.strip()]
    rows = numeric_rows(path, lines, 4, "x y width height")
    w, h = rows[:, 2], rows[:, 3]
    return picks_frame(path.stem, rows[:, 0] + w / 2, rows[:, 1] + h / 2, diameter=w)


def write_box(picks, dest, boxsize=None, overwrite: bool = False, micrographs=None,
              diameter=None, integer: bool = True, **_):
    """EMAN1 ``.box`` per micrograph in directory ``dest`` (or the single file ``dest``).
    Box side = ``boxsize`` (px; ``diameter`` is accepted as the same) or the ``diameter``
    column. ``integer`` (default): integer sides and corners (see the module docstring)."""
    check_picks(picks, "EMAN .box")
    sizes = _box_sizes(picks, boxsize if boxsize is not None else diameter, "EMAN .box")
    if integer:
        sizes = np.maximum(np.rint(sizes), 1.0)

    uniform = sizes.size > 0 and bool((sizes == sizes[0]).all())

    def render(rows):
        b = sizes[row_positions(rows)] if not uniform else sizes[:1]
        if uniform:  # one box size: its text once, not per row
            size = _text.Num(sizes[:1], DECIMALS)
            token = _text.render_bytes([size], 1).tobytes().decode().strip()
            wh = [_text.Const(token), _text.Const(token)]
        else:
            wh = [_text.Num(b, DECIMALS), _text.Num(b, DECIMALS)]
        corners = [column(rows, c) - b / 2 for c in "xy"]
        if integer:
            corners = [np.rint(c) for c in corners]
        return _text.render(
            [
                _text.Num(corners[0], DECIMALS),
                _text.Num(corners[1], DECIMALS),
                *wh,
            ],
            len(rows),
        )

    picks = reset_rows(picks)
    return write_per_micrograph(
        picks, dest, ".box", render, overwrite=overwrite, micrographs=micrographs
    )


read = read_box
write = write_box


# --- .cbox -------------------------------------------------------------------------------------


def _blocks(path, lines: list[str]) -> dict[str, tuple[list[str], list[tuple[int, str]]]]:
    """STAR-ish blocks: name -> (loop labels, data lines with line numbers); key-value pairs of
    non-loop blocks are returned as labels 'key value' with no data lines."""
    blocks: dict[str, tuple[list[str], list[tuple[int, str]]]] = {}
    name = None
    for no, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("data_"):
            name = s[5:]
            blocks[name] = ([], [])
        elif name is None:
            raise FormatError(path, f"text before the first data_ block: {s[:40]!r}", no)
        elif s == "loop_":
            continue
        elif s.startswith("_"):
            blocks[name][0].append(s.split()[0][1:])
        else:
            blocks[name][1].append((no, s))
    return blocks


def read_cbox(path, **_):
    """crYOLO ``.cbox``: centre = corner + size/2 (Z as written), ``diameter`` = box width,
    ``score`` = confidence, ``filament`` = filament id; micrograph = stem."""
    path = Path(path)
    lines = read_text(path).splitlines()
    if not any(s.startswith("data_") for s in lines):
        return _read_old_cbox(path, lines)
    blocks = _blocks(path, lines)
    if "cryolo" not in blocks:
        raise FormatError(path, "no data_cryolo block; not a crYOLO cbox file")
    labels, data = blocks["cryolo"]
    for need in ("CoordinateX", "CoordinateY", "Width", "Height"):
        if need not in labels:
            raise FormatError(path, f"data_cryolo lacks _{need}")
    rows = numeric_rows(path, data, len(labels), "cbox values", _NA_TOKENS, len(labels))
    col = {name: rows[:, i] for i, name in enumerate(labels)}
    w, h = col["Width"], col["Height"]
    z = col.get("CoordinateZ")
    fil = col.get("filamentid")
    return picks_frame(
        path.stem,
        col["CoordinateX"] + w / 2,
        col["CoordinateY"] + h / 2,
        z=None if z is None or np.isnan(z).all() else z,
        score=col.get("Confidence"),
        diameter=w,
        filament=None if fil is None or np.isnan(fil).any() else fil,
    )


def _read_old_cbox(path, lines):
    data = [(i, s) for i, s in enumerate(lines, 1) if s.strip()]
    rows = numeric_rows(path, data, 5, "x y width height confidence")
    w, h = rows[:, 2], rows[:, 3]
    return picks_frame(path.stem, rows[:, 0] + w / 2, rows[:, 1] + h / 2,
                       score=rows[:, 4], diameter=w)


def write_cbox(picks, dest, boxsize=None, overwrite: bool = False, micrographs=None,
               est_size=None, diameter=None, **_):
    """crYOLO ``.cbox`` per micrograph (``dest`` directory or single ``.cbox`` file).

    Box side = ``boxsize`` or the ``diameter`` column; ``est_size`` fills _EstWidth/_EstHeight
    (else ``<NA>``). 3-D picks (a ``z`` column) get _CoordinateZ/_Depth and an include list of
    their slices; a ``filament`` column adds _filamentid.
    """
    check_picks(picks, "crYOLO .cbox")
    picks = reset_rows(picks)
    sizes = _box_sizes(picks, boxsize if boxsize is not None else diameter, "crYOLO .cbox")
    is3d = has_values(picks, "z")
    has_fil = "filament" in picks.columns
    labels = list(CBOX_COLUMNS) + (["filamentid"] if has_fil else [])
    head = (
        "\ndata_global\n\n_cbox_format_version 1.0\n\ndata_cryolo\n\nloop_\n"
        + "".join(f"_{name} #{i}\n" for i, name in enumerate(labels, 1))
    )
    files = []
    order, names, starts = group_rows(picks)
    for i, name in enumerate(names):
        rows = take_rows(picks, order[starts[i] : starts[i + 1]])
        files.append((name, rows))
    if micrographs is not None:
        have = set(names)
        files += [(str(m), take_rows(picks, order[:0])) for m in micrographs
                  if str(m) not in have]
    single = Path(dest).suffix.lower() == ".cbox" and not Path(dest).is_dir()
    if single and len(files) > 1:
        raise ValueError(f"{dest}: one .cbox file holds one micrograph; give a directory")
    targets = [Path(dest)] if single else [Path(dest) / f"{mic_stem(n)}.cbox" for n, _ in files]
    check_targets(targets, overwrite)
    na = np.nan
    for (_name, rows), target in zip(files, targets):
        n = len(rows)
        b = sizes[row_positions(rows)]
        z = column(rows, "z") if is3d else np.full(n, na)
        est = np.full(n, na if est_size is None else float(est_size))
        cols = [
            _text.Fixed(column(rows, "x") - b / 2, DECIMALS, nan="<NA>"),
            _text.Fixed(column(rows, "y") - b / 2, DECIMALS, nan="<NA>"),
            _text.Fixed(z, DECIMALS, nan="<NA>"),
            _text.Fixed(b, DECIMALS, nan="<NA>"),
            _text.Fixed(b, DECIMALS, nan="<NA>"),
            _text.Fixed(b if is3d else np.full(n, na), DECIMALS, nan="<NA>"),
            _text.Fixed(est, DECIMALS, nan="<NA>"),
            _text.Fixed(est, DECIMALS, nan="<NA>"),
            _text.Fixed(column(rows, "score", na), DECIMALS, nan="<NA>"),
            _text.Fixed(np.full(n, na), 0, nan="<NA>"),
            _text.Fixed(np.full(n, na), 0, nan="<NA>"),
        ]
        if has_fil:
            cols.append(_text.Int(column(rows, "filament")))
        body = _text.render_bytes(cols, n, sep=" ")
        slices = np.unique(np.round(z[~np.isnan(z)])) if is3d else np.zeros(0)
        tail = "\ndata_cryolo_include\n\nloop_\n_slice_index #1\n" + "".join(
            f"{int(s)}\n" for s in slices
        )
        write_atomic(target, [head, body, tail], overwrite=overwrite)
    return targets


# --- config.json -------------------------------------------------------------------------------


def default_config(boxsize: int, train_image_folder: str = "train_image/",
                   train_annot_folder: str = "train_annot/", valid_image_folder: str = "",
                   valid_annot_folder: str = "") -> dict:
    """crYOLO 1.9 ``config.json`` as ``cryolo_gui.py config`` writes it with default options
    (formats.md §6.2): anchors = [boxsize, boxsize], LOWPASS filter 0.1, PhosaurusNet, 1024."""
    return {
        "model": {
            "architecture": "PhosaurusNet",
            "input_size": 1024,
            "anchors": [int(boxsize), int(boxsize)],
            "max_box_per_image": 700,
            "norm": "STANDARD",
            "filter": [0.1, "filtered_tmp/"],
        },
        "train": {
            "train_image_folder": str(train_image_folder),
            "train_annot_folder": str(train_annot_folder),
            "train_times": 10,
            "pretrained_weights": "",
            "batch_size": 4,
            "learning_rate": 0.0001,
            "nb_epoch": 200,
            "object_scale": 5.0,
            "no_object_scale": 1.0,
            "coord_scale": 1.0,
            "class_scale": 1.0,
            "saved_weights_name": "cryolo_model.h5",
            "debug": True,
        },
        "valid": {
            "valid_image_folder": str(valid_image_folder),
            "valid_annot_folder": str(valid_annot_folder),
            "valid_times": 1,
        },
        "other": {"log_path": "logs/"},
    }


def write_config(path, boxsize, train_image_folder, train_annot_folder, valid_image_folder="",
                 valid_annot_folder="", overwrite: bool = False, **overrides) -> Path:
    """Write crYOLO's training ``config.json``. ``overrides`` set any key of any section by name
    (``nb_epoch=50``, ``input_size=[768, 768]``, ``filter=None`` for no filter); an unknown key
    is a ValueError. Folder paths are written as given (crYOLO resolves them against its cwd)."""
    if int(boxsize) <= 0:
        raise ValueError(f"crYOLO box size must be a positive number of pixels, got {boxsize!r}")
    config = default_config(boxsize, train_image_folder, train_annot_folder,
                            valid_image_folder, valid_annot_folder)
    for key, value in overrides.items():
        section = next((s for s in config.values() if key in s), None)
        if section is None:
            known = sorted(k for s in config.values() for k in s)
            raise ValueError(f"unknown crYOLO config key {key!r}; known: {', '.join(known)}")
        if key == "filter" and value is None:
            del section[key]
        else:
            section[key] = value
    return write_atomic(Path(path), json.dumps(config, indent=4) + "\n", overwrite=overwrite)


def write_side_files(ctx: SideFiles) -> list[Path]:
    """The export's ``config.json``: anchors = the median particle diameter in exported px,
    folders = the final locations of the export's image and annotation folders."""
    diam = ctx.micrographs["diameter_px"].to_numpy(float)
    if not np.isfinite(diam).any():
        raise ValueError("crYOLO's config needs a particle size; pass --diameter (Å)")
    lay = ctx.layout
    return [write_config(
        ctx.dest("config.json"), int(round(float(np.nanmedian(diam)))),
        train_image_folder=str(ctx.final_path(lay.images, "train")),
        train_annot_folder=str(ctx.final_path(lay.labels, "train")),
        valid_image_folder=str(ctx.final_path(lay.images, "val")),
        valid_annot_folder=str(ctx.final_path(lay.labels, "val")),
    )]


# --- crYOLO per-micrograph STAR (centres) ------------------------------------------------------


def read_star(path, **opts):
    """crYOLO's STAR output/annotation (``data_`` loop ``_rlnCoordinateX/Y`` = box centres)."""
    from . import star

    return star.read(path, **opts)


def write_star(picks, dest, overwrite: bool = False, micrographs=None, **_):
    """crYOLO STAR annotations: the ``star`` format's ``coords`` flavour, one per micrograph."""
    from . import star

    return star.write(picks, dest, flavor="coords", overwrite=overwrite, micrographs=micrographs)
