"""``OUT/manifest.json``: what an export contains and how it was made.

Keys (``MANIFEST_VERSION`` 1):

``cryoglean_version``, ``manifest_version``, ``created_at`` (UTC ISO 8601), ``format``,
``layout`` (``native`` or ``split_dirs``), ``command`` (the options as given),
``catalog`` {``path``, ``fingerprint`` (sha256 over the catalog's schema version, newest crawl
and the selected set ids with their counts), ``schema_version``, ``last_crawl``},
``selection`` (projects, jobs, sets, stages per micrograph, rules, skipped unreadable projects),
``filters`` (limit, dropped count and ids, unknowns passed, per filter),
``counts`` {train|val: {micrographs, positives, negatives}}, ``split`` {by, val_fraction,
seed}, ``images`` {mode, scale, width, normalize, equalize, written, linked, copied},
``coordinates`` {frame, flip_y, units}, ``side_files`` (paths relative to the export of the
image lists and configs the format's layout wrote beside its labels), ``negatives``
{requested, written_as},
``micrographs`` (one entry per exported micrograph: stem, split, project, key, ``image`` (path
of the exported image relative to the export, or null when none was written), source path,
size in and out, scale_x, scale_y, stage, positives, negatives, picked_count,
sparse_fraction, diameter in Å and exported px, ctf_max_res, total_motion, ctf/motion unknown).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def _clean(value):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None, paths to str."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_clean(v) for v in seq]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:  # pandas NA/NaT
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def catalog_fingerprint(schema_version, last_crawl, sets: list[tuple[int, int]]) -> str:
    """sha256 (hex, 16 chars) of the catalog state an export depends on: schema version, newest
    crawl marker and ``(set id, particle count)`` of every set used."""
    h = hashlib.sha256()
    h.update(json.dumps([_clean(schema_version), _clean(last_crawl),
                         sorted((int(a), int(b)) for a, b in sets)]).encode())
    return h.hexdigest()[:16]


def _cryoglean_version() -> str:
    """The installed distribution's version (converters/ does not import the CLI package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cryoglean")
    except PackageNotFoundError:
        return "unknown (not installed)"


def new_manifest(fmt: str, command: dict) -> dict:
    return {
        "manifest_version": MANIFEST_VERSION,
        "cryoglean_version": _cryoglean_version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": fmt,
        "command": command,
    }


def write_manifest(directory: str | os.PathLike, manifest: dict) -> Path:
    """Write ``manifest.json`` (indented, keys in insertion order, NaN as null)."""
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(_clean(manifest), indent=2, allow_nan=False) + "\n")
    return path


def read_manifest(directory: str | os.PathLike) -> dict:
    """Read an export's manifest; FileNotFoundError naming the directory when absent."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; is {directory} a cryoglean export?")
    return json.loads(path.read_text())
