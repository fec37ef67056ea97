"""End to end on the generated facility: positions against the truth, counts per stage,
idempotence and incremental crawls."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from harvest.catalog import DATA_TABLES, Catalog
from harvest.crawl import crawl

# Crawl bookkeeping (timestamps, surrogate ids of rows rewritten per crawl) is not data.
BOOKKEEPING = {
    "projects": ("last_crawl", "first_seen"),
    "jobs": ("parsed_at",),
    "files": ("id", "parsed_at"),
    "problems": ("id", "crawl_id"),
}


AFTER_REFINEMENT = ("refined", "classified3d")


def snapshot(db) -> dict[str, list[tuple]]:
    with Catalog(db, readonly=True) as cat:
        return {t: cat.table_rows(t, exclude=BOOKKEEPING.get(t, ())) for t in DATA_TABLES}


@pytest.fixture(scope="module")
def fac(request, tmp_path_factory):
    """The shared generated facility once both parsers exist; until the RELION parser lands, a
    CryoSPARC-only facility (so that what exists is tested)."""
    pytest.importorskip("harvest.synth", reason="harvest.synth (SYNTH) not there yet")
    pytest.importorskip("harvest.cryosparc", reason="harvest.cryosparc (CSPARC) not there yet")
    try:
        import harvest.relion  # noqa: F401
    except ImportError:
        from harvest.synth import FacilityConfig, make_facility

        root = tmp_path_factory.mktemp("cs_facility")
        return make_facility(root / "facility", FacilityConfig(versions=("cryosparc",)))
    return request.getfixturevalue("facility")


@pytest.fixture(scope="module")
def crawled(fac, tmp_path_factory):
    db = tmp_path_factory.mktemp("crawled") / "catalog.db"
    summary = crawl([fac.root], db, progress=False)
    return db, summary


def _project_id(cat, root) -> int:
    return cat.find_project(os.path.abspath(root))


def _nearest(px: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-axis error (max of |dx|, |dy|) from each point to its nearest truth point."""
    if not len(px):
        return np.zeros(0)
    if not len(truth):
        return np.full(len(px), np.inf)
    diff = px[:, None, :] - truth[None, :, :]
    nearest = np.linalg.norm(diff, axis=2).argmin(axis=1)
    return np.abs(diff[np.arange(len(px)), nearest]).max(axis=1)


def test_crawl_reads_everything(fac, crawled):
    _, summary = crawled
    assert summary.problems == 0
    assert summary.projects == len(fac.projects)
    assert summary.new_particles > 0


def test_positions_and_counts_per_stage(fac, crawled):
    """Every expected set of every project: stage, count, class, count per micrograph; raw
    positions within 1 px (per axis) of the truth, recentred centres within 0.05 px after 3D
    refinement (2D classification shifts: within 1 px; whether parsers apply them is the
    parsers' decision). All failures are listed together."""
    db, _ = crawled
    failures = []
    with Catalog(db, readonly=True) as cat:
        for name, root in fac.projects.items():
            pid = _project_id(cat, root)
            sets = cat.particle_sets(project_ids=[pid])
            mics = cat.micrographs([pid]).set_index("id")
            expected = fac.expected_sets(name)
            assert len(expected) > 0
            found = {(r.job_key, r.name): r for r in sets.itertuples()}
            for exp in expected:
                key = (exp["job"], exp["name"])
                where = f"{name} {key[0]}:{key[1]}"
                if key not in found:
                    failures.append(f"{where}: set missing; have {sorted(found)}")
                    continue
                s = found[key]
                got_cls = None if np.isnan(s.class_id) else int(s.class_id)
                for what, got, want in (("stage", s.stage, exp["stage"]),
                                        ("count", s.count, exp["count"]),
                                        ("class_id", got_cls, exp["class_id"])):
                    if got != want:
                        failures.append(f"{where}: {what} {got!r}, expected {want!r}")
                parts = cat.particles([s.id])
                parts["key"] = mics.loc[parts["micrograph_id"], "key"].to_numpy()
                if parts.groupby("key").size().to_dict() != exp["per_micrograph"]:
                    failures.append(f"{where}: counts per micrograph differ")
                truth = fac.expected_positions(name, exp["job"], exp["name"])
                tol = 0.05 if exp["recentred"] and exp["stage"] in AFTER_REFINEMENT else 1.0
                for mkey, group in parts.groupby("key"):
                    t = truth[truth["micrograph"] == mkey][["x", "y"]].to_numpy()
                    raw = _nearest(group[["raw_x", "raw_y"]].to_numpy(), t).max()
                    best = _nearest(group[["x", "y"]].to_numpy(), t).max()
                    if raw > 1.0:
                        failures.append(f"{where} {mkey}: raw position {raw:.3f} px off")
                    if best > tol:
                        failures.append(f"{where} {mkey}: centre {best:.3f} px off (tol {tol})")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])


