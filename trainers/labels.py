"""Label I/O for the trainers, always through the format registry (``converters.registry``).

``--label_type``/``--output_type`` values are registry format names; the trainers name no
format themselves. A format whose reader needs side information (``FormatSpec.read_needs``,
e.g. image sizes to undo normalised coordinates) gets it here: ``image_size={stem: (nx, ny)}``
from an export's manifest or from the micrograph files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harvest.conventions import micrograph_key

if TYPE_CHECKING:  # frames come from the registry; writing picks needs no pandas import
    import pandas as pd


class LabelError(ValueError):
    """A label file or label option cannot be used."""


def registry():
    from converters import registry as reg

    return reg


def format_name(label_type: str, path: str | Path | None = None) -> str:
    """Registry format for a format name (ValueError with close-match suggestions from the
    registry for an unknown one). A single label file whose extension the named format does
    not use is read as the format its content shows (e.g. a Topaz table given as EPicker's
    ``coord``)."""
    name = registry().get(label_type).name
    if path is not None:
        p = Path(path)
        if p.is_file() and p.suffix.lower() not in registry().get(name).extensions:
            try:
                return registry().guess_format(p)
            except ValueError:
                return name
    return name


def extensions(fmt: str) -> tuple[str, ...]:
    return tuple(registry().get(fmt).extensions)


def _guess(path: Path) -> str | None:
    reg = registry()
    if path.is_file():
        return reg.guess_format(path)
    for f in sorted(path.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            try:
                return reg.guess_format(f)
            except ValueError:
                continue
    return None


def _guess_quiet(path: Path) -> str | None:
    try:
        return _guess(path)
    except ValueError:
        return None  # the registry's reader says what is wrong


def image_size(path: str | Path) -> tuple[int, int]:
    """``(nx, ny)`` of a micrograph file (MRC: header only)."""
    p = Path(path)
    if p.suffix.lower() in (".mrc", ".mrcs"):
        from converters.images import micrograph_shape

        return micrograph_shape(p)
    from trainers.data import read_image

    ny, nx = read_image(p).shape[-2:]
    return int(nx), int(ny)


def sizes_from_images(folder: str | Path) -> dict[str, tuple[int, int]]:
    """``{stem: (nx, ny)}`` of the micrographs of a folder (keyed by stem and by key)."""
    from trainers.data import list_micrographs

    sizes = {}
    for f in list_micrographs(folder):
        size = image_size(f)
        sizes[f.stem] = size
        sizes.setdefault(micrograph_key(f.name), size)
    return sizes


def sizes_from_manifest(path: str | Path, levels: int = 3) -> dict[str, tuple[int, int]] | None:
    """``{stem: (out_nx, out_ny)}`` of the export that holds ``path`` (its directory or one of
    ``levels`` parents has a manifest.json); None when there is none."""
    from converters.dataset import is_export, open_export

    p = Path(path).resolve()
    for d in [p, *list(p.parents)[:levels]]:
        if d.is_dir() and is_export(d):
            mics = open_export(d).micrographs()
            return {str(r.stem): (int(r.out_nx), int(r.out_ny)) for r in mics.itertuples()
                    if r.out_nx == r.out_nx and r.out_ny == r.out_ny}
    return None


def read_options(path: str | Path, fmt: str | None, images=None, image_sizes=None) -> dict:
    """Keyword arguments the registry reader of ``fmt`` needs (its ``read_needs``): image
    sizes from ``image_sizes``, else the micrographs in ``images``, else the manifest of an
    export around ``path``; LabelError naming what is missing otherwise."""
    if fmt is None:
        return {}
    needs = registry().get(fmt).read_needs
    opts = {}
    if "image_size" in needs:
        sizes = image_sizes
        if sizes is None and images is not None:
            sizes = sizes_from_images(images)
        if sizes is None:
            sizes = sizes_from_manifest(path)
        if sizes is None:
            raise LabelError(
                f"{path}: {fmt} labels are normalised to the image size, which is unknown here; "
                "give the micrographs (--images DIR / --data DIR) or read labels inside an "
                "export (manifest.json)"
            )
        opts["image_size"] = sizes
    unknown = set(needs) - {"image_size"}
    if unknown:
        raise LabelError(f"{path}: format {fmt} needs {sorted(unknown)} to be read, which the "
                         "trainers cannot supply")
    return opts


def read_labels(path: str | Path, fmt: str | None = None, images=None,
                image_sizes=None) -> pd.DataFrame:
    """Picks from a label file or a directory of per-micrograph label files (registry formats).

    Returns the registry's pivot frame (``micrograph, x, y`` in px of the labelled micrograph,
    DESIGN frame, plus optional ``score, diameter, radius, filament, z``) with a ``key`` column
    (:func:`micrograph_key` of ``micrograph``). ``images`` / ``image_sizes``: see
    :func:`read_options`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such label file or directory")
    fmt = format_name(fmt, path) if fmt else None
    guessed = fmt or _guess_quiet(path)
    opts = read_options(path, guessed, images, image_sizes)
    df = registry().read_picks(str(path), fmt, **opts).copy()
    df["key"] = [micrograph_key(str(m)) for m in df["micrograph"]] if len(df) else []
    return df


def label_micrographs(path: str | Path, fmt: str | None = None,
                      labels: pd.DataFrame | None = None, images=None) -> list[str]:
    """Micrograph keys a label location covers, including per-micrograph files with no picks
    (``labels``: the frame :func:`read_labels` already returned, so nothing is read twice)."""
    path = Path(path)
    keys: set[str] = set()
    if path.is_dir():
        name = format_name(fmt, path) if fmt else _guess(path)
        if name is not None:
            spec = registry().get(name)
            if "per_micrograph" in spec.capabilities:
                exts = tuple(e.lower() for e in spec.extensions)
                for f in path.iterdir():
                    if f.is_file() and f.suffix.lower() in exts:
                        keys.add(micrograph_key(f.stem))
    if labels is None:
        labels = read_labels(path, fmt, images=images)
    keys.update(labels["key"].tolist())
    return sorted(keys)


def write_labels(
    picks, dest: str | Path, fmt: str, micrographs=None, **opts
) -> list[Path]:
    """Write picks (pivot frame or its numpy form, :class:`converters.registry.PickColumns`;
    px of the micrographs) through the registry writer, one file
    per micrograph for per-micrograph formats (``micrographs`` adds empty files for those
    without picks), overwriting earlier files."""
    reg = registry()
    spec = reg.get(fmt)
    if micrographs is not None and "per_micrograph" in spec.capabilities:
        opts["micrographs"] = list(micrographs)
    return reg.write_picks(picks, str(dest), spec.name, overwrite=True, **opts)
