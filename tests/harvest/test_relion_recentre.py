"""RELION recentring on hand-made projects: sign, Å vs px origins, particle px != micrograph px,
non-square micrographs (x = column, y = row), and which stages recentre."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
from test_relion_pipeline import write_pipeline

from harvest.relion import RECENTRED_STAGES, parse_job, particle_set_from_star, scan_project

NX, NY = 300, 200  # non-square: a swapped x/y shows up in nx/ny and in the bounds check


def _micrograph(root: Path, rel: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(p) as mrc:
        mrc.set_data(np.zeros((NY, NX), dtype=np.float32))  # numpy (rows=y, cols=x)


def _project(root: Path, version: str, ctf_text: str, refine_text: str) -> Path:
    procs = [("CtfFind/job001/", "None", 2, 2), ("Class3D/job002/", "None", 9, 2),
             ("Refine3D/job003/", "None", 10, 2), ("Class2D/job004/", "None", 8, 2)]
    nodes = [("CtfFind/job001/micrographs_ctf.star", 1)]
    write_pipeline(root, procs, nodes,
                   inputs=[("CtfFind/job001/micrographs_ctf.star", "Class3D/job002/"),
                           ("CtfFind/job001/micrographs_ctf.star", "Refine3D/job003/"),
                           ("CtfFind/job001/micrographs_ctf.star", "Class2D/job004/")],
                   outputs=[("CtfFind/job001/", "CtfFind/job001/micrographs_ctf.star")],
                   version=None if version == "3.0" else 30001)
    for job in ("CtfFind/job001", "Class3D/job002", "Refine3D/job003", "Class2D/job004"):
        (root / job).mkdir(parents=True, exist_ok=True)
    (root / "CtfFind/job001/micrographs_ctf.star").write_text(ctf_text)
    (root / "Refine3D/job003/run_data.star").write_text(refine_text)
    (root / "Class3D/job002/run_it025_data.star").write_text(refine_text)
    (root / "Class2D/job004/run_it025_data.star").write_text(refine_text)
    _micrograph(root, "MotionCorr/job000/Movies/a.mrc")
    return root


CTF_30 = """data_
loop_
_rlnMicrographName #1
_rlnMagnification #2
_rlnDetectorPixelSize #3
_rlnDefocusU #4
MotionCorr/job000/Movies/a.mrc 50000 5.0 12000
"""
# particles extracted binned by 2: 25000× on a 5 µm detector = 2 Å; micrographs 1 Å
RUN_30 = """data_images
loop_
_rlnMicrographName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnOriginX #4
_rlnOriginY #5
_rlnMagnification #6
_rlnDetectorPixelSize #7
_rlnClassNumber #8
MotionCorr/job000/Movies/a.mrc 250.0 150.0  3.0 -1.5 25000 5.0 1
MotionCorr/job000/Movies/a.mrc  20.0 180.0 -2.0  0.0 25000 5.0 2
"""


def test_relion30_scale_and_sign(tmp_path):
    root = _project(tmp_path, "3.0", CTF_30, RUN_30)
    scan = scan_project(root)
    assert scan.version == "3.0"
    rec = parse_job(scan, "Refine3D/job003")
    assert rec.problems == []
    (s,) = rec.particle_sets
    assert s.stage == "refined" and s.name == "run_data"
    p = s.particles
    # x = X − rlnOriginX × particle_px / micrograph_px = X − origin × 2
    np.testing.assert_allclose(p["x"], [250.0 - 6.0, 20.0 + 4.0])
    np.testing.assert_allclose(p["y"], [150.0 + 3.0, 180.0])
    np.testing.assert_allclose(p["raw_x"], [250.0, 20.0])
    np.testing.assert_allclose(p["raw_y"], [150.0, 180.0])
    assert s.image_pixel_size == pytest.approx(2.0)
    (m,) = rec.micrographs
    assert (m.nx, m.ny) == (NX, NY)
    assert m.pixel_size == pytest.approx(1.0)
    assert m.key == "a" and m.abs_path == str(root / "MotionCorr/job000/Movies/a.mrc")
    assert (p["x"] < m.nx).all() and (p["y"] < m.ny).all()


CTF_31 = """
# version 30001