def test_micrograph_metadata_merged(fac, crawled):
    db, _ = crawled
    truth = {m.key: m for m in fac.micrographs}
    with Catalog(db, readonly=True) as cat:
        mics = cat.micrographs()
        assert mics.groupby(["project_id", "path"]).size().max() == 1
        for m in mics.itertuples():
            t = truth.get(m.key)
            if t is None or m.nx is None or np.isnan(m.defocus_u):
                continue
            assert (m.nx, m.ny) == (t.nx, t.ny)
            assert abs(m.defocus_u - t.defocus_u) < 1.0
        # every project's micrographs that carry particles know their size
        with_parts = cat.conn.execute(
            "SELECT DISTINCT micrograph_id FROM set_counts").fetchall()
        sized = mics.set_index("id").loc[[r[0] for r in with_parts], "nx"]
        assert sized.notna().all()


def test_idempotent_and_deterministic(fac, crawled, tmp_path):
    db, _ = crawled
    first = snapshot(db)
    again = crawl([fac.root], db, progress=False)
    assert (again.new_jobs, again.new_particles, again.parsed_jobs) == (0, 0, 0)
    assert snapshot(db) == first
    # a fresh catalog from the same facility is the same, row by row
    other = tmp_path / "other.db"
    crawl([fac.root], other, progress=False)
    assert snapshot(other) == first


def _cs_root(fac, tmp_path):
    if "cryosparc" not in fac.projects:
        pytest.skip("no CryoSPARC project in the facility")
    copy = tmp_path / "fac"
    shutil.copytree(fac.root, copy, symlinks=True)
    return copy, copy / os.path.relpath(fac.projects["cryosparc"], fac.root)


def _parsed_at(db, pid):
    with Catalog(db, readonly=True) as cat:
        return dict(cat.conn.execute(
            "SELECT key, parsed_at FROM jobs WHERE project_id = ?", (pid,)).fetchall())


def _clone_cs_job(proj, src: str, dst: str) -> None:
    """A new CryoSPARC job: copy job ``src`` to ``dst`` with its uid and file names renamed."""
    shutil.copytree(proj / src, proj / dst, symlinks=True)
    for name in os.listdir(proj / dst):
        if name.startswith(src + "_"):
            os.rename(proj / dst / name, proj / dst / (dst + name[len(src):]))
    text = (proj / dst / "job.json").read_text()
    text = text.replace(f"{src}/{src}_", f"{dst}/{dst}_")
    text = text.replace(f'"{src}/', f'"{dst}/').replace(f'"{src}"', f'"{dst}"')
    (proj / dst / "job.json").write_text(text)


