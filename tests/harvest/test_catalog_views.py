"""The catalog's SQL views (harvest.catalog.views) give what the Python API gives: particles in
float pixels, sizes in Å, stage names, per-stage totals; and a version-1 catalog (before the
views, size_source and 1-based RELION classes) still reads, read-only."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
from catalog_layouts import as_schema_2

from harvest.catalog import SCHEMA_VERSION, Catalog
from harvest.crawl import crawl


@pytest.fixture(scope="module")
def catalog(facility, tmp_path_factory):
    db = tmp_path_factory.mktemp("views") / "c.db"
    crawl([facility.root], db, progress=False)
    return db


def _sql(db, query) -> pd.DataFrame:
    with sqlite3.connect(db) as conn:  # plain sqlite3: no cryoglean code
        return pd.read_sql(query, conn)


def _api_particles(cat) -> pd.DataFrame:
    sets = cat.particle_sets()
    df = cat.particles(sets["id"])
    return df.sort_values(["set_id", "micrograph_id", "uid"]).reset_index(drop=True)


def test_particles_px_equals_the_api(catalog):
    with Catalog(catalog, readonly=True) as cat:
        api = _api_particles(cat)
        stages = cat.particle_sets().set_index("id")["stage"]
    view = _sql(catalog, "SELECT * FROM particles_px").sort_values(
        ["set_id", "micrograph_id", "uid"]).reset_index(drop=True)
    assert len(view) == len(api) > 0
    for c in ("x", "y", "raw_x", "raw_y", "score", "z", "raw_z"):
        np.testing.assert_allclose(view[c].astype(float), api[c], rtol=0, atol=1e-9, err_msg=c)
    np.testing.assert_array_equal(view["class_id"].fillna(-1).astype(np.int64), api["class_id"])
    np.testing.assert_array_equal(view["uid"], api["uid"])
    assert (view["stage"] == view["set_id"].map(stages)).all()
    # raw SQL on the view is in pixels, not the codec's milli-pixels
    assert _sql(catalog, "SELECT max(x) AS m FROM particles_px")["m"].iloc[0] < 1000


def test_micrographs_sets_and_totals_equal_the_api(catalog):
    with Catalog(catalog, readonly=True) as cat:
        mics = cat.micrographs().set_index("id")
        sets = cat.particle_sets().set_index("id")
        totals = cat.project_stage_totals()
    view = _sql(catalog, "SELECT * FROM micrographs_a").set_index("id")
    np.testing.assert_allclose(view["width_A"], mics["nx"].astype(float) * mics["pixel_size"])
    np.testing.assert_allclose(view["total_motion_A"], mics["total_motion"])
    assert (view["size_source"] == mics["size_source"]).all()
    vs = _sql(catalog, "SELECT * FROM sets").set_index("set_id").loc[sets.index]
    assert (vs["stage"] == sets["stage"]).all() and (vs["count"] == sets["count"]).all()
    np.testing.assert_array_equal(vs["class_id"].fillna(-99), sets["class_id"].fillna(-99))
    np.testing.assert_allclose(vs["box_A"], sets["box_size"] * sets["image_pixel_size"])
    vt = _sql(catalog, "SELECT project_id, stage, particles FROM stage_totals")
    merged = totals.merge(vt, on=["project_id", "stage"], how="outer")
    assert len(merged) == len(totals) and (merged["count"] == merged["particles"]).all()
    # RELION classes as RELION numbers them; CryoSPARC's from 0
    c3 = vs[vs["stage"] == "classified3d"]
    assert set(c3[c3["software"] == "relion"]["class_id"]) == {1, 2}
    assert set(c3[c3["software"] == "cryosparc"]["class_id"]) == {0, 1}


def _as_version_1(db):
    """What a catalog written by cryoglean before schema 2 looks like."""
    as_schema_2(db)  # particles as schema 1 and 2 stored them
    conn = sqlite3.connect(db)
    relion = ("SELECT s.id FROM particle_sets s JOIN projects p ON p.id = s.project_id "
              "WHERE p.software = 'relion' AND s.origin = 'job'")
    conn.execute(f"UPDATE particles SET class_id = class_id - 1 WHERE class_id >= 0 "
                 f"AND set_id IN ({relion})")
    conn.execute(f"UPDATE particle_sets SET class_id = class_id - 1 WHERE class_id IS NOT NULL "
                 f"AND id IN ({relion})")
    for view in ("particles_px", "micrographs_a", "sets", "stage_totals"):
        conn.execute(f"DROP VIEW {view}")
    conn.execute("ALTER TABLE micrographs DROP COLUMN size_source")
    conn.execute("DELETE FROM schema_version WHERE version > 1")
    conn.commit()
    conn.close()


def test_version_1_catalog_reads_and_migrates(catalog, tmp_path):
    assert SCHEMA_VERSION >= 2
    old = tmp_path / "old.db"
    shutil.copy(catalog, old)
    _as_version_1(old)
    with Catalog(catalog, readonly=True) as cat:
        want_sets, want = cat.particle_sets(), _api_particles(cat)
    with Catalog(old, readonly=True) as cat:  # read-only: nothing written, classes shifted
        assert cat.schema_version() == 1
        pd.testing.assert_frame_equal(cat.particle_sets(), want_sets)
        pd.testing.assert_frame_equal(_api_particles(cat), want)
        assert cat.micrographs()["size_source"].isna().all()
        tmp = pd.read_sql("SELECT class_id FROM particles_px", cat.conn)  # TEMP views
        assert set(tmp["class_id"].dropna()) == set(want["class_id"][want["class_id"] >= 0])
    with Catalog(old) as cat:  # writable: migrated
        assert cat.schema_version() == SCHEMA_VERSION
        pd.testing.assert_frame_equal(cat.particle_sets(), want_sets)
        pd.testing.assert_frame_equal(_api_particles(cat), want)
        assert cat.micrographs()["size_source"].notna().all()
    assert len(_sql(old, "SELECT * FROM stage_totals")) > 0


def _as_version_4(db):
    """What a catalog written by cryoglean before schema 5 (stored totals) looks like."""
    from harvest.catalog.views import project_totals_sql

    conn = sqlite3.connect(db)
    conn.execute("DROP VIEW stage_totals")
    conn.execute(f"CREATE VIEW stage_totals AS {project_totals_sql()}")
    conn.execute("DROP TABLE project_totals")
    conn.execute("DELETE FROM schema_version WHERE version > 4")
    conn.commit()
    conn.close()


def test_version_4_catalog_totals_read_and_migrate(catalog, tmp_path):
    old = tmp_path / "old.db"
    shutil.copy(catalog, old)
    _as_version_4(old)
    with Catalog(catalog, readonly=True) as cat:
        want = cat.project_stage_totals()
    stored = _sql(catalog, "SELECT * FROM project_totals ORDER BY project_id, stage")
    assert len(want) == len(stored) > 0
    with Catalog(old, readonly=True) as cat:  # read-only: computed from the count rows
        assert cat.schema_version() == 4
        pd.testing.assert_frame_equal(cat.project_stage_totals(), want)
    with Catalog(old) as cat:  # writable: migration 5 stores the same totals
        assert cat.schema_version() == 5
        pd.testing.assert_frame_equal(cat.project_stage_totals(), want)
    pd.testing.assert_frame_equal(
        _sql(old, "SELECT * FROM project_totals ORDER BY project_id, stage"), stored)
    # the view reads the stored table: no count row is combined
    plan = " ".join(r[-1] for r in sqlite3.connect(old).execute(
        "EXPLAIN QUERY PLAN SELECT * FROM stage_totals"))
    assert "set_counts" not in plan and "project_totals" in plan
