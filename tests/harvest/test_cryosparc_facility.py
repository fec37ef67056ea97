"""harvest.cryosparc on the generated facility: every expected set, counts and positions vs truth."""

from __future__ import annotations

import os

import numpy as np
import pytest

from harvest.conventions import micrograph_key
from harvest.cryosparc import RECENTRE_STAGES, parse_job, scan_project


@pytest.fixture(scope="module")
def parsed(facility):
    if "cryosparc" not in facility.projects:
        pytest.skip("the generated facility has no CryoSPARC project")
    scan = scan_project(facility.projects["cryosparc"])
    return facility, scan, {j.key: parse_job(scan, j.key) for j in scan.jobs}


def _sets(records):
    return {(key, s.name): s for key, rec in records.items() for s in rec.particle_sets}


def test_project_and_jobs(parsed):
    facility, scan, records = parsed
    assert scan.software == "cryosparc" and scan.version != "unknown"
    assert scan.problems == []
    status = {j.key: j.status for j in scan.jobs}
    assert all(s in ("completed", "failed", "running") for s in status.values())
    for key, rec in records.items():
        assert rec.problems == [], (key, rec.problems)
        if status[key] != "completed":
            assert rec.particle_sets == []
        assert rec.created_at and rec.created_at.endswith("Z")


def test_every_expected_set_with_stage_count_and_per_micrograph(parsed):
    facility, scan, records = parsed
    got = _sets(records)
    expected = facility.expected_sets("cryosparc")
    assert sorted(got) == sorted((e["job"], e["name"]) for e in expected)
    for e in expected:
        s = got[(e["job"], e["name"])]
        assert s.stage == e["stage"], e
        assert len(s.particles) == e["count"], e
        assert s.class_id == e["class_id"], e
        per_mic = s.particles["micrograph"].map(micrograph_key).value_counts().to_dict()
        assert per_mic == e["per_micrograph"], e


def test_positions_against_truth(parsed):
    facility, scan, records = parsed
    got = _sets(records)
    for e in facility.expected_sets("cryosparc"):
        s = got[(e["job"], e["name"])]
        truth = facility.expected_positions("cryosparc", e["job"], e["name"])
        df = s.particles.set_index("uid")
        uids = truth["uid"].to_numpy(np.uint64).view(np.int64)
        assert set(df.index) == set(uids.tolist()), e
        mine = df.loc[uids]
        assert (mine["micrograph"].map(micrograph_key).to_numpy() ==
                truth["micrograph"].to_numpy()).all()
        tx, ty = truth["x"].to_numpy(), truth["y"].to_numpy()
        # raw positions are picks: within 1 px of the truth on each axis
        assert np.abs(mine["raw_x"].to_numpy() - tx).max() <= 1.0, e
        assert np.abs(mine["raw_y"].to_numpy() - ty).max() <= 1.0, e
        if s.stage in RECENTRE_STAGES:
            assert np.abs(mine["x"].to_numpy() - tx).max() < 0.05, e
            assert np.abs(mine["y"].to_numpy() - ty).max() < 0.05, e
        else:  # picked/extracted/2D: the picked position is kept
            assert (mine["x"] == mine["raw_x"]).all() and (mine["y"] == mine["raw_y"]).all()


def test_set_metadata(parsed):
    facility, scan, records = parsed
    got = _sets(records)
    manual = [s for (job, _), s in got.items() if records[job].raw_type.startswith("manual")]
    assert manual and all(s.sparse for s in manual)
    for s in got.values():
        assert s.fingerprint and os.path.isfile(s.source_file)
        if s.stage != "picked":
            assert s.box_size and s.box_size > 0
            assert s.image_pixel_size == pytest.approx(2 * facility.config.pixel_size, rel=1e-5)
            assert s.voltage and s.cs and s.amp_contrast is not None


def test_micrographs_and_ctf_against_truth(parsed):
    facility, scan, records = parsed
    truth = {m.key: m for m in facility.micrographs}
    ctf_jobs = [r for r in records.values() if r.kind == "ctf"]
    assert ctf_jobs
    mics = {m.key: m for m in ctf_jobs[0].micrographs}
    assert set(mics) == set(truth)
    for key, m in mics.items():
        t = truth[key]
        assert (m.nx, m.ny) == (t.nx, t.ny)
        assert m.pixel_size == pytest.approx(facility.config.pixel_size, rel=1e-5)
        assert m.defocus_u == pytest.approx(t.defocus_u, rel=1e-5)
        assert m.defocus_v == pytest.approx(t.defocus_v, rel=1e-5)
        assert m.defocus_angle == pytest.approx(t.defocus_angle, abs=1e-3)
        assert m.ctf_max_res == pytest.approx(t.ctf_max_res, rel=1e-5)
        assert m.ctf_fom == pytest.approx(t.ctf_fom, rel=1e-5)
        assert os.path.exists(m.abs_path)
        assert os.path.samefile(m.abs_path, t.path)
    # total motion (records: micrograph pixels) from Patch Motion's rigid trajectories
    motion_jobs = [r for r in records.values() if r.kind == "motion"]
    assert motion_jobs
    for m in motion_jobs[0].micrographs:
        t = truth[m.key]
        assert m.total_motion == pytest.approx(t.total_motion, rel=1e-4)  # Å, catalog-wide
    # particle jobs reference the same micrograph files, with shape and uid
    for rec in records.values():
        for m in rec.micrographs:
            assert m.key in truth and (m.nx, m.ny) == (truth[m.key].nx, truth[m.key].ny)
            assert m.exposure_uid == str(facility.scenario.exposure_uids[m.key])


def test_project_under_non_utf8_directory_name(facility, tmp_path):
    """Facility storage has names in legacy encodings: parsing must not fail on them."""
    import os
    import shutil

    from harvest.cryosparc import parse_job, scan_project

    odd = tmp_path / os.fsdecode(b"caf\xe9 proj")
    shutil.copytree(facility.root, odd, symlinks=True)
    root = odd / facility.projects["cryosparc"].relative_to(facility.root)
    scan = scan_project(root)
    rec = parse_job(scan, "J9")
    (pset,) = rec.particle_sets
    assert len(pset.particles) > 0 and pset.fingerprint


def test_2d_sets_recentre_onto_the_truth(facility):
    """DESIGN.md's rule (every alignment that carries a shift recentres): the 2D sets read
    ``alignments2D`` and land on the truth."""
    from harvest import conventions

    if "cryosparc" not in facility.projects:
        pytest.skip("the generated facility has no CryoSPARC project")
    scan = scan_project(facility.projects["cryosparc"])
    records = {j.key: parse_job(scan, j.key) for j in scan.jobs}
    got = _sets(records)
    checked = set()
    for e in facility.expected_sets("cryosparc"):
        s = got[(e["job"], e["name"])]
        assert records[e["job"]].problems == [], e
        truth = facility.expected_positions("cryosparc", e["job"], e["name"])
        mine = s.particles.set_index("uid").loc[truth["uid"].to_numpy(np.uint64).view(np.int64)]
        if s.stage in conventions.RECENTRED_STAGES:
            assert np.abs(mine["x"].to_numpy() - truth["x"].to_numpy()).max() < 0.05, e
            assert np.abs(mine["y"].to_numpy() - truth["y"].to_numpy()).max() < 0.05, e
            checked.add(s.stage)
    assert {"classified2d", "selected2d", "rejected2d", "refined"} <= checked
