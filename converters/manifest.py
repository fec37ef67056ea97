"""``OUT/manifest.json``: what an export contains and how it was made.

Keys (``MANIFEST_VERSION`` 1):

``cryoglean_version``, ``manifest_version``, ``created_at`` (UTC ISO 8601), ``format``,
``layout`` (``native`` or ``split_dirs``), ``command`` (the options as given),
``catalog`` {``path``, ``fingerprint`` (sha256 over the catalog's schema version, newest crawl
and the selected set ids with their counts), ``schema_version``, ``last_crawl``},
``selection`` (projects, jobs, sets, stages per micrograph, rules, skipped unreadable projects),
``filters`` (limit, dropped count and ids, unknowns passed, per filter),
``counts`` {train|val: {micrographs, positives, negatives}}, ``split`` {by, val_fraction,
seed}, ``images`` {mode, scale, width, normalize, equalize, written, linked, copied,
not_linked_missing (micrographs whose file is gone: labels without a link)}, ``sizes``
{sources (micrographs per size source: catalog, header, option, unknown), rule,
micrograph_size_option}, ``flavour`` (the format flavour written, or null),
``coordinates`` {frame, flip_y, units}, ``side_files`` (paths relative to the export of the
image lists and configs the format's layout wrote beside its labels), ``negatives``
{requested, written_as},
``micrographs`` (one entry per exported micrograph: stem, split, project, key, ``image`` (path
of the exported image relative to the export, or null when none was written), source path,
size in and out (null where unknown and not needed), ``size_source`` (``catalog`` [with the
crawl's detail], ``header``, ``option`` or ``unknown``), scale_x, scale_y, stage, positives, negatives, picked_count,
sparse_fraction, diameter in Å and exported px, ctf_max_res, total_motion, ctf/motion unknown).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict
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


def export_manifest(fmt, opts, img, catalog_path, fingerprint, rec, table, counts, dropped_size,
                    results, layout, missing_images=()) -> dict:
    """The manifest of an export (see the module docstring): ``opts`` the export's options,
    ``img`` its image settings, ``rec`` the selection's record, ``table`` its micrographs,
    ``results`` the image writes, ``layout`` the writer of the format's layout."""
    import pandas as pd

    man = new_manifest(fmt, opts.command or _options_dict(opts))
    man["flavour"] = layout.spec.flavour
    man["layout"] = "native" if layout.native else "split_dirs"
    man["catalog"] = {"path": str(Path(catalog_path).resolve()), **fingerprint}
    man["selection"] = {
        k: rec.get(k) for k in ("projects", "jobs", "job_ids", "sets", "stages_per_micrograph",
                                "diameter_rule", "separation_rule", "skipped_unreadable_projects",
                                "particles_loaded")
    }
    man["selection"]["options"] = rec.get("options")
    man["filters"] = {
        **rec.get("filters", {}),
        "min_score": {"limit": opts.selection.min_score,
                      "dropped_particles": rec.get("dropped_by_min_score", 0)},
        "classes": {"classes": list(opts.selection.classes),
                    "dropped_particles": rec.get("dropped_by_class", 0)},
        "deduplication": {"dropped_particles": rec.get("dropped_as_duplicates", 0),
                          "rule": rec.get("separation_rule"),
                          "skipped_micrographs": rec.get("not_deduplicated_micrographs", [])},
        "images": {"dropped": len(dropped_size), "dropped_micrographs": dropped_size},
    }
    man["unknown_ctf_or_motion"] = (
        "micrographs with unknown CTF resolution or motion pass the filters"
    )
    man["counts"] = counts
    man["split"] = {"by": opts.split_by, "val_fraction": opts.val_fraction, "seed": opts.seed,
                    "unit": "exposure: micrographs sharing a key or a CryoSPARC exposure uid, "
                            "across projects, are on one side",
                    "shared_exposures": int(table["exposure"].duplicated().sum())
                    if "exposure" in table else 0}
    man["images"] = {
        **{k: img[k] for k in ("images", "scale", "width", "normalize", "equalize")},
        "mode": img["images"],
        "written": results.count("write"), "linked": results.count("link"),
        "copied": results.count("copy"),
        "not_linked_missing": list(missing_images),
    }
    from converters.sizes import counts as size_counts

    man["sizes"] = {
        "sources": size_counts(table),
        "rule": "nx, ny per micrograph from the catalog (crawl: file header or metadata), else "
                "the micrograph file's header at export, else --micrograph-size; unknown where "
                "the export needs none",
        "micrograph_size_option": opts.selection.micrograph_size,
    }
    man["coordinates"] = {
        "frame": "pixels of the exported image: x = column, y = row, origin at the first "
                 "stored pixel (DESIGN.md); x' = x * out_nx / nx, y' = y * out_ny / ny",
        "flip_y": bool(opts.selection.flip_y),
        "z": "0 for 2D micrographs" if layout.spec.dims == (3,) else None,
    }
    man["side_files"] = [str(p.relative_to(layout.tmp)) for p in layout.side_files]
    man["negatives"] = {"requested": bool(opts.selection.negatives),
                        "written_as": layout.negatives_as,
                        "dropped_near_positives": rec.get("negatives_dropped_near_positives", 0)}
    mics = []
    for r in table.itertuples():
        mics.append({
            "stem": r.stem, "split": r.split, "project_id": int(r.project_id), "key": r.key,
            "exposure": getattr(r, "exposure", None),
            "image": r.image_rel if isinstance(r.image_rel, str) else None,
            "path": str(r.abs_path), "nx": _int(r.nx), "ny": _int(r.ny),
            "size_source": getattr(r, "size_source", None),
            "out_nx": _int(r.out_nx), "out_ny": _int(r.out_ny),
            "scale_x": float(r.scale_x), "scale_y": float(r.scale_y),
            "pixel_size": r.pixel_size, "stage": r.stage,
            "positives": int(r.n_positive), "negatives": int(r.n_negative),
            "picked_count": r.picked_count, "sparse_fraction": r.sparse_fraction,
            "diameter_A": r.diameter_A, "diameter_px": r.diameter_px * r.scale_x,
            "ctf_max_res": r.ctf_max_res, "total_motion": r.total_motion,
            "ctf_unknown": bool(pd.isna(r.ctf_max_res)),
            "motion_unknown": bool(pd.isna(r.total_motion)),
        })
    man["micrographs"] = mics
    return man


def _int(value):
    """int, or None where unknown (a size the export did not need)."""
    try:
        return None if value is None or not math.isfinite(float(value)) else int(value)
    except (TypeError, ValueError):
        return None


def _options_dict(opts) -> dict:
    d = asdict(opts)
    d.pop("command", None)
    return d


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
