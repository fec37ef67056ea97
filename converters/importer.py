"""Import picks written by another picker into the catalog as a ``picked`` set.

``import_picks(db, fmt, path, project, name)`` reads ``path`` (one file or a directory of
per-micrograph files) with the format registry, matches each pick's micrograph to the project's
micrographs by :func:`harvest.conventions.micrograph_key` (stems of a cryoglean export that
carry a ``p<project id>_`` prefix are matched without it), and stores the picks with
``Catalog.add_external_set``. Every micrograph must match: otherwise a ValueError lists the
unmatched names and nothing is stored.

Coordinates are taken as pixels of the project's micrographs (DESIGN.md frame). Picks made on
downsampled images are brought back per micrograph with x and y scaled separately (a width
rounded to an integer makes the two ratios differ: one factor put a THI round trip up to 3.4 px
off), from, in this order:

- ``scale``: one factor for both axes (coordinates × scale, like ``topaz convert -x``);
- ``images``: the folder of the images the picks were made on: ``x × nx / nx'`` and
  ``y × ny / ny'`` with ``nx', ny'`` read from ``<images>/<stem>.<ext>`` and ``nx, ny`` the
  micrograph's (catalog, else ``micrograph_size``);
- a cryoglean export the path lies in (its ``manifest.json``): ``x / scale_x``, ``y / scale_y``
  of each exported micrograph.

Values are checked before anything is stored: a pick whose position is not finite or lies off
its micrograph (by the catalog's sizes, else ``micrograph_size``; tolerance
:data:`harvest.conventions.EDGE_MARGIN`, as in a crawl) refuses the whole import with one line
naming the file, the count and the first such pick; nothing is stored.

Side information a format's reader needs (``READ_NEEDS``; e.g. the image size that normalised
coordinates are multiplied by) is taken from the project's micrographs in the catalog (their
``nx``, ``ny``; else ``micrograph_size``), so such picks need no scale. RELION's own pick files
(per-micrograph ``*_autopick.star``, a job's ``autopick.star`` index, a job directory, RELION 5
tomography picks) are read with the project's root for the paths they hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from converters.layout import side_information
from converters.sizes import parse_size, shown
from harvest.conventions import (
    EDGE_MARGIN,
    NO_CLASS,
    micrograph_key,
    micrograph_stem,
    missing_to_nan,
    positions_valid,
    strip_project_prefix,
)


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
                 images=None, micrograph_size=None, **read_options) -> ImportResult:
    """Read picks of format ``fmt`` from ``path`` and add them to ``project`` as set ``name``
    (``scale``, ``images``, ``micrograph_size``: see the module docstring)."""
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
        root = cat.projects().set_index("id").loc[pid, "root"]
        keys = set(mics["key"].astype(str))
        opts = dict(read_options)
        opts.setdefault("project_root", str(root))  # RELION files hold project-relative paths
        size = parse_size(micrograph_size)
        nx = pd.to_numeric(mics["nx"], errors="coerce").astype("float64")
        ny = pd.to_numeric(mics["ny"], errors="coerce").astype("float64")
        if size is not None:
            nx, ny = nx.fillna(float(size[0])), ny.fillna(float(size[1]))
        known = pd.DataFrame({  # the catalog's micrographs as side information sees them
            "stem": mics["key"].astype(str), "out_nx": nx, "out_ny": ny,
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
        names = picks["micrograph"].astype(str).to_numpy()
        normalised = "image_size" in spec.read_needs  # unnormalised with micrograph sizes
        by_key = known.sort_values("out_nx").drop_duplicates("stem").set_index("stem")
        sx, sy = _scales(path, names, matched, by_key, pid, scale, images, normalised)
        frame["x"] *= sx
        frame["y"] *= sy
        if "score" in picks.columns:  # RELION's −999 "no value" is missing, as in a crawl
            frame["score"] = missing_to_nan(pd.to_numeric(picks["score"], errors="coerce"))
        if "class_id" in picks.columns:  # kept as the file numbers them; none → NO_CLASS
            cls = missing_to_nan(pd.to_numeric(picks["class_id"], errors="coerce"))
            frame["class_id"] = np.where(np.isfinite(cls) & (cls >= 0), cls, NO_CLASS).astype(
                np.int64)
        if "z" in picks.columns and picks["z"].notna().any():  # tomogram picks keep z
            frame["z"] = pd.to_numeric(picks["z"], errors="coerce").to_numpy(float) * sx
        _check_positions(path, frame, mics, size)
        set_id = cat.add_external_set(pid, name, frame, stage="picked")
    return ImportResult(set_id=int(set_id), project_id=int(pid), name=name,
                        particles=len(frame), micrographs=int(frame["micrograph"].nunique()))


def _check_positions(path: Path, frame: pd.DataFrame, mics: pd.DataFrame, size) -> None:
    """ValueError (nothing is stored) when a pick's position is not finite or lies off its
    micrograph (:func:`harvest.conventions.positions_valid`, tolerance
    :data:`~harvest.conventions.EDGE_MARGIN`) by the catalog's sizes (else ``size``); scores of
    ±inf become unknown (NaN)."""
    by_key = mics.assign(key=mics["key"].astype(str)).drop_duplicates("key").set_index("key")
    keys = frame["micrograph"]

    def per_pick(col, fallback):
        v = pd.to_numeric(by_key[col], errors="coerce") if col in by_key else None
        out = keys.map(v).to_numpy(float) if v is not None else np.full(len(frame), np.nan)
        if fallback is not None:
            out = np.where(np.isfinite(out), out, float(fallback))
        return out

    nx = per_pick("nx", size[0] if size is not None else None)
    ny = per_pick("ny", size[1] if size is not None else None)
    z = frame["z"].to_numpy(float) if "z" in frame.columns else None
    nz = per_pick("nz", None) if z is not None else None
    ok = positions_valid(frame["x"].to_numpy(float), frame["y"].to_numpy(float), nx, ny, z, nz)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        where = f"x={frame['x'].iloc[i]:g}, y={frame['y'].iloc[i]:g}" + (
            f", z={z[i]:g}" if z is not None else "")
        dims = f"{nx[i]:.0f}x{ny[i]:.0f} px" if np.isfinite(nx[i]) else "size unknown"
        raise ValueError(
            f"{path}: {int((~ok).sum())} of {len(frame)} picks have a position that is not "
            f"finite or lies more than {EDGE_MARGIN:.0%} of the micrograph's size outside it "
            f"(e.g. {where} on {keys.iloc[i]}, {dims}); nothing imported: fix or remove those "
            "rows (or check --scale/--images)")
    if "score" in frame.columns:
        score = frame["score"].to_numpy(float)
        frame["score"] = np.where(np.isinf(score), np.nan, score)


def _scales(path: Path, names, matched: dict, known: pd.DataFrame, pid: int, scale, images,
            normalised: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-pick x and y factors from the picks' images to the micrographs (module docstring)."""
    n = len(names)
    one = np.ones(n)
    if scale is not None and scale != 1:
        if not scale > 0:
            raise ValueError(f"--scale must be > 0, got {scale}")
        return one * float(scale), one * float(scale)
    if normalised:
        return one, one
    if images is not None:
        from converters.images import micrograph_shape

        images = Path(images)
        if not images.is_dir():
            raise FileNotFoundError(f"{images}: no such folder of images (--images)")
        factor: dict = {}
        lacking = []
        for name in dict.fromkeys(names):
            key = matched[name]
            img = _image_of(images, name, key, pid)
            nx, ny = known["out_nx"].get(key, np.nan), known["out_ny"].get(key, np.nan)
            if img is None or pd.isna(nx) or pd.isna(ny):
                lacking.append(name)
                continue
            inx, iny = micrograph_shape(img)
            factor[name] = (float(nx) / inx, float(ny) / iny)
        if lacking:
            raise ValueError(
                f"{images}: cannot scale {shown(lacking)}: no image <stem>.<ext> there or no "
                "micrograph size (catalog or --micrograph-size)")
        fx = np.array([factor[m][0] for m in names])
        fy = np.array([factor[m][1] for m in names])
        return fx, fy
    man = _export_manifest(path)
    if man is None:
        return one, one
    by_stem = {m["stem"]: m for m in man.get("micrographs", [])}
    fx, fy = one.copy(), one.copy()
    for i, name in enumerate(names):
        m = by_stem.get(micrograph_stem(name))
        if m is not None:
            fx[i] = 1.0 / float(m.get("scale_x") or 1.0)
            fy[i] = 1.0 / float(m.get("scale_y") or 1.0)
    return fx, fy


def _image_of(images: Path, name: str, key: str, pid: int) -> Path | None:
    from harvest.conventions import MICROGRAPH_EXTENSIONS

    for stem in dict.fromkeys((micrograph_stem(name), key, f"p{pid}_{key}")):
        for ext in MICROGRAPH_EXTENSIONS:
            p = images / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def _export_manifest(path: Path) -> dict | None:
    """The manifest of the cryoglean export ``path`` lies in (up to 4 folders up), or None."""
    from converters.manifest import MANIFEST_NAME, read_manifest

    p = path if path.is_dir() else path.parent
    for folder in [p, *list(p.parents)[:4]]:
        if (folder / MANIFEST_NAME).is_file():
            return read_manifest(folder)
    return None


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