def test_incremental(fac, tmp_path):
    copy, proj = _cs_root(fac, tmp_path)
    db = tmp_path / "inc.db"
    crawl([copy], db, progress=False)
    with Catalog(db, readonly=True) as cat:
        pid = _project_id(cat, proj)
    before = _parsed_at(db, pid)

    # 1. one job's output changes (new mtime): only that job is parsed again
    cs_file = sorted(p for p in (proj / "J7").iterdir() if p.suffix == ".cs")[-1]
    st = cs_file.stat()
    os.utime(cs_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    s = crawl([copy], db, progress=False)
    after = _parsed_at(db, pid)
    assert s.parsed_jobs == 1 and s.new_jobs == 0
    assert [k for k in after if after[k] != before[k]] == ["J7"]

    # 2. a new job appears
    _clone_cs_job(proj, "J9", "J13")
    s = crawl([copy], db, progress=False)
    assert s.new_jobs == 1 and s.parsed_jobs == 1 and s.problems == 0
    with Catalog(db, readonly=True) as cat:
        sets = cat.particle_sets(project_ids=[pid])
        j9 = sets[sets["job_key"] == "J9"]
        j13 = sets[sets["job_key"] == "J13"]
        assert list(j13["count"]) == list(j9["count"]) and list(j13["stage"]) == ["refined"]

    # 3. the running job finishes
    doc = json.loads((proj / "J12" / "job.json").read_text())
    assert doc["status"] == "running"
    doc["status"] = "completed"
    doc["completed_at"] = {"$date": "2026-01-01T03:00:00.000Z"}
    (proj / "J12" / "job.json").write_text(json.dumps(doc))
    s = crawl([copy], db, progress=False)
    assert s.parsed_jobs == 1
    with Catalog(db, readonly=True) as cat:
        jobs = cat.jobs([pid]).set_index("key")
        assert jobs.at["J12", "status"] == "completed"
        assert _parsed_at(db, pid)["J12"] is not None

    # 4. a job's bookkeeping becomes unreadable: a problem, but the job is not "missing"
    good = (proj / "J5" / "job.json").read_text()
    (proj / "J5" / "job.json").write_text(good[: len(good) // 2])
    s = crawl([copy], db, progress=False)
    assert s.problems == 1
    with Catalog(db, readonly=True) as cat:
        assert cat.jobs([pid]).set_index("key").at["J5", "status"] == "completed"
        assert "job.json" in cat.problems()["path"].iloc[0]
    (proj / "J5" / "job.json").write_text(good)
    s = crawl([copy], db, progress=False)
    assert s.problems == 0 and s.parsed_jobs == 1  # J5's job.json changed: parsed again

    # 5. a job is deleted: marked missing, its rows kept
    n_sets = len(Catalog(db, readonly=True).particle_sets(project_ids=[pid]))
    shutil.rmtree(proj / "J10")
    s = crawl([copy], db, progress=False)
    assert s.parsed_jobs == 0
    with Catalog(db, readonly=True) as cat:
        jobs = cat.jobs([pid]).set_index("key")
        assert jobs.at["J10", "status"] == "missing", cat.problems()
        assert len(cat.particle_sets(project_ids=[pid])) == n_sets

    # 6. the project is deleted: marked missing
    shutil.rmtree(proj)
    crawl([copy], db, progress=False)
    with Catalog(db, readonly=True) as cat:
        assert cat.projects().set_index("id").at[pid, "status"] == "missing"


def test_cli_crawl_ls_show(fac, tmp_path, capsys):
    from cryoglean.cli import main

    db = tmp_path / "cli.db"
    assert main(["crawl", str(fac.root), "--db", str(db), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["problems"] == 0 and summary["projects"] == len(fac.projects)
    assert main(["crawl", str(fac.root), "--db", str(db), "--quiet"]) == 0
    assert main(["crawl", str(fac.root), "--db", str(db)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"crawled {len(fac.projects)} projects: 0 new jobs, 0 new particles, "
                           "0 problems in ")
    assert main(["ls", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "refined" in out and "picked" in out
    for root in fac.projects.values():
        assert str(root) in out
    name, root = next(iter(fac.projects.items()))
    assert main(["show", str(root), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    exp = fac.expected_sets(name)
    for e in exp:
        assert e["job"] in out and e["name"] in out
    assert fac.micrographs[0].key in out
    assert main(["show", "no-such-project", "--db", str(db)]) != 0


def test_tomogram_picks_3d(tmp_path):
    """RELION 5 tomography picks (optional facility version): 3D sets keep z, tomograms have
    nz and is_tomogram, positions within 1 px of the truth on every axis."""
    pytest.importorskip("harvest.relion", reason="harvest.relion (RELION) not there yet")
    from harvest.synth import FacilityConfig, make_facility

    fac = make_facility(tmp_path / "fac", FacilityConfig(versions=("relion50_tomo",)))
    db = tmp_path / "tomo.db"
    summary = crawl([fac.root], db, progress=False)
    assert summary.problems == 0
    with Catalog(db, readonly=True) as cat:
        mics = cat.micrographs().set_index("id")
        assert mics["is_tomogram"].all() and mics["nz"].notna().all()
        sets = cat.particle_sets()
        for exp in fac.expected_sets("relion50_tomo"):
            s = sets[(sets["job_key"] == exp["job"]) & (sets["name"] == exp["name"])]
            assert len(s) == 1 and s["count"].iloc[0] == exp["count"] and s["is_3d"].iloc[0]
            parts = cat.particles(s["id"])
            truth = fac.expected_positions("relion50_tomo", exp["job"], exp["name"])
            got = parts[["raw_x", "raw_y", "raw_z"]].to_numpy()
            t = truth[["x", "y", "z"]].to_numpy()
            diff = got[:, None, :] - t[None, :, :]
            nearest = np.linalg.norm(diff, axis=2).argmin(axis=1)
            err = np.abs(diff[np.arange(len(got)), nearest]).max()
            assert err <= 1.0, f"{exp['job']}: {err:.3f} px off"
            keys = mics.loc[parts["micrograph_id"], "key"]
            assert keys.value_counts().to_dict() == exp["per_micrograph"]
