"""Picks from elsewhere (``cryoglean import``) as a particle set of a catalogued project.

:func:`add_external_set` (behind :meth:`harvest.catalog.Catalog.add_external_set`) matches each
pick's micrograph to one of the project's micrographs (:func:`match_micrographs`: by path as
written or resolved, then by the canonical key of :func:`harvest.conventions.micrograph_key`)
and stores the picks as a job-less set (``origin='external'``) in its own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harvest.catalog.codec import insert_set
from harvest.catalog.views import refresh_project_totals
from harvest.conventions import micrograph_key, stage_rank
from harvest.records import ParticleSetRecord

if TYPE_CHECKING:
    from harvest.catalog.store import Catalog


def match_micrographs(mics: pd.DataFrame, names: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """({name: micrograph id}, [unmatched names]) for micrograph names given by another tool.

    ``mics`` is :meth:`Catalog.micrographs` of one project. A name matches a micrograph's path
    (as written, then resolved), else its key; among micrographs sharing a key the one whose
    size is known wins, then the lowest id.
    """
    by_path: dict[str, int] = {}
    for r in mics.itertuples():
        by_path.setdefault(r.path, r.id)
        if r.abs_path:
            by_path.setdefault(r.abs_path, r.id)
    ranked = mics.assign(_known=mics["nx"].notna()).sort_values(
        ["_known", "id"], ascending=[False, True]
    )
    by_key: dict[str, int] = {}
    for r in ranked.itertuples():
        by_key.setdefault(r.key, r.id)
    mapping: dict[str, int] = {}
    unmatched = []
    for m in names:
        mid = by_path.get(m)
        if mid is None:
            mid = by_key.get(micrograph_key(m))
        if mid is None:
            unmatched.append(m)
        else:
            mapping[m] = mid
    return mapping, unmatched


def add_external_set(cat: Catalog, project_id: int, name: str, picks: pd.DataFrame,
                     stage: str = "picked") -> int:
    """Store ``picks`` (DataFrame[micrograph, x, y, score?, class_id?(, z)] in pixels of the
    micrograph) as set ``name`` of project ``project_id``; returns the new set id. ValueError
    when the project is unknown, a column is missing, the name is taken, the stage is unknown
    or micrographs match none of the project's (naming them)."""
    stage_rank(stage)
    pid = int(project_id)
    conn = cat.conn
    if conn.execute("SELECT 1 FROM projects WHERE id = ?", (pid,)).fetchone() is None:
        raise ValueError(f"no project with id {pid} in catalog {cat.path}")
    for col in ("micrograph", "x", "y"):
        if col not in picks.columns:
            raise ValueError(f"picks for set {name!r} lack column {col!r} (need micrograph, x, y)")
    exists = conn.execute(
        "SELECT id FROM particle_sets WHERE project_id = ? AND job_id IS NULL AND name = ?",
        (pid, name),
    ).fetchone()
    if exists:
        raise ValueError(
            f"project {pid} already has an imported set named {name!r} (set {exists[0]}); "
            "choose another --name"
        )
    names = picks["micrograph"].astype(str)
    mapping, unmatched = match_micrographs(cat.micrographs([pid]), pd.unique(names))
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" …" if len(unmatched) > 5 else "")
        raise ValueError(
            f"{len(unmatched)} micrograph(s) of set {name!r} match no micrograph of project "
            f"{pid}: {shown} (matched by path or micrograph key)"
        )
    n = len(picks)
    is_3d = "z" in picks.columns and picks["z"].notna().any()
    frame = pd.DataFrame({
        "micrograph": names.to_numpy(),
        "x": picks["x"].to_numpy(np.float64),
        "y": picks["y"].to_numpy(np.float64),
        "raw_x": picks["x"].to_numpy(np.float64),
        "raw_y": picks["y"].to_numpy(np.float64),
        "score": (picks["score"].to_numpy(np.float64) if "score" in picks.columns
                  else np.full(n, np.nan)),
        "class_id": (picks["class_id"].to_numpy(np.int64) if "class_id" in picks.columns
                     else np.full(n, -1, np.int64)),
        "uid": np.arange(n, dtype=np.int64),
    })
    if is_3d:
        frame["z"] = picks["z"].to_numpy(np.float64)
        frame["raw_z"] = frame["z"]
    record = ParticleSetRecord(name=name, stage=stage, particles=frame,
                               source_file="(imported)", is_3d=bool(is_3d))
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = insert_set(conn, pid, None, record, mapping, origin="external")
        refresh_project_totals(conn, pid)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result.set_id
