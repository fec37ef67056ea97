"""RELION STAR picks: particles tables (3.0 single table, 3.1+ optics + particles), one coordinate
STAR per micrograph (RELION import, crYOLO, EPicker), and PartiNet's single-block STAR.

Coordinates: ``rlnCoordinateX/Y`` are particle centres in pixels of the micrograph, in the
``mrcfile`` array frame (formats.md §0.5); read as written (no recentring by origins: the
harvester does that). Flavours for writing (``flavor=``):

``coords`` (default)
    one file per micrograph ``<stem>.star``: ``data_`` / ``loop_`` / ``_rlnCoordinateX #1`` /
    ``_rlnCoordinateY #2`` [/ ``_rlnCoordinateZ``] [/ ``_rlnAutopickFigureOfMerit``], the layout of
    RELION's coordinate import, crYOLO's STAR output and EPicker's STAR labels (which need the
    ``#N`` indices).
``relion31``
    one table file: ``# version 30001``, ``data_optics`` (one optics group) and ``data_particles``
    with ``rlnMicrographName``, coordinates, ``rlnOpticsGroup`` and the optional columns.
``relion30``
    one table file: a single ``data_images`` table (what Topaz and RELION 3.0 read).
``topaz``
    one table file: a single ``data_images`` table with ``rlnMicrographName``, integer
    coordinates and ``rlnAutopickFigureOfMerit``, as ``topaz convert`` writes it: Topaz reads only
    the first ``data_`` block and truncates coordinates with ``astype(float).astype(int)``
    (``topaz/utils/star.py``), so rounded integers keep its picks on ours.
``partinet``
    one table file: ``data_`` / ``loop_`` / ``_rlnMicrographName #1`` / ``_rlnCoordinateX #2`` /
    ``_rlnCoordinateY #3`` / ``_rlnDiameter #4``, integers (PartiNet parses them with ``int()``),
    micrograph names ``<stem>.mrc`` (formats.md §9).

The CLI names these flavours (``FLAVOURS``; ``--flavour``/``--star-flavour``) ``per-micrograph``
(= ``coords``), ``relion31``, ``relion30``, ``topaz`` and ``partinet``.

Reading also takes RELION's own pick files (:mod:`converters.formats._relion`): per-micrograph
``*_autopick.star``/``*_manualpick.star`` (micrograph = the file name without that suffix), a
pick job's ``autopick.star``/``manualpick.star`` index (``data_coordinate_files``), and
RELION 5 tomography picks (``rlnTomoName`` with ``rlnCenteredCoordinateX/Y/ZAngst``, placed in
voxels of the tomogram as the crawler does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harvest import starwrite

from . import _relion, _text
from ._common import (
    FormatError,
    check_picks,
    column,
    factorize_names,
    has_values,
    mic_stem,
    picks_frame,
    table_target,
    write_atomic,
    write_per_micrograph,
)

CAPABILITIES = frozenset(
    {"2d", "3d", "score", "diameter", "per_micrograph", "table", "read", "write"}
)
EXTENSIONS = (".star",)
FLAVORS = ("coords", "relion31", "relion30", "topaz", "partinet")
# CLI flavours (registry): the first is the default, "table" ones write one file per split.
FLAVOURS = {
    "per-micrograph": {"options": {"flavor": "coords"}},
    "relion31": {"options": {"flavor": "relion31"}, "table": True},
    "relion30": {"options": {"flavor": "relion30"}, "table": True},
    "topaz": {"options": {"flavor": "topaz"}, "table": True},
    "partinet": {"options": {"flavor": "partinet"}, "table": True},
}
DECIMALS = starwrite.DECIMALS  # RELION writes coordinates with 6 decimals
VERSION = 30001  # the "# version" line of relion31 tables
TEXT_LABELS = ("rlnMicrographName", "rlnTomoName", "rlnMicrographCoordinates")  # kept as text even where a name looks numeric ("0001")


def read(path, **opts):
    """Picks from any STAR with ``rlnCoordinateX/Y``: the ``particles`` block of a 3.1+ file, else
    the first block holding coordinates. ``micrograph`` = ``rlnMicrographName`` as written, else
    ``rlnTomoName``, else the file name without RELION's pick suffix for per-micrograph
    coordinate files (``mic_0001_autopick.star`` → ``mic_0001``); RELION pick indexes and
    RELION 5 tomography picks as the module docstring says; ``score`` = ``rlnAutopickFigureOfMerit``,
    ``diameter`` = ``rlnDiameter``, ``class_id`` = ``rlnClassNumber``, ``z`` = ``rlnCoordinateZ``."""
    from harvest.starread import StarFormatError, read_star

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:  # the one STAR reader: a row with the wrong number of fields is an error, as in crawls
        blocks = read_star(path, parse_as_string=TEXT_LABELS)
    except (StarFormatError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"not a readable STAR file ({exc})") from None
    table = None
    tables = {k: v for k, v in blocks.items() if hasattr(v, "columns")}
    index = _relion.index_table(tables)
    if index is not None:  # a RELION pick job's autopick.star / manualpick.star
        return _relion.read_index(path, index, **opts)
    if "particles" in tables and "rlnCoordinateX" in tables["particles"].columns:
        table = tables["particles"]
    else:
        for df in tables.values():
            if "rlnCoordinateX" in df.columns:
                table = df
                break
    if table is None:
        if any(_relion.has_centred(df) for df in tables.values()):
            return _relion.read_tomo(path, **opts)  # RELION 5 tomography picks
        raise FormatError(
            path,
            "no block with rlnCoordinateX/rlnCoordinateY (blocks: "
            f"{', '.join(repr(k) for k in blocks) or 'none'}); not a particle/coordinate STAR",
        )
    if "rlnCoordinateY" not in table.columns:
        raise FormatError(path, "block has rlnCoordinateX but no rlnCoordinateY")

    def num(name):
        if name not in table.columns:
            return None
        import pandas as pd

        values = pd.to_numeric(table[name], errors="coerce")
        bad = values.isna() & table[name].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise FormatError(path, f"{name} of row {i + 1} is {table[name].iloc[i]!r}, not a number")
        return values.to_numpy(dtype=np.float64)

    mic = _relion.micrograph_names(table, path)
    cls = num("rlnClassNumber")
    frame = picks_frame(
        mic,
        num("rlnCoordinateX"),
        num("rlnCoordinateY"),
        z=num("rlnCoordinateZ"),
        score=num("rlnAutopickFigureOfMerit"),
        diameter=num("rlnDiameter"),
        class_id=None if cls is None or np.isnan(cls).any() else cls,
    )
    frame.attrs["star_flavor"] = (
        "relion31" if "optics" in tables
        else "partinet" if "rlnDiameter" in table.columns
        else "relion30" if "rlnMicrographName" in table.columns
        else "coords"
    )
    return frame


def read_directory(path, **opts):
    """Picks of a RELION pick job directory (its index, 3.x coordinate files or tomography
    picks), or None when ``path`` is no such directory (then every ``.star`` in it is read)."""
    return _relion.read_job_directory(Path(path), **opts)


def sniff_flavor(path) -> str:
    """Which flavour a STAR file is: 'relion31' (has data_optics), 'partinet' (rlnDiameter),
    'relion30' (rlnMicrographName, one table) or 'coords' (coordinates only)."""
    text = Path(path).read_text(errors="replace")
    if "data_optics" in text:
        return "relion31"
    if "_rlnDiameter" in text:
        return "partinet"
    if "_rlnMicrographName" in text:
        return "relion30"
    return "coords"


def write(picks, dest, flavor: str = "coords", overwrite: bool = False, **opts) -> list[Path]:
    """Write picks as STAR; see the module docstring for ``flavor``.

    Options: ``micrographs`` (coords: also write empty files for these), ``pixel_size`` (Å/px of
    the micrographs, relion31 optics), ``voltage`` (kV, 300), ``cs`` (mm, 2.7),
    ``amplitude_contrast`` (0.1), ``diameter`` (px, partinet when the frame has none),
    ``image_ext`` (partinet micrograph name extension, ``.mrc``).
    """
    check_picks(picks, f"STAR ({flavor})")
    if flavor == "coords":
        return _write_coords(picks, dest, overwrite=overwrite, micrographs=opts.get("micrographs"))
    if flavor == "relion31":
        return [_write_relion(picks, dest, overwrite, optics=True, **opts)]
    if flavor == "relion30":
        return [_write_relion(picks, dest, overwrite, optics=False, **opts)]
    if flavor == "topaz":
        return [_write_relion(picks, dest, overwrite, optics=False, integers=True, **opts)]
    if flavor == "partinet":
        return [_write_partinet(picks, dest, overwrite, **opts)]
    raise ValueError(f"unknown STAR flavor {flavor!r}; known: {', '.join(FLAVORS)}")


def _loop_header(name: str, labels: list[str], version: int | None = None) -> str:
    """Block start and loop header (:mod:`harvest.starwrite`, the one STAR layout)."""
    return starwrite.block_start(name, version) + starwrite.loop_header(labels)


def _has(picks, name: str) -> bool:
    return has_values(picks, name)


def _coord_columns(picks, with_z: bool) -> tuple[list[str], list]:
    labels = ["rlnCoordinateX", "rlnCoordinateY"] + (["rlnCoordinateZ"] if with_z else [])
    cols = [_text.Fixed(column(picks, c), DECIMALS, strip=False) for c in "xyz"[: len(labels)]]
    return labels, cols


def _write_coords(picks, dest, overwrite, micrographs) -> list[Path]:
    has_score, has_z = _has(picks, "score"), _has(picks, "z")
    labels = ["rlnCoordinateX", "rlnCoordinateY"] + (["rlnCoordinateZ"] if has_z else [])
    if has_score:
        labels.append("rlnAutopickFigureOfMerit")
    header = _loop_header("", labels).lstrip("\n").encode()

    def render(rows):
        _, cols = _coord_columns(rows, has_z)
        if has_score:
            cols.append(_text.Fixed(column(rows, "score"), DECIMALS, strip=False))
        return _text.render(cols, len(rows))

    return write_per_micrograph(
        picks, dest, ".star", render, overwrite=overwrite, micrographs=micrographs,
        header=header, footer=b"\n",
    )


def _name_column(picks, transform=None) -> _text.Str:
    codes, uniques = factorize_names(picks)
    names = [starwrite.quote(transform(u) if transform else str(u)) for u in uniques]
    return _text.Str(codes=codes, uniques=names)


def _write_relion(picks, dest, overwrite, optics: bool, integers: bool = False, **opts) -> Path:
    target = table_target(dest, "particles.star")
    n = len(picks)
    labels, cols = _coord_columns(picks, _has(picks, "z"))
    if integers:
        cols = [_text.Int(column(picks, c)) for c in "xyz"[: len(labels)]]
    labels.append("rlnMicrographName")
    cols.append(_name_column(picks))
    if _has(picks, "score"):
        labels.append("rlnAutopickFigureOfMerit")
        cols.append(_text.Fixed(column(picks, "score"), DECIMALS, strip=False))
    if "class_id" in picks.columns:
        labels.append("rlnClassNumber")
        cols.append(_text.Int(column(picks, "class_id")))
    if _has(picks, "diameter"):
        labels.append("rlnDiameter")
        cols.append(_text.Fixed(column(picks, "diameter"), DECIMALS, strip=False))
    if optics:
        labels.append("rlnOpticsGroup")
        cols.append(_text.Const("1"))
        head = _optics_block(**opts).lstrip("\n") + _loop_header("particles", labels, VERSION)
    else:
        head = _loop_header("images", labels)
    body = _text.render_bytes(cols, n)
    return write_atomic(target, [head, body, "\n"], overwrite=overwrite)


def _optics_block(pixel_size=None, voltage=300.0, cs=2.7, amplitude_contrast=0.1, **_):
    labels = ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnVoltage", "rlnSphericalAberration",
              "rlnAmplitudeContrast"]
    values = [1, "opticsGroup1", float(voltage), float(cs), float(amplitude_contrast)]
    if pixel_size is not None:
        labels += ["rlnMicrographOriginalPixelSize", "rlnMicrographPixelSize"]
        values += [float(pixel_size)] * 2
    row = "\t".join(starwrite.format_value(v) for v in values)
    return _loop_header("optics", labels, VERSION) + row + "\n"


def _write_partinet(picks, dest, overwrite, diameter=None, image_ext=".mrc", **_) -> Path:
    target = table_target(dest, "particles.star")
    d = column(picks, "diameter")
    if d is None or np.isnan(d).any():
        if diameter is None:
            raise ValueError(
                "PartiNet STAR needs a particle diameter per pick: give diameter= (px; "
                "--boxsize or --diameter on the command line) or a 'diameter' column"
            )
        d = np.where(np.isnan(d), float(diameter), d) if d is not None else np.full(
            len(picks), float(diameter)
        )
    labels = ["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnDiameter"]
    cols = [
        _name_column(picks, lambda s: mic_stem(s) + image_ext),
        _text.Int(column(picks, "x")),
        _text.Int(column(picks, "y")),
        _text.Int(d),
    ]
    head = _loop_header("", labels).lstrip("\n")
    body = _text.render_bytes(cols, len(picks))
    return write_atomic(target, [head, body], overwrite=overwrite)



# --- export layout -----------------------------------------------------------------------------
# An export writes the ``coords`` flavour, one STAR per micrograph: ``{train,val}/images/
# <stem>.mrc`` (linked), ``{train,val}/labels/<stem>.star``, negatives in
# ``{train,val}/labels_negative/`` (the generic layout of converters.layout).
from converters.layout import Layout  # noqa: E402  (kept apart from the reader/writer above)

LAYOUT = Layout()
