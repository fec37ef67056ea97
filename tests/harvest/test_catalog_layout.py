"""The particle row layout of schema 3 (harvest.catalog.codec, migration 3): each set and each
of its micrographs is one id range of ``particle_rows``; rows appended in id order leave no
page half empty; the ``particles`` view shows what the schema-2 table held; a schema-2 catalog
reads read-only and migrates to the same particles."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
from catalog_layouts import as_schema_2

from harvest.catalog import SCHEMA_VERSION, Catalog
from harvest.records import JobRecord, JobScan, ParticleSetRecord, ProjectScan

MICS = [f"J1/mic_{i:03d}.mrc" for i in range(7)]


def _sets(rng, n=600):
    """A grouped 2D set with shifts and random uids, the same rows shuffled (not grouped by
    micrograph), a 3D set with missing z values, a set with NaN coordinates and scores, an
    empty set."""
    which = np.sort(rng.integers(0, len(MICS), n))
    rx, ry = rng.uniform(-20, 4096, n), rng.uniform(0, 4096, n)
    grouped = pd.DataFrame({
        "micrograph": np.array(MICS, dtype=object)[which], "raw_x": rx, "raw_y": ry,
        "x": rx + rng.normal(0, 3, n), "y": ry + rng.normal(0, 3, n),
        "score": rng.uniform(0, 1, n), "class_id": rng.integers(0, 4, n),
        "uid": rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n, dtype=np.int64),
    })
    shuffled = grouped.sample(frac=1.0, random_state=1).reset_index(drop=True)
    tomo = grouped.iloc[:200].copy()
    tomo["raw_z"] = rng.uniform(0, 300, 200)
    tomo["z"] = tomo["raw_z"] + rng.normal(0, 2, 200)
    tomo.loc[[3, 50], ["raw_z", "z"]] = np.nan
    tomo.loc[7, "z"] = np.nan
    holes = shuffled.iloc[:100].copy()
    holes.loc[[0, 5], ["raw_x", "x"]] = np.nan
    holes.loc[[1, 9], "score"] = np.nan
    return [ParticleSetRecord("grouped", "refined", grouped, "a.cs"),
            ParticleSetRecord("shuffled", "picked", shuffled, "b.cs"),
            ParticleSetRecord("tomo", "picked", tomo, "c.star", is_3d=True),
            ParticleSetRecord("holes", "extracted", holes, "d.cs"),
            ParticleSetRecord("empty", "picked", grouped.iloc[:0], "e.cs")]


def _write(db, sets, key="J1", root="/proj"):
    scan = ProjectScan(root=root, software="cryosparc", version="v4")
    job = JobScan(key=key, raw_type="x", kind="other", status="completed")
    rec = JobRecord(key=key, raw_type="x", kind="other", status="completed",
                    particle_sets=list(sets))
    with Catalog(db) as cat:
        with cat.write_project(scan) as w:
            w.put_job(job, rec)


def _everything(cat) -> tuple[pd.DataFrame, list[pd.DataFrame], list[tuple]]:
    sets = cat.particle_sets()
    per_mic = [cat.micrograph_particles(int(m)) for m in cat.micrographs()["id"]]
    view = cat.conn.execute("SELECT * FROM particles ORDER BY set_id, micrograph_id, row")
    return cat.particles(sets["id"]), per_mic, view.fetchall()


def test_sets_and_micrographs_are_id_ranges(tmp_path):
    rng = np.random.default_rng(0)
    sets = _sets(rng)
    db = tmp_path / "c.db"
    _write(db, sets)
    with Catalog(db) as cat:
        conn = cat.conn
        info = conn.execute("SELECT id, name, first_row, count FROM particle_sets "
                            "ORDER BY id").fetchall()
        expect = 1
        for sid, _name, first, count in info:
            if not count:
                assert first is None
                continue
            assert first == expect  # appended: one range after the other
            expect += count
            runs = conn.execute("SELECT first_row, count FROM set_counts WHERE set_id = ? "
                                "ORDER BY micrograph_id", (sid,)).fetchall()
            starts = [r[0] for r in runs]
            assert starts[0] == first and starts == sorted(starts)
            assert all(a + n == b for (a, n), (b, _) in zip(runs, runs[1:]))
        assert conn.execute("SELECT max(id) FROM particle_rows").fetchone()[0] == expect - 1
        # the view gives each particle its source row; uids decode through it
        parts = cat.particles([info[1][0]])  # the shuffled set
        src = sets[1].particles
        assert sorted(parts["uid"]) == sorted(src["uid"])
        view = pd.read_sql("SELECT row, uid FROM particles WHERE set_id = ?", conn,
                           params=(info[1][0],))
        assert sorted(view["row"]) == list(range(len(src)))
        drow = conn.execute("SELECT count(*) FROM particle_rows WHERE drow != 0").fetchone()[0]
        assert drow > 0  # the shuffled set needed source rows; the grouped one did not
        # 3D: z only where there is one; a missing z reads as NaN
        tomo = cat.particles([info[2][0]]).sort_values("uid")
        want = sets[2].particles.sort_values("uid")
        assert (np.isnan(tomo["raw_z"].to_numpy()) == np.isnan(want["raw_z"].to_numpy())).all()
        assert conn.execute("SELECT count(*) FROM particle_z").fetchone()[0] == 198


def test_pages_are_full_as_written(tmp_path):
    """Rows go in at the end of the table in id order, so the file is as small as after a
    VACUUM (schema 2's keyed table was ~13 % larger until VACUUMed)."""
    rng = np.random.default_rng(1)
    db = tmp_path / "c.db"
    _write(db, _sets(rng, n=60_000)[:1])
    with Catalog(db) as cat:
        cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = cat.conn.execute("SELECT count(*) FROM dbstat WHERE name = 'particle_rows'")
        written = pages.fetchone()[0]
        cat.vacuum()
        after = cat.conn.execute("SELECT count(*) FROM dbstat WHERE name = 'particle_rows'")
        assert written <= after.fetchone()[0] * 1.01


def test_a_reparsed_job_drops_its_rows(tmp_path):
    rng = np.random.default_rng(2)
    db = tmp_path / "c.db"
    sets = _sets(rng)
    _write(db, sets)
    _write(db, sets[2:3])  # the job again, now only its 3D set
    with Catalog(db) as cat:
        conn = cat.conn
        # the 2 rows without a stored z are left out (harvest.validate: a 3D position must be
        # finite); the row whose recentred z is missing keeps its stored z
        assert conn.execute("SELECT count(*) FROM particle_rows").fetchone()[0] == 198
        assert conn.execute("SELECT count(*) FROM particle_z").fetchone()[0] == 198
        assert conn.execute("SELECT count(*) FROM particles").fetchone()[0] == 198
        got = cat.particles(cat.particle_sets()["id"]).sort_values("uid")
        kept = sets[2].particles.dropna(subset=["raw_z"])
        assert (got["uid"].to_numpy() == np.sort(kept["uid"].to_numpy())).all()


def test_schema_2_catalog_reads_read_only_and_migrates(tmp_path):
    rng = np.random.default_rng(3)
    db, old = tmp_path / "c.db", tmp_path / "old.db"
    _write(db, _sets(rng))
    _write(db, _sets(rng)[:2], key="J2", root="/proj2")
    with Catalog(db, readonly=True) as cat:
        want, want_mic, want_view = _everything(cat)
    shutil.copy(db, old)
    as_schema_2(old)
    with Catalog(old, readonly=True) as cat:  # the codec reads the schema-2 table
        assert cat.schema_version() == 2
        got, got_mic, table = _everything(cat)
        pd.testing.assert_frame_equal(got, want)
        for a, b in zip(got_mic, want_mic):
            pd.testing.assert_frame_equal(a, b)
        assert table == want_view  # the view shows what the table held
    with Catalog(old) as cat:  # writable: migrated, same particles, same ranges
        assert cat.schema_version() == SCHEMA_VERSION
        got, got_mic, view = _everything(cat)
        pd.testing.assert_frame_equal(got, want)
        for a, b in zip(got_mic, want_mic):
            pd.testing.assert_frame_equal(a, b)
        assert view == want_view
        with Catalog(db, readonly=True) as fresh:  # as if written by schema 3 directly
            for table in ("particle_rows", "particle_z", "set_counts", "particle_sets"):
                assert cat.table_rows(table) == fresh.table_rows(table), table
    _write(old, _sets(rng)[:1], key="J3")  # and takes new sets after the migrated ones
    with Catalog(old, readonly=True) as cat:
        assert cat.conn.execute("SELECT count(*) FROM particles").fetchone()[0] == (
            cat.conn.execute("SELECT sum(count) FROM particle_sets").fetchone()[0])
