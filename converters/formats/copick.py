"""copick picks JSON (formats.md §10; copick ``models.py``, ``impl/filesystem.py``).

One file per run (tomogram) and object: ``<user_id>_<session_id>_<object>.json`` holding
``pickable_object_name``, ``user_id``, ``session_id``, ``run_name``, ``voxel_spacing``,
``unit: "angstrom"``, ``trust_orientation`` and ``points``: ``{"location": {"x", "y", "z"}`` in Å
(uncentred: voxel index × voxel spacing), ``"transformation_"`` (4×4, identity here),
``"instance_id"``, ``"score"}``. Names must not contain underscores (copick splits file names on
them).

Writing into directory ``dest`` follows copick's overlay layout:
``dest/<run>/Picks/<user>_<session>_<object>.json`` (``dest`` = the ``ExperimentRuns`` folder);
a ``dest`` ending in ``.json`` is written as that one file (one run). Reading converts Å back to
voxels with the file's ``voxel_spacing`` (or ``voxel_spacing=`` to override).

Export layout (``LAYOUT``): ``{train,val}/images/<stem>.mrc`` (linked) and
``{train,val}/labels/<run>/Picks/cryoglean_0_particle.json``; each run stores Å with
``voxel_spacing`` = its exported pixel size (``WRITE_NEEDS``), so micrographs of several pixel
sizes export together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from converters.layout import Layout

from ._common import (
    FormatError,
    check_picks,
    check_targets,
    column,
    group_rows,
    mic_stem,
    picks_frame,
    write_atomic,
)

CAPABILITIES = frozenset({"3d", "score", "per_micrograph", "read", "write"})
EXTENSIONS = (".json",)
RECURSIVE = True  # runs keep their picks in <run>/Picks/
WRITE_NEEDS = ("voxel_spacing",)  # Å per voxel of each run, to store Å locations
LAYOUT = Layout()
_IDENTITY = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0],
             [0.0, 0.0, 0.0, 1.0]]


def read(path, voxel_spacing=None, **_):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"not JSON ({exc.msg})", exc.lineno) from None
    if not isinstance(doc, dict) or "points" not in doc:
        raise FormatError(path, "no 'points' list; not a copick picks file")
    spacing = voxel_spacing if voxel_spacing is not None else doc.get("voxel_spacing")
    if not spacing or float(spacing) <= 0:
        raise FormatError(path, "voxel_spacing missing or not positive; pass voxel_spacing= (Å)")
    unit = doc.get("unit", "angstrom")
    if unit != "angstrom":
        raise FormatError(path, f"unit {unit!r} is not supported (copick writes 'angstrom')")
    points = doc["points"] or []
    if not isinstance(points, list):
        raise FormatError(path, f"'points' is a {type(points).__name__}, not a list of points")
    loc = np.full((len(points), 3), np.nan)
    score = np.full(len(points), np.nan)
    for i, p in enumerate(points):
        try:
            loc[i] = [float(p["location"][a]) for a in "xyz"]
        except (KeyError, TypeError, ValueError):
            raise FormatError(path, f"point {i} has no numeric location x/y/z") from None
        s = p.get("score")
        try:
            score[i] = np.nan if s is None else float(s)
        except (TypeError, ValueError):
            raise FormatError(path, f"point {i} has a score that is not a number: {s!r}") from None
    run = doc.get("run_name") or path.parent.parent.name or path.stem
    loc = loc / float(spacing)
    return picks_frame(str(run), loc[:, 0], loc[:, 1], z=loc[:, 2],
                       score=None if np.isnan(score).all() else score)


def _spacing(voxel_spacing, name: str) -> float:
    """The voxel spacing of run ``name``: the number, or its entry in a mapping (by name or
    stem)."""
    value = voxel_spacing
    if isinstance(voxel_spacing, Mapping):
        value = voxel_spacing.get(name, voxel_spacing.get(mic_stem(name)))
        if value is None:
            raise ValueError(f"copick picks: no voxel_spacing for run {name!r}")
    if float(value) <= 0:
        raise ValueError("copick picks need voxel_spacing= (Å per voxel) to store Å locations")
    return float(value)


def _check_name(value: str, what: str) -> str:
    value = str(value)
    if not value or "_" in value:
        raise ValueError(f"copick {what} {value!r} must be non-empty without underscores")
    return value


def write(picks, dest, voxel_spacing=None, object_name: str = "particle",
          user_id: str = "cryoglean", session_id: str = "0", trust_orientation: bool = False,
          overwrite: bool = False, **_):
    """copick picks JSON per run; ``voxel_spacing`` (Å per voxel of the pivot's coordinates,
    one number or a mapping run name/stem -> number) is required. Missing scores are 1.0."""
    check_picks(picks, "copick picks", ("micrograph", "x", "y", "z"))
    if voxel_spacing is None:
        raise ValueError("copick picks need voxel_spacing= (Å per voxel) to store Å locations")
    obj = _check_name(object_name, "object name")
    user = _check_name(user_id, "user id")
    session = _check_name(session_id, "session id")
    fname = f"{user}_{session}_{obj}.json"
    order, names, starts = group_rows(picks)
    dest = Path(dest)
    single = dest.suffix.lower() == ".json" and not dest.is_dir()
    if single and len(names) > 1:
        raise ValueError(f"{dest}: one copick file holds one run; give a directory")
    targets = [dest] if single else [dest / mic_stem(n) / "Picks" / fname for n in names]
    spacings = [_spacing(voxel_spacing, n) for n in names]
    check_targets(targets, overwrite)
    loc = np.stack([column(picks, c) for c in "xyz"], axis=1)
    score = column(picks, "score", 1.0)
    for i, (name, target) in enumerate(zip(names, targets)):
        rows = order[starts[i] : starts[i + 1]]
        spacing = spacings[i]
        loc[rows] *= spacing
        points = [
            {
                "location": {"x": float(loc[r, 0]), "y": float(loc[r, 1]), "z": float(loc[r, 2])},
                "transformation_": _IDENTITY,
                "instance_id": 0,
                "score": float(score[r]),
            }
            for r in rows
        ]
        doc = {
            "pickable_object_name": obj,
            "user_id": user,
            "session_id": session,
            "run_name": mic_stem(name),
            "voxel_spacing": spacing,
            "unit": "angstrom",
            "trust_orientation": bool(trust_orientation),
            "points": points,
        }
        write_atomic(target, json.dumps(doc), overwrite=overwrite)
    return targets
