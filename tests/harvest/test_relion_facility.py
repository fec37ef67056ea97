"""harvest.relion on the generated facility (RELION 3.0, 3.1, 4.0, 5.0): every expected set with
its stage, count and per-micrograph counts; positions against the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harvest.conventions import micrograph_key
from harvest.relion import RECENTRED_STAGES, parse_job, scan_project

VERSIONS = {"relion30": "3.0", "relion31": "3.1", "relion40": "4.0", "relion50": "5.0"}


@pytest.fixture(scope="module")
def parsed(facility):
    out = {}
    for name in VERSIONS:
        if name not in facility.projects:
            continue
        scan = scan_project(facility.projects[name])
        out[name] = (scan, {j.key: parse_job(scan, j.key) for j in scan.jobs})
    if not out:
        pytest.skip("the generated facility has no RELION project")
    return facility, out


def _sets(records):
    return {(key, s.name): s for key, rec in records.items() for s in rec.particle_sets}


@pytest.mark.parametrize("name", list(VERSIONS))
def test_scan(parsed, name):
    facility, projects = parsed
    if name not in projects:
        pytest.skip(f"no {name} project in the facility")
    scan, records = projects[name]
    assert scan.software == "relion" and scan.version == VERSIONS[name]
    status = {j.key: j.status for j in scan.jobs}
    # Class2D/job011 failed: 3.0 has no failed state, its pipeline says running
    assert status.pop("Class2D/job011") == ("running" if name == "relion30" else "failed")
    assert set(status.values()) == {"completed"}
    jobs = {j.key: j for j in scan.jobs}
    assert jobs["Select/job008"].parents == ["Class2D/job007"]
    assert records["Class2D/job011"].particle_sets == []
    for key, rec in records.items():
        assert rec.problems == [], (key, rec.problems)
        if jobs[key].status == "completed" and rec.particle_sets:
            assert rec.files, key


@pytest.mark.parametrize("name", list(VERSIONS))
def test_expected_sets(parsed, name):
    facility, projects = parsed
    if name not in projects:
        pytest.skip(f"no {name} project in the facility")
    scan, records = projects[name]
    got = _sets(records)
    expected = facility.expected_sets(name)
    assert sorted(got) == sorted((e["job"], e["name"]) for e in expected)
    for e in expected:
        s = got[(e["job"], e["name"])]
        assert s.stage == e["stage"], e
        assert len(s.particles) == e["count"], e
        assert s.class_id == e["class_id"], e
        per_mic = s.particles["micrograph"].map(micrograph_key).value_counts().to_dict()
        assert per_mic == e["per_micrograph"], e
        assert s.sparse == (e["job"].startswith("ManualPick")), e


@pytest.mark.parametrize("name", list(VERSIONS))
def test_positions_against_truth(parsed, name):
    facility, projects = parsed
    if name not in projects:
        pytest.skip(f"no {name} project in the facility")
    scan, records = projects[name]
    got = _sets(records)
    for e in facility.expected_sets(name):
        s = got[(e["job"], e["name"])]
        truth = facility.expected_positions(name, e["job"], e["name"])
        p = s.particles.assign(key=s.particles["micrograph"].map(micrograph_key))
        recentred = s.stage in RECENTRED_STAGES
        assert recentred == e["recentred"], e  # the generator and the parser agree
        tol = 0.05 if recentred else 1.0
        for key, g in p.groupby("key"):
            t = truth[truth["micrograph"] == key]
            # nearest true item per particle, per axis
            dx = g["x"].to_numpy()[:, None] - t["x"].to_numpy()[None, :]
            dy = g["y"].to_numpy()[:, None] - t["y"].to_numpy()[None, :]
            nearest = np.argmin(np.hypot(dx, dy), axis=1)
            rows = np.arange(len(g))
            assert np.abs(dx[rows, nearest]).max() <= tol, (e, key)
            assert np.abs(dy[rows, nearest]).max() <= tol, (e, key)
            assert len(set(nearest)) == len(g), (e, key)  # one particle per true item
        if recentred:  # the refined shifts were applied (raw positions are picks, off by > 0.3)
            assert not np.allclose(s.particles["x"], s.particles["raw_x"]), e
        else:
            np.testing.assert_array_equal(s.particles["x"], s.particles["raw_x"])


@pytest.mark.parametrize("name", list(VERSIONS))
def test_micrographs(parsed, name):
    facility, projects = parsed
    if name not in projects:
        pytest.skip(f"no {name} project in the facility")
    scan, records = projects[name]
    truth = {m.key: m for m in facility.micrographs}
    ctf = records["CtfFind/job003"].micrographs
    assert sorted(m.key for m in ctf) == sorted(truth)
    for m in ctf:
        t = truth[m.key]
        assert (m.nx, m.ny) == (t.nx, t.ny)
        assert m.pixel_size == pytest.approx(facility.config.pixel_size, rel=1e-6)
        assert m.defocus_u is not None and m.ctf_max_res is not None
    motion = records["MotionCorr/job002"].micrographs
    assert all(m.total_motion is not None for m in motion)
    for key, rec in records.items():
        paths = {m.path for m in rec.micrographs}
        for s in rec.particle_sets:
            assert set(s.particles["micrograph"]) <= paths, key


@pytest.fixture(scope="module")
def tomo_facility(tmp_path_factory):
    from harvest.synth import FacilityConfig, make_facility

    root = tmp_path_factory.mktemp("relion_tomo")
    return make_facility(root / "f", FacilityConfig(n_micrographs=1,
                                                    versions=("relion50_tomo",)), force=True)


def test_relion5_tomography_picks(tomo_facility):
    facility = tomo_facility
    scan = scan_project(facility.projects["relion50_tomo"])
    assert scan.version == "5.0"
    records = {j.key: parse_job(scan, j.key) for j in scan.jobs}
    got = _sets(records)
    expected = facility.expected_sets("relion50_tomo")
    assert sorted(got) == sorted((e["job"], e["name"]) for e in expected)
    for e in expected:
        s = got[(e["job"], e["name"])]
        assert s.is_3d and s.stage == e["stage"] and len(s.particles) == e["count"]
        truth = facility.expected_positions("relion50_tomo", e["job"], e["name"])
        p = s.particles
        assert set(p["micrograph"]) == set(truth["micrograph"])
        # voxels of the reconstructed tomogram file: picks within 1 voxel per axis
        for axis in "xyz":
            d = np.abs(p[axis].to_numpy()[:, None] - truth[axis].to_numpy()[None, :])
            assert d.min(axis=1).max() <= 1.0, axis
        rec = records[e["job"]]
        (m,) = rec.micrographs
        t = facility.tomograms[0]
        assert (m.nx, m.ny, m.nz) == (t.nx, t.ny, t.nz)
        assert m.abs_path == str(t.path)
        assert m.pixel_size == pytest.approx(t.pixel_size)
        assert rec.problems == []


def _nearest_offsets(p: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """Per particle, |dx| and |dy| to its nearest true item on the same micrograph."""
    out = []
    for key, g in p.groupby(p["micrograph"].map(micrograph_key)):
        t = truth[truth["micrograph"] == key]
        dx = g["x"].to_numpy()[:, None] - t["x"].to_numpy()[None, :]
        dy = g["y"].to_numpy()[:, None] - t["y"].to_numpy()[None, :]
        nearest = np.argmin(np.hypot(dx, dy), axis=1)
        rows = np.arange(len(g))
        out.append(np.abs(np.stack([dx[rows, nearest], dy[rows, nearest]], axis=1)))
    return np.concatenate(out)


@pytest.mark.parametrize("name", ["relion30", "relion40"])
def test_2d_sets_recentre_onto_the_truth(facility, name):
    """DESIGN.md's rule (every alignment that carries a shift recentres): the 2D sets' shifts
    (exact in the generated files) put them on the truth."""
    from harvest import conventions

    if name not in facility.projects:
        pytest.skip(f"no {name} project in the facility")
    scan = scan_project(facility.projects[name])
    got = _sets({j.key: parse_job(scan, j.key) for j in scan.jobs if j.harvestable})
    checked = set()
    for e in facility.expected_sets(name):
        s = got[(e["job"], e["name"])]
        if s.stage not in conventions.ALIGNMENT_2D_STAGES:
            continue
        truth = facility.expected_positions(name, e["job"], e["name"])
        assert _nearest_offsets(s.particles, truth).max() <= 0.05, e
        assert not np.allclose(s.particles["x"], s.particles["raw_x"]), e
        checked.add(s.stage)
    assert checked == {"classified2d", "selected2d", "rejected2d"}
