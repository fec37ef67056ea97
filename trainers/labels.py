"""Label I/O for the trainers, always through the format registry (``converters.registry``).

EPicker's ``--label_type``/``--output_type`` values (thi, star, box, coord) are registry format
names; any other 2D registry name works too. ``coord`` is EPicker's per-micrograph ``.coord``;
a single Topaz table (``.txt``/``.tab``) given with ``coord`` is read as ``topaz``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harvest.conventions import micrograph_key

TOPAZ_SUFFIXES = (".txt", ".tab")


class LabelError(ValueError):
    """A label file or label option cannot be used."""


def registry():
    from converters import registry as reg

    return reg


def format_name(label_type: str, path: str | Path | None = None) -> str:
    """Registry format for an EPicker label type or registry name (ValueError with close-match
    suggestions from the registry for an unknown one)."""
    if label_type == "coord" and path is not None:
        p = Path(path)
        if p.is_file() and p.suffix.lower() in TOPAZ_SUFFIXES:
            return "topaz"
    return registry().get(label_type).name


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


def read_labels(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Picks from a label file or a directory of per-micrograph label files (registry formats).

    Returns the registry's pivot frame (``micrograph, x, y`` in px of the labelled micrograph,
    DESIGN frame, plus optional ``score, diameter, radius, filament``) with a ``key`` column
    (:func:`micrograph_key` of ``micrograph``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such label file or directory")
    fmt = format_name(fmt, path) if fmt else None
    df = registry().read_picks(str(path), fmt).copy()
    df["key"] = [micrograph_key(str(m)) for m in df["micrograph"]] if len(df) else []
    return df


def label_micrographs(path: str | Path, fmt: str | None = None) -> list[str]:
    """Micrograph keys a label location covers, including per-micrograph files with no picks."""
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
    keys.update(read_labels(path, fmt)["key"].tolist())
    return sorted(keys)


def write_labels(
    picks: pd.DataFrame, dest: str | Path, fmt: str, micrographs=None, **opts
) -> list[Path]:
    """Write picks (pivot frame, px of the micrographs) through the registry writer, one file
    per micrograph for per-micrograph formats (``micrographs`` adds empty files for those
    without picks), overwriting earlier files."""
    reg = registry()
    spec = reg.get(fmt)
    if micrographs is not None and "per_micrograph" in spec.capabilities:
        opts["micrographs"] = list(micrographs)
    return reg.write_picks(picks, str(dest), spec.name, overwrite=True, **opts)
