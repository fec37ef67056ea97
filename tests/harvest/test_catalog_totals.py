"""The stored per-project stage totals (``project_totals``, schema 5) are never stale: after a
first crawl, an incremental crawl that re-parses a job, one that loses a job, and an imported
set, they equal the totals combined from scratch out of the per-micrograph count rows by an
independent pandas reference (the rule of ``Catalog.stage_counts``); so do the per-micrograph
counts ``show`` reads."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd

from harvest.catalog import Catalog
from harvest.conventions import STAGES
from harvest.crawl import crawl


def _reference(conn) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per project, micrograph, stage; per project, stage) combined in pandas: per micrograph
    and job, per-class sets add up and other sets take the largest, the larger of the two;
    the largest job wins; micrographs add up."""
    df = pd.read_sql("SELECT s.project_id, c.micrograph_id, s.stage, s.job_id, s.id AS set_id, "
                     "s.class_id, c.count FROM set_counts c JOIN particle_sets s "
                     "ON s.id = c.set_id", conn)
    df["job"] = df["job_id"].fillna(-df["set_id"]).astype(np.int64)
    keys = ["project_id", "micrograph_id", "stage", "job"]
    classed = df[df["class_id"].notna()].groupby(keys)["count"].sum()
    other = df[df["class_id"].isna()].groupby(keys)["count"].max()
    per_job = pd.concat([classed, other], axis=1).fillna(0).max(axis=1)
    per_mic = per_job.groupby(level=[0, 1, 2]).max().rename("count").reset_index()
    totals = (per_mic.groupby(["project_id", "stage"])
              .agg(count=("count", "sum"), micrographs=("count", "size")).reset_index())
    return per_mic, totals


def _check(db) -> int:
    with Catalog(db, readonly=True) as cat:
        per_mic, want = _reference(cat.conn)
        got = cat.project_stage_totals()
        key = ["project_id", "stage"]
        pd.testing.assert_frame_equal(
            got.sort_values(key).reset_index(drop=True),
            want.sort_values(key).reset_index(drop=True).astype(
                {"count": np.int64, "micrographs": np.int64, "project_id": np.int64}))
        order = {s: i for i, s in enumerate(STAGES)}
        for pid in cat.projects()["id"]:
            mine = per_mic[per_mic["project_id"] == pid].drop(columns="project_id")
            mine = mine.assign(_o=mine["stage"].map(order)).sort_values(
                ["micrograph_id", "_o"]).drop(columns="_o").reset_index(drop=True)
            pd.testing.assert_frame_equal(cat.stage_counts(int(pid)),
                                          mine.astype({"micrograph_id": np.int64,
                                                       "count": np.int64}))
        return int(got["count"].sum())


def test_stored_totals_follow_every_write(facility, tmp_path):
    root = tmp_path / "facility"
    shutil.copytree(facility.root, root, symlinks=True)
    db = tmp_path / "c.db"
    crawl([root], db, progress=False)
    first = _check(db)
    assert first > 0
    projects = {name: root / os.path.relpath(path, facility.root)
                for name, path in facility.projects.items()}
    # a job re-parsed (its sets dropped and written again), then a job gone
    outputs = sorted(p for p in projects["cryosparc"].rglob("*particles*") if p.suffix == ".cs")
    st = outputs[-1].stat()
    os.utime(outputs[-1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    crawl([root], db, progress=False)
    assert _check(db) == first
    shutil.rmtree(projects["cryosparc"] / "J10")
    crawl([root], db, progress=False)
    _check(db)
    # picks imported as a set of their own: a new "job" at its stage
    with Catalog(db) as cat:
        pid = cat.find_project(str(projects["relion40"]))
        mics = cat.micrographs([pid])
        picks = pd.DataFrame({"micrograph": np.repeat(mics["path"].iloc[:2].to_numpy(), 500),
                              "x": 10.0, "y": 20.0})
        before = cat.project_stage_totals([pid]).set_index("stage")["count"]
        cat.add_external_set(pid, "imported", picks, stage="picked")
        after = cat.project_stage_totals([pid]).set_index("stage")["count"]
    assert after["picked"] > before["picked"]  # 500 per micrograph beats every job there
    _check(db)
