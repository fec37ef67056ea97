"""Import picks written by another picker into the catalog as a ``picked`` set.

``import_picks(db, fmt, path, project, name)`` reads ``path`` (one file or a directory of
per-micrograph files) with the format registry, matches each pick's micrograph to the project's
micrographs by :func:`harvest.conventions.micrograph_key` (stems of a cryoglean export that
carry a ``p<project id>_`` prefix are matched without it), and stores the picks with
``Catalog.add_external_set``. Every micrograph must match: otherwise a ValueError lists the
unmatched names and nothing is stored.

Coordinates are taken as pixels of the project's micrographs (DESIGN.md frame). Picks made on
downsampled images are brought back with ``scale`` (coordinates × scale, like ``topaz convert
-x``). Side information a format's reader needs (``READ_NEEDS``; e.g. the image size that
normalised coordinates are multiplied by) is taken from the project's micrographs in the
catalog (their ``nx``, ``ny``), so such picks need no scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from converters.layout import side_information
from harvest.conventions import NO_CLASS, micrograph_key, missing_to_nan, strip_project_prefix


class UnmatchedMicrographsError(ValueError):
    """Picks refer to micrographs the project does not have."""


@dataclass
class ImportResult:
    set_id: int
    project_id: int
    name: str
    particles: int
    micrographs: int

    def summary(self) -> str:
        return (
            f"imported {self.particles} picks on {self.micrographs} micrographs as set "
            f"{self.set_id} ({self.name!r}, stage picked) of project {self.project_id}"
        )


def match_micrographs(names, keys, project_id: int | None = None) -> dict:
    """``{name: key}`` for every pick micrograph name whose key is among ``keys``."""
    keys = set(keys)
    out = {}
    for n in set(map(str, names)):
        k = micrograph_key(n)
        if k not in keys and project_id is not None:  # an export's p<project>_<key> stem
            k = strip_project_prefix(k, project_id)
        if k in keys:
            out[n] = k
    return out


def import_picks(db, fmt: str, path, project, name: str, scale: float | None = None,
                 **read_options) -> ImportResult:
    """Read picks of format ``fmt`` from ``path`` and add them to ``project`` as set ``name``."""
    from converters import registry
    from harvest.catalog import Catalog

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory to import")
    if not str(name).strip():
        raise ValueError("--name must not be empty: it names the imported set")
    spec = registry.get(fmt)
    if "read" not in spec.capabilities:
        raise ValueError(f"format {fmt!r} cannot be read")
    with Catalog(db) as cat:
        pid = cat.find_project(project)
        mics = cat.micrographs(project_ids=[pid])
        keys = set(mics["key"].astype(str))
        opts = dict(read_options)
        known = pd.DataFrame({  # the catalog's micrographs as side information sees them
            "stem": mics["key"].astype(str), "out_nx": mics["nx"], "out_ny": mics["ny"],
            "pixel_size": mics["pixel_size"], "scale_x": 1.0,
        })
        for need in sorted(spec.read_needs - set(opts)):
            opts[need] = _ByKey(side_information(need, known), pid)
        picks = registry.read_picks(path, fmt, **opts)
        if picks.empty:
            raise ValueError(f"{path}: no picks found to import")
        matched = match_micrographs(picks["micrograph"], keys, pid)
        unmatched = sorted(set(picks["micrograph"].astype(str)) - set(matched))
        if unmatched:
            shown = ", ".join(unmatched[:10]) + (" ..." if len(unmatched) > 10 else "")
            raise UnmatchedMicrographsError(
                f"{path}: {len(unmatched)} micrograph(s) not in project {pid}: {shown}; "
                "check --project or the file names"
            )
        frame = pd.DataFrame(
            {"micrograph": picks["micrograph"].astype(str).map(matched).to_numpy(),
             "x": picks["x"].to_numpy(float), "y": picks["y"].to_numpy(float)}
        )
        if scale is not None and scale != 1:
            if not scale > 0:
                raise ValueError(f"--scale must be > 0, got {scale}")
            frame["x"] *= float(scale)
            frame["y"] *= float(scale)
        if "score" in picks.columns:  # RELION's −999 "no value" is missing, as in a crawl
            frame["score"] = missing_to_nan(pd.to_numeric(picks["score"], errors="coerce"))
        if "class_id" in picks.columns:  # kept as the file numbers them; none → NO_CLASS
            cls = missing_to_nan(pd.to_numeric(picks["class_id"], errors="coerce"))
            frame["class_id"] = np.where(np.isfinite(cls) & (cls >= 0), cls, NO_CLASS).astype(
                np.int64)
        if "z" in picks.columns and picks["z"].notna().any():  # tomogram picks keep z
            frame["z"] = pd.to_numeric(picks["z"], errors="coerce").to_numpy(float) * (
                float(scale) if scale else 1.0)
        set_id = cat.add_external_set(pid, name, frame, stage="picked")
    return ImportResult(set_id=int(set_id), project_id=int(pid), name=name,
                        particles=len(frame), micrographs=int(frame["micrograph"].nunique()))


class _ByKey(dict):
    """``{catalog key: value}`` of side information that also answers for micrograph names
    whose key (or export stem) is a catalog key."""

    def __init__(self, sizes: dict, project_id: int):
        super().__init__(sizes)
        self._pid = project_id

    def __missing__(self, name):
        hit = match_micrographs([name], self.keys(), self._pid)
        if name in hit:
            return dict.__getitem__(self, hit[name])
        raise KeyError(name)

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name):
        return self.get(name) is not None

