"""The RELION job table drives both steps: a row added to it is scanned and parsed without
further code, and every job type the generator writes has a row."""

from __future__ import annotations

import dataclasses

import mrcfile
import numpy as np
import pytest
from test_relion_pipeline import write_pipeline

from harvest import relion
from harvest.conventions import STAGES
from harvest.records import JOB_KINDS
from harvest.relion import jobs as relion_jobs
from harvest.relion.project import READERS

SUBTRACTED = """
# version 30001

data_optics
loop_
_rlnOpticsGroup #1
_rlnImagePixelSize #2
_rlnMicrographPixelSize #3
_rlnImageSize #4
1 2.0 1.0 64

# version 30001

data_particles
loop_
_rlnMicrographName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnOriginXAngst #4
_rlnOriginYAngst #5
_rlnOpticsGroup #6
_rlnClassNumber #7
MotionCorr/job000/Movies/a.mrc 100.0 50.0 4.0 -2.0 1 2
MotionCorr/job000/Movies/a.mrc 200.0 80.0 0.0  0.0 1 1
MotionCorr/job000/Movies/b.mrc  30.0 40.0 1.0  1.0 1 1
"""


def _subtract_project(root):
    """A 3.1 project with one finished Subtract job (a type the table has no row for)."""
    write_pipeline(root, [("Subtract/job001/", "None", 14, 2)],
                   [("Subtract/job001/particles_subtracted.star", 3)],
                   outputs=[("Subtract/job001/", "Subtract/job001/particles_subtracted.star")],
                   version=30001)
    (root / "Subtract/job001").mkdir(parents=True)
    (root / "Subtract/job001/particles_subtracted.star").write_text(SUBTRACTED)
    (root / "Subtract/job001/RELION_JOB_EXIT_SUCCESS").write_text("")
    for name in ("a", "b"):
        mic = root / f"MotionCorr/job000/Movies/{name}.mrc"
        mic.parent.mkdir(parents=True, exist_ok=True)
        with mrcfile.new(mic) as mrc:
            mrc.set_data(np.zeros((100, 300), dtype=np.float32))
    return root


def test_a_row_added_to_the_table_is_scanned_and_parsed(tmp_path, monkeypatch):
    root = _subtract_project(tmp_path)
    star = str(root / "Subtract/job001/particles_subtracted.star")

    # without a row: listed, nothing read
    scan = relion.scan_project(root)
    (job,) = scan.jobs
    assert job.kind == "other" and job.files == []
    rec = relion.parse_job(scan, job.key)
    assert rec.particle_sets == [] and rec.problems == []

    # one row, no other code: the scan stamps the file and the parse reads it as the row says
    row = relion.RelionJob("extract", reader="particles", files=("particles_subtracted.star",),
                           stage="classified3d", per_class=True)
    monkeypatch.setitem(relion_jobs.JOB_TYPES, "Subtract", row)
    scan = relion.scan_project(root)
    (job,) = scan.jobs
    assert job.kind == "extract"
    assert [f.path for f in job.files] == [star]
    rec = relion.parse_job(scan, job.key)
    assert rec.problems == []
    assert [f.path for f in rec.files] == [star]
    sets = {s.name: s for s in rec.particle_sets}
    assert sorted(sets) == ["class_1", "class_2"]
    assert sets["class_2"].stage == "classified3d" and sets["class_2"].class_id == 2
    p = sets["class_2"].particles
    # classified3d recentres: x − rlnOriginXAngst / micrograph px (1 Å)
    np.testing.assert_allclose(p[["x", "y"]].to_numpy(), [[96.0, 52.0]])
    np.testing.assert_allclose(p[["raw_x", "raw_y"]].to_numpy(), [[100.0, 50.0]])
    assert sets["class_1"].box_size == 64 and len(sets["class_1"].particles) == 2
    assert sorted((m.key, m.nx, m.ny, m.pixel_size) for m in rec.micrographs) == [
        ("a", 300, 100, 1.0), ("b", 300, 100, 1.0)]

    # the same row with another stage and set name: positions stay raw, one set
    monkeypatch.setitem(relion_jobs.JOB_TYPES, "Subtract", dataclasses.replace(
        row, stage="extracted", per_class=False, set_name="{stem}"))
    scan = relion.scan_project(root)
    (pset,) = relion.parse_job(scan, scan.jobs[0].key).particle_sets
    assert (pset.name, pset.stage) == ("particles_subtracted", "extracted")
    assert (pset.particles["x"] == pset.particles["raw_x"]).all()

    # a row whose file is absent: a problem naming it, not an exception
    monkeypatch.setitem(relion_jobs.JOB_TYPES, "Subtract", dataclasses.replace(
        row, files=("absent.star",)))
    scan = relion.scan_project(root)
    assert scan.jobs[0].files == []
    rec = relion.parse_job(scan, scan.jobs[0].key)
    assert rec.particle_sets == [] and "absent.star" in rec.problems[0].path


def _generated_job_types(*facilities):
    types = {}
    for fac in facilities:
        for name, root in fac.projects.items():
            if name.startswith("relion"):
                scan = relion.scan_project(root)
                for proc in scan.extra["processes"].values():
                    types.setdefault(proc.jtype, f"{name}:{proc.key}")
    return types


@pytest.fixture(scope="module")
def tomo_facility(tmp_path_factory):
    from harvest.synth import FacilityConfig, make_facility

    root = tmp_path_factory.mktemp("tomo") / "facility"
    return make_facility(root, FacilityConfig(n_micrographs=2, versions=("relion50_tomo",)),
                         force=True)


def test_every_generated_job_type_has_a_row(facility, tomo_facility):
    types = _generated_job_types(facility, tomo_facility)
    assert {"Class2D", "Select", "Refine3D", "PickTomo"} <= set(types)
    missing = {t: where for t, where in types.items() if t not in relion.JOB_TYPES}
    assert not missing, f"RELION job types the generator writes without a row: {missing}"


def test_rows_are_consistent():
    rows = list(relion.JOB_TYPES.values()) + [r for _, r in relion_jobs.IMPORT_OUTPUTS]
    for row in rows:
        assert row.kind in JOB_KINDS, row
        assert row.stage is None or row.stage in STAGES, row
        if row.reader is None:
            assert row.stage is None and not row.files, row
        else:
            assert row.reader in READERS and row.files, row
        if row.reader == "particles":
            assert row.stage is not None, row
        if row.rejects_from:  # the parent kind it reads rejects from must have a source file
            parents = [r for r in rows if r.kind == row.rejects_from]
            assert parents and all(r.files for r in parents), row
    assert relion.TYPE_KINDS == {t: r.kind for t, r in relion.JOB_TYPES.items()}
