"""Catalog storage with hand-made records: schema, migrations, round trips, read filters, imports
and the size of a particle row (the lock: test_catalog_lock.py; the particle codec:
test_catalog_codec.py)."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pandas as pd
import pytest

from harvest.catalog import (
    COORD_SCALE,
    SCHEMA_VERSION,
    Catalog,
)
from harvest.records import (
    FileStamp,
    JobRecord,
    JobScan,
    MicrographRecord,
    ParticleSetRecord,
    ProjectScan,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_ERR = 0.5 / COORD_SCALE + 1e-9


def _particles(rng, mics, n, shifts=True, uid64=True, score=True, classes=True, is_3d=False):
    raw_x = rng.uniform(0, 4096, n)
    raw_y = rng.uniform(0, 4096, n)
    dx = rng.normal(0, 3, n) if shifts else np.zeros(n)
    dy = rng.normal(0, 3, n) if shifts else np.zeros(n)
    df = pd.DataFrame({
        "micrograph": rng.choice(mics, n),
        "x": raw_x + dx, "y": raw_y + dy, "raw_x": raw_x, "raw_y": raw_y,
        "score": rng.uniform(-1, 1, n) if score else np.full(n, np.nan),
        "class_id": rng.integers(0, 50, n) if classes else np.full(n, -1),
        "uid": (rng.integers(0, 2**63, n, dtype=np.int64) * (1 if rng.random() < 2 else 1)
                if uid64 else np.arange(n, dtype=np.int64)),
    })
    if is_3d:
        df["raw_z"] = rng.uniform(0, 300, n)
        df["z"] = df["raw_z"] + rng.normal(0, 2, n)
    return df


def _project(tmp_path, rng, n=500, name="P1"):
    root = tmp_path / name
    (root / "J1").mkdir(parents=True)
    (root / "project.json").write_text("{}")
    (root / "J1" / "job.json").write_text("{}")
    mic_paths = [f"J1/mic_{i:03d}.mrc" for i in range(5)]
    mics = [MicrographRecord(path=p, abs_path=str(root / p), key=p[3:-4], nx=4096, ny=4096,
                             pixel_size=1.1, defocus_u=15000.0 + i) for i, p in enumerate(mic_paths)]
    df = _particles(rng, mic_paths, n)
    scan = ProjectScan(root=str(root), software="cryosparc", version="v4.7", title=name,
                       uid="P1", files=[FileStamp.of(root / "project.json")])
    job = JobScan(key="J1", raw_type="homo_refine_new", kind="refine3d", status="completed",
                  files=[FileStamp.of(root / "J1" / "job.json")])
    job2 = JobScan(key="J2", raw_type="select_2D", kind="select2d", status="completed",
                   parents=["J1"])
    scan.jobs = [job, job2]
    rec = JobRecord(key="J1", raw_type=job.raw_type, kind=job.kind, status="completed",
                    micrographs=mics,
                    particle_sets=[ParticleSetRecord("particles", "refined", df, "J1/p.cs",
                                                     box_size=256, image_pixel_size=1.1,
                                                     voltage=300.0, cs=2.7, amp_contrast=0.1)])
    return scan, rec, df


def _write(cat, scan, rec):
    with cat.write_project(scan) as w:
        w.put_job(scan.jobs[0], rec)
        w.put_job(scan.jobs[1])
        w.set_edges([(p, j.key) for j in scan.jobs for p in j.parents])
        w.set_project_files(scan.files)
    return w


def test_schema_created_and_migrations_recorded(tmp_path):
    db = tmp_path / "c.db"
    with Catalog(db) as cat:
        assert cat.schema_version() == SCHEMA_VERSION
        tables = set(cat.db.table_names())
        assert {"projects", "jobs", "job_edges", "micrographs", "particle_sets",
                "particle_rows", "particle_z", "set_counts", "files", "crawls", "problems",
                "schema_version"} <= tables
        assert "particles" in cat.db.view_names()
        assert cat.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cat.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        ddl = cat.conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'particle_rows'").fetchone()[0]
        assert "id INTEGER PRIMARY KEY" in ddl and "WITHOUT ROWID" not in ddl
    # reopening does not migrate again
    with Catalog(db) as cat:
        rows = cat.conn.execute("SELECT version FROM schema_version").fetchall()
        assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_newer_schema_refused_and_readonly_missing(tmp_path):
    db = tmp_path / "c.db"
    Catalog(db).close()
    con = sqlite3.connect(db)
    con.execute("INSERT INTO schema_version (version) VALUES (999)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="newer"):
        Catalog(db)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Catalog(tmp_path / "nope.db", readonly=True)


def test_project_round_trip_within_quantisation(tmp_path):
    rng = np.random.default_rng(1)
    scan, rec, df = _project(tmp_path, rng)
    with Catalog(tmp_path / "c.db") as cat:
        w = _write(cat, scan, rec)
        assert w.new_jobs == 2 and w.new_particles == len(df)
        sets = cat.particle_sets()
        assert len(sets) == 1
        s = sets.iloc[0]
        assert (s["name"], s["stage"], s["job_key"], s["count"]) == ("particles", "refined",
                                                                     "J1", len(df))
        assert s["box_size"] == 256 and s["voltage"] == 300.0 and not s["is_3d"]
        got = cat.particles([s["id"]])
        mics = cat.micrographs()
        path_of = dict(zip(mics["id"], mics["path"]))
        got["micrograph"] = got["micrograph_id"].map(path_of)
        # same particles: join on uid
        merged = df.merge(got, on="uid", suffixes=("", "_c"))
        assert len(merged) == len(df)
        assert (merged["micrograph"] == merged["micrograph_c"]).all()
        for c in ("x", "y", "raw_x", "raw_y"):
            assert np.abs(merged[c] - merged[c + "_c"]).max() <= MAX_ERR
        assert np.abs(merged["score"] - merged["score_c"]).max() <= 0.5e-4 + 1e-12
        assert (merged["class_id"] == merged["class_id_c"]).all()
        assert got["z"].isna().all() and got["raw_z"].isna().all()
        assert got["x"].dtype == np.float64
        # micrograph metadata and edges
        assert list(mics["nx"]) == [4096] * 5 and mics["defocus_u"].iloc[2] == 15002.0
        edges = cat.job_edges()
        jobs = cat.jobs().set_index("key")
        assert list(map(tuple, edges.to_numpy())) == [(jobs.at["J1", "id"], jobs.at["J2", "id"])]


def test_relion_like_rows_nan_and_3d(tmp_path):
    rng = np.random.default_rng(2)
    scan, rec, _ = _project(tmp_path, rng)
    df = _particles(rng, ["J1/mic_000.mrc", "J1/mic_001.mrc"], 300, shifts=False, uid64=False,
                    score=False, classes=False, is_3d=True)
    df.loc[5, "score"] = 0.25  # one score, the rest NaN
    df.loc[7, ["x", "raw_x"]] = np.nan  # one missing coordinate: the writer's last guard
    rec.particle_sets = [ParticleSetRecord("coords", "picked", df, "a.star", is_3d=True)]
    with Catalog(tmp_path / "c.db") as cat:
        _write(cat, scan, rec)
        got = cat.particles(cat.particle_sets()["id"])
        ok = np.arange(300) != 7
        assert sorted(got["uid"]) == list(np.arange(300)[ok])  # left out, never stored as NULL
        problems = cat.conn.execute("SELECT path, error FROM problems").fetchall()
        assert len(problems) == 1 and problems[0][0] == "a.star"
        assert "1 of 300 particles of set 'coords'" in problems[0][1]
        got = got.set_index("uid").loc[np.arange(300)[ok]]
        assert abs(got["score"].loc[5] - 0.25) < 1e-9 and got["score"].drop(5).isna().all()
        assert (got["class_id"] == -1).all()
        assert np.abs(got["x"].to_numpy() - df["x"].to_numpy()[ok]).max() <= MAX_ERR
        assert np.abs(got["z"].to_numpy() - df["z"].to_numpy()[ok]).max() <= MAX_ERR
        assert np.abs(got["raw_z"].to_numpy() - df["raw_z"].to_numpy()[ok]).max() <= MAX_ERR
        assert bool(cat.particle_sets()["is_3d"].iloc[0])


def test_micrograph_merge_and_reparse_replaces_sets(tmp_path):
    rng = np.random.default_rng(3)
    scan, rec, df = _project(tmp_path, rng)
    with Catalog(tmp_path / "c.db") as cat:
        _write(cat, scan, rec)
        # a CTF-like job later fills other fields; None never overwrites
        ctf = JobRecord(key="J1", raw_type="x", kind="refine3d", status="completed",
                        micrographs=[MicrographRecord(path="J1/mic_000.mrc", abs_path="",
                                                      key="mic_000", ctf_max_res=3.5,
                                                      nx=None)],
                        particle_sets=[ParticleSetRecord("particles", "refined", df.iloc[:10],
                                                         "J1/p.cs")])
        with cat.write_project(scan) as w:
            w.put_job(scan.jobs[0], ctf)
        m = cat.micrographs().set_index("path").loc["J1/mic_000.mrc"]
        assert m["nx"] == 4096 and m["ctf_max_res"] == 3.5
        assert len(cat.micrographs()) == 5
        sets = cat.particle_sets()
        assert len(sets) == 1 and sets["count"].iloc[0] == 10
        assert cat.conn.execute("SELECT count(*) FROM particles").fetchone()[0] == 10


def test_failed_write_rolls_back(tmp_path):
    rng = np.random.default_rng(4)
    scan, rec, _ = _project(tmp_path, rng)
    with Catalog(tmp_path / "c.db") as cat:
        with pytest.raises(RuntimeError), cat.write_project(scan) as w:
            w.put_job(scan.jobs[0], rec)
            raise RuntimeError("killed mid-project")
        for t in ("projects", "jobs", "micrographs", "particle_sets", "particles", "files"):
            assert cat.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0, t


def test_read_filters(tmp_path):
    rng = np.random.default_rng(5)
    with Catalog(tmp_path / "c.db") as cat:
        for name in ("A", "B"):
            scan, rec, _ = _project(tmp_path, rng, n=50, name=name)
            rec.particle_sets.append(ParticleSetRecord("picks", "picked",
                                                       rec.particle_sets[0].particles,
                                                       "J1/q.cs"))
            _write(cat, scan, rec)
        projects = cat.projects()
        assert list(projects["title"]) == ["A", "B"]
        a, b = projects["id"]
        assert cat.find_project("B") == b
        assert cat.find_project(str(a)) == a
        assert cat.find_project(projects["root"].iloc[1]) == b
        with pytest.raises(ValueError, match="no project"):
            cat.find_project("nothing")
        assert len(cat.jobs([a])) == 2 and len(cat.jobs()) == 4
        assert len(cat.particle_sets(project_ids=[b])) == 2
        assert list(cat.particle_sets(stages=["picked"])["name"]) == ["picks", "picks"]
        sid = int(cat.particle_sets(project_ids=[a], stages=["refined"])["id"].iloc[0])
        assert list(cat.particle_sets(set_ids=[sid])["id"]) == [sid]
        jid = int(cat.jobs([b])["id"].iloc[0])
        assert len(cat.particle_sets(job_ids=[jid])) == 2
        assert len(cat.micrographs([a])) == 5 and len(cat.micrographs(ids=[1, 2])) == 2
        assert cat.particle_sets(project_ids=[]).empty
        two = cat.particles(cat.particle_sets(project_ids=[a])["id"])
        assert len(two) == 100 and set(two["set_id"]) == set(cat.particle_sets([a])["id"])
        counts = cat.stage_counts(a)
        # the per-micrograph counts of both stages add up to the set sizes
        assert counts.groupby("stage")["count"].sum().to_dict() == {"picked": 50, "refined": 50}


def test_add_external_set(tmp_path):
    rng = np.random.default_rng(6)
    scan, rec, _ = _project(tmp_path, rng, n=20)
    with Catalog(tmp_path / "c.db") as cat:
        _write(cat, scan, rec)
        pid = cat.find_project("P1")
        picks = pd.DataFrame({"micrograph": ["mic_000", "mic_001.mrc", "J1/mic_002.mrc"],
                              "x": [10.25, 20.5, 30.125], "y": [1.0, 2.0, 3.0],
                              "score": [0.9, 0.8, 0.7]})
        sid = cat.add_external_set(pid, "topaz", picks)
        s = cat.particle_sets(set_ids=[sid]).iloc[0]
        assert s["stage"] == "picked" and s["count"] == 3 and pd.isna(s["job_id"])
        got = cat.particles([sid])
        mics = cat.micrographs().set_index("id")
        assert list(mics.loc[got["micrograph_id"], "key"]) == ["mic_000", "mic_001", "mic_002"]
        assert np.allclose(got["x"], [10.25, 20.5, 30.125], atol=MAX_ERR)
        assert np.allclose(got["score"], [0.9, 0.8, 0.7], atol=1e-4)
        with pytest.raises(ValueError, match="already has"):
            cat.add_external_set(pid, "topaz", picks)
        bad = pd.DataFrame({"micrograph": ["mic_999"], "x": [1.0], "y": [1.0]})
        with pytest.raises(ValueError, match="mic_999"):
            cat.add_external_set(pid, "other", bad)
        with pytest.raises(ValueError, match="stage"):
            cat.add_external_set(pid, "other", picks, stage="bogus")
        # a re-crawl of the job does not remove imported sets
        _write(cat, scan, rec)
        assert sid in set(cat.particle_sets()["id"])


def test_bytes_per_particle_row(tmp_path):
    """≤ 60 bytes per particle row on 100k CryoSPARC-like rows (random 64-bit uids, shifts,
    scores, classes), key and file overhead included, after VACUUM."""
    rng = np.random.default_rng(7)
    n = 100_000
    root = tmp_path / "P"
    root.mkdir()
    mic_paths = [f"J3/mic_{i:04d}.mrc" for i in range(300)]
    df = _particles(rng, mic_paths, n)
    df["raw_x"] = rng.uniform(0, 5760, n)
    df["x"] = df["raw_x"] + rng.normal(0, 3, n)
    scan = ProjectScan(root=str(root), software="cryosparc", version="v4")
    job = JobScan(key="J9", raw_type="homo_refine_new", kind="refine3d", status="completed")
    rec = JobRecord(key="J9", raw_type=job.raw_type, kind=job.kind, status="completed",
                    particle_sets=[ParticleSetRecord("particles", "refined", df, "p.cs")])
    db = tmp_path / "size.db"
    with Catalog(db) as cat:
        empty = os.path.getsize(db) + os.path.getsize(str(db) + "-wal")
        with cat.write_project(scan) as w:
            w.put_job(job, rec)
        cat.vacuum()
    size = os.path.getsize(db)
    per_row = (size - empty) / n
    print(f"{per_row:.1f} bytes per particle row (file {size} bytes)")
    assert per_row <= 60, f"{per_row:.1f} bytes per particle row"


def test_unstorable_record_keeps_previous_outputs(tmp_path):
    """A record the catalog cannot store (two sets with one name; coordinates beyond the
    storable range) raises ValueError naming the job; the job's previous sets stay and the rest
    of the project's transaction goes on."""
    rng = np.random.default_rng(8)
    scan, rec, df = _project(tmp_path, rng, n=30)
    with Catalog(tmp_path / "c.db") as cat:
        _write(cat, scan, rec)
        dup = JobRecord(key="J1", raw_type="x", kind="refine3d", status="completed",
                        particle_sets=[ParticleSetRecord("a", "refined", df, "f"),
                                       ParticleSetRecord("a", "refined", df, "g")])
        far = df.copy()
        far.loc[0, ["x", "raw_x"]] = 1e7
        # on a micrograph of unknown size (only finiteness is checked before the codec's range)
        far["micrograph"] = far["micrograph"].astype(object)
        far.loc[0, "micrograph"] = "J1/unsized.mrc"
        huge = JobRecord(key="J1", raw_type="x", kind="refine3d", status="completed",
                         particle_sets=[ParticleSetRecord("b", "refined", far, "h")])
        with cat.write_project(scan) as w:
            for bad, match in ((dup, "two particle sets named"), (huge, "cannot be stored")):
                with pytest.raises(ValueError, match=f"cannot store job J1: .*{match}"):
                    w.put_job(scan.jobs[0], bad)
            w.put_job(scan.jobs[1])
        sets = cat.particle_sets()
        assert list(sets["name"]) == ["particles"] and sets["count"].iloc[0] == 30
        assert cat.conn.execute("SELECT count(*) FROM particles").fetchone()[0] == 30
        assert cat.conn.execute("SELECT harvested FROM jobs WHERE key = 'J1'").fetchone() == (0,)