data_optics
loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographPixelSize #3
opticsGroup1 1 1.25

# version 30001

data_micrographs
loop_
_rlnMicrographName #1
_rlnOpticsGroup #2
MotionCorr/job000/Movies/a.mrc 1
"""


def _run31(micrograph_px: bool) -> str:
    extra_label = "_rlnMicrographPixelSize #4\n" if micrograph_px else ""
    extra_value = " 1.0" if micrograph_px else ""
    return f"""
# version 30001

data_optics
loop_
_rlnOpticsGroup #1
_rlnImagePixelSize #2
_rlnMicrographOriginalPixelSize #3
{extra_label}1 2.5 0.5{extra_value}

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
_rlnAutopickFigureOfMerit #8
MotionCorr/job000/Movies/a.mrc 250.0 150.0  5.0 -2.5 1 1 0.5
MotionCorr/job000/Movies/a.mrc  20.0 180.0 -2.5  0.0 1 2 -999
"""


def test_relion31_uses_optics_micrograph_pixel_size(tmp_path):
    root = _project(tmp_path, "3.1", CTF_31, _run31(micrograph_px=True))
    scan = scan_project(root)
    rec = parse_job(scan, "Refine3D/job003")
    p = rec.particle_sets[0].particles
    # x = X − rlnOriginXAngst / 1.0 (optics rlnMicrographPixelSize wins over the CTF job's)
    np.testing.assert_allclose(p["x"], [245.0, 22.5])
    np.testing.assert_allclose(p["y"], [152.5, 180.0])
    assert p["score"].iloc[0] == 0.5 and np.isnan(p["score"].iloc[1])  # −999 = no score


def test_relion31_falls_back_on_ctf_micrographs(tmp_path):
    root = _project(tmp_path, "3.1", CTF_31, _run31(micrograph_px=False))
    rec = parse_job(scan_project(root), "Refine3D/job003")
    p = rec.particle_sets[0].particles
    np.testing.assert_allclose(p["x"], [250.0 - 5.0 / 1.25, 20.0 + 2.5 / 1.25])
    assert rec.micrographs[0].pixel_size == pytest.approx(1.25)


def test_relion31_without_ctf_uses_original_pixel_size(tmp_path):
    path = tmp_path / "run_data.star"
    path.write_text(_run31(micrograph_px=False))
    s, mics = particle_set_from_star(path, "run_data", "refined", tmp_path)
    np.testing.assert_allclose(s.particles["x"], [250.0 - 10.0, 20.0 + 5.0])
    assert mics[0].pixel_size == pytest.approx(0.5)


def test_classes_and_stages_that_recentre(tmp_path):
    root = _project(tmp_path, "3.1", CTF_31, _run31(micrograph_px=True))
    scan = scan_project(root)
    c3 = parse_job(scan, "Class3D/job002").particle_sets
    assert [(s.name, s.class_id, s.stage, len(s.particles)) for s in c3] == [
        ("class_1", 1, "classified3d", 1), ("class_2", 2, "classified3d", 1)]
    assert c3[0].particles["x"].iloc[0] == pytest.approx(245.0)
    # class numbers as RELION numbers them (rlnClassNumber, 1-based)
    assert c3[1].particles["class_id"].tolist() == [2]
    (c2,) = parse_job(scan, "Class2D/job004").particle_sets
    assert c2.stage == "classified2d" and c2.name == "run_it025_data"
    # 2D classification shifts are applied too (DESIGN.md: every alignment recentres)
    np.testing.assert_allclose(c2.particles["x"], [245.0, 22.5])
    np.testing.assert_allclose(c2.particles["raw_x"], [250.0, 20.0])
    assert c2.particles["class_id"].tolist() == [1, 2]
    # RELION's −999 "no value" is a missing score
    assert np.isnan(c2.particles["score"].iloc[1]) and c2.particles["score"].iloc[0] == 0.5
    assert RECENTRED_STAGES == {"classified2d", "selected2d", "rejected2d", "classified3d",
                                "refined"}
