"""The particle write path's shortcuts give the same catalog as the plain path: a Categorical
micrograph column (codes used directly), parameters constant over a set (written as SQL
literals), new micrographs inserted together (ids as one INSERT each would give)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harvest.catalog import COORD_SCALE, DATA_TABLES, Catalog
from harvest.records import JobRecord, JobScan, MicrographRecord, ParticleSetRecord, ProjectScan

MAX_ERR = 0.5 / COORD_SCALE + 1e-9
VOLATILE = ("first_seen", "last_crawl", "parsed_at", "created_at")


def _write(db, sets, micrographs=()):
    scan = ProjectScan(root="/proj", software="relion", version="3.1")
    job = JobScan(key="J1", raw_type="x", kind="other", status="completed")
    rec = JobRecord(key="J1", raw_type="x", kind="other", status="completed",
                    particle_sets=list(sets), micrographs=list(micrographs))
    with Catalog(db) as cat:
        with cat.write_project(scan) as w:
            w.put_job(job, rec)
        tables = {t: cat.table_rows(t, exclude=VOLATILE) for t in DATA_TABLES}
        parts = cat.particles(cat.particle_sets()["id"])
    return tables, parts


def _frame(rng, n, mics):
    raw_x, raw_y = rng.uniform(0, 4096, n), rng.uniform(0, 4096, n)
    return pd.DataFrame({
        "micrograph": np.array(mics, dtype=object)[rng.integers(0, len(mics), n)],
        "x": raw_x + rng.normal(0, 3, n), "y": raw_y + rng.normal(0, 3, n),
        "raw_x": raw_x, "raw_y": raw_y, "score": rng.uniform(-1, 1, n),
        "class_id": rng.integers(0, 5, n),
        "uid": rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n, dtype=np.int64),
    })


def test_categorical_micrograph_column_gives_the_same_catalog(tmp_path):
    rng = np.random.default_rng(3)
    mics = [f"Movies/m{i:03d}.mrc" for i in range(40)]
    df = _frame(rng, 3000, mics)  # rows not grouped by micrograph: the write sorts them
    cat_df = df.copy()
    # categories in another order than first appearance, plus unused ones
    cats = sorted(set(mics[:30]) | set(df["micrograph"]), reverse=True) + ["Movies/unused.mrc"]
    cat_df["micrograph"] = pd.Categorical(df["micrograph"], categories=cats)
    plain, parts = _write(tmp_path / "a.db", [ParticleSetRecord("p", "picked", df, "f")])
    coded, parts_c = _write(tmp_path / "b.db", [ParticleSetRecord("p", "picked", cat_df, "f")])
    assert coded == plain
    pd.testing.assert_frame_equal(parts_c, parts)
    # no micrograph row for the unused category
    assert len(coded["micrographs"]) == df["micrograph"].nunique()


def test_categorical_micrograph_column_with_missing_value_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    df = _frame(rng, 20, ["a.mrc", "b.mrc"])
    df["micrograph"] = pd.Categorical(df["micrograph"].where(df.index != 7, None))
    with pytest.raises(ValueError, match="1 particle"):
        _write(tmp_path / "a.db", [ParticleSetRecord("p", "picked", df, "f")])


def test_bytes_categories_are_decoded(tmp_path):
    rng = np.random.default_rng(5)
    df = _frame(rng, 50, ["J2/a.mrc", "J2/b.mrc"])
    as_bytes = df.copy()
    as_bytes["micrograph"] = pd.Categorical(df["micrograph"].map(str.encode))
    plain, _ = _write(tmp_path / "a.db", [ParticleSetRecord("p", "picked", df, "f")])
    coded, _ = _write(tmp_path / "b.db", [ParticleSetRecord("p", "picked", as_bytes, "f")])
    assert coded == plain


@pytest.mark.parametrize("uid_delta", [0, 7, np.iinfo(np.int64).min, np.iinfo(np.int64).max])
def test_values_constant_over_a_set_round_trip(tmp_path, uid_delta):
    """Constant shifts, class, score and uid − row go into the SQL text; values come back."""
    n = 700  # more than one multi-row statement plus a remainder
    rng = np.random.default_rng(6)
    # eighths of a pixel: exact in binary, so the shift is the same integer for every row
    raw_x, raw_y = rng.integers(0, 40000, n) / 8, rng.integers(0, 40000, n) / 8
    row = np.arange(n, dtype=np.int64)
    with np.errstate(over="ignore"):
        uid = row + np.int64(uid_delta)
    df = pd.DataFrame({
        "micrograph": np.repeat(["m1.mrc", "m2.mrc"], [300, n - 300]).astype(object),
        "raw_x": raw_x, "raw_y": raw_y, "x": raw_x - 2.25, "y": raw_y + 1.5,
        "score": np.full(n, 0.375), "class_id": np.full(n, 3), "uid": uid,
    })
    _, parts = _write(tmp_path / "a.db", [ParticleSetRecord("p", "picked", df, "f")])
    parts = parts.sort_values(["micrograph_id"], kind="stable").reset_index(drop=True)
    assert len(parts) == n
    assert np.abs(parts["raw_x"] - raw_x).max() <= MAX_ERR
    assert np.abs(parts["x"] - (raw_x - 2.25)).max() <= MAX_ERR
    assert np.abs(parts["y"] - (raw_y + 1.5)).max() <= MAX_ERR
    assert (parts["score"] == 0.375).all()
    assert (parts["class_id"] == 3).all()
    assert (parts["uid"].to_numpy() == uid).all()


def test_repeated_and_new_micrographs_get_sequential_ids(tmp_path):
    rng = np.random.default_rng(7)
    recs = [MicrographRecord(path=f"M/{i}.mrc", abs_path=f"/proj/M/{i}.mrc", key=str(i))
            for i in range(5)]
    again = MicrographRecord(path="M/2.mrc", abs_path="/proj/M/2.mrc", key="2", nx=4096)
    df = _frame(rng, 200, ["M/1.mrc", "M/9.mrc", "M/8.mrc"])
    tables, _ = _write(tmp_path / "a.db", [ParticleSetRecord("p", "picked", df, "f")],
                       [*recs, again])
    with Catalog(tmp_path / "a.db", readonly=True) as cat:
        m = cat.micrographs()
    assert m["id"].tolist() == list(range(1, 8))
    # record order first, then particle paths in order of first appearance
    first_seen = list(pd.unique(df["micrograph"]))
    new_paths = [p for p in first_seen if p not in {r.path for r in recs}]
    assert m["path"].tolist() == [r.path for r in recs] + new_paths
    assert m.set_index("path").loc["M/2.mrc", "nx"] == 4096  # the repeat merged