def test_particles_of_one_micrograph_use_the_key(tmp_path):
    rng = np.random.default_rng(9)
    scan, rec, df = _project(tmp_path, rng, n=400)
    rec.particle_sets.append(ParticleSetRecord("picks", "picked", df.iloc[:100], "q.cs"))
    with Catalog(tmp_path / "c.db") as cat:
        _write(cat, scan, rec)
        mic = cat.micrographs().iloc[1]
        got = cat.micrograph_particles(int(mic["id"]))
        n_expected = (df["micrograph"] == mic["path"]).sum() + (
            df.iloc[:100]["micrograph"] == mic["path"]).sum()
        assert len(got) == n_expected and (got["micrograph_id"] == mic["id"]).all()
        only = cat.micrograph_particles(int(mic["id"]), stages=["picked"])
        assert len(only) == (df.iloc[:100]["micrograph"] == mic["path"]).sum()
        plan = " ".join(str(r[-1]) for r in cat.conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM particles WHERE set_id = 1 AND micrograph_id = 2"))
        assert "SEARCH c USING PRIMARY KEY (set_id=? AND micrograph_id=?)" in plan
        assert "SEARCH p USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in plan
        assert "SCAN" not in plan


def test_readers_see_committed_state_while_a_crawl_writes(tmp_path):
    rng = np.random.default_rng(11)
    scan, rec, _ = _project(tmp_path, rng, n=50)
    db = tmp_path / "c.db"
    with Catalog(db) as writer:
        _write(writer, scan, rec)
        reader = Catalog(db, readonly=True)
        try:
            with writer.write_project(scan) as w:
                w.put_job(scan.jobs[0], JobRecord(key="J1", raw_type="x", kind="refine3d",
                                                  status="completed"))
                # inside the writer's open transaction the reader still sees the old set
                assert reader.particle_sets()["count"].tolist() == [50]
            assert reader.particle_sets().empty
        finally:
            reader.close()


def test_migrations_apply_in_order(tmp_path, monkeypatch):
    """A later migration (here a made-up version 2 adding a column) is applied once, in order,
    to a catalog at version 1; its rows survive."""
    import harvest.catalog.schema as catalog_module

    db = tmp_path / "c.db"
    rng = np.random.default_rng(10)
    scan, rec, df = _project(tmp_path, rng, n=20)
    with Catalog(db) as cat:
        _write(cat, scan, rec)

    def migration_2(db):
        db["projects"].add_column("note", str)

    monkeypatch.setattr(catalog_module, "MIGRATIONS",
                        (*catalog_module.MIGRATIONS, migration_2))
    monkeypatch.setattr(catalog_module, "SCHEMA_VERSION", len(catalog_module.MIGRATIONS))
    with pytest.raises(ValueError, match="open it once writable"):
        Catalog(db, readonly=True)
    with Catalog(db) as cat:
        assert cat.schema_version() == SCHEMA_VERSION + 1
        assert "note" in {c.name for c in cat.db["projects"].columns}
        assert len(cat.particles(cat.particle_sets()["id"])) == 20
    with Catalog(db) as cat:  # nothing left to apply
        versions = [r[0] for r in cat.conn.execute("SELECT version FROM schema_version")]
        assert versions == list(range(1, SCHEMA_VERSION + 2))
