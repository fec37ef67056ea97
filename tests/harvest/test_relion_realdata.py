"""harvest.relion on real STAR files: 3.0/3.1 pairs give the same coordinates, known row counts,
tomogram particles with their tomograms.star. The files are read in place (GPL/MIT)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import realfile

from harvest.conventions import micrograph_key
from harvest.relion import particle_set_from_star
from harvest.starread import StarFormatError, read_star


def _set(realdata, repo, path, stage="extracted", **kw):
    return particle_set_from_star(realfile(realdata, repo, path), "particles", stage, "/proj", **kw)


def test_aspire_relion30_vs_relion31(realdata):
    d = "tests/saved_test_data/"
    s30, m30 = _set(realdata, "ComputationalCryoEM/ASPIRE-Python",
                    d + "sample_particles_relion30.star")
    s31, m31 = _set(realdata, "ComputationalCryoEM/ASPIRE-Python",
                    d + "sample_particles_relion31.star")
    assert len(s30.particles) == len(s31.particles) == 17

    a = s30.particles[["micrograph", "raw_x", "raw_y"]]
    b = s31.particles[["micrograph", "raw_x", "raw_y"]]
    # same particles row by row (same rlnImageName order), except that the ASPIRE 3.1 file's
    # particle 000015 repeats the coordinates of 000014 (a quirk of that hand-edited file)
    same = (a == b).all(axis=1)
    assert same.sum() == 16 and not same.iloc[14]
    assert b.iloc[14].tolist() == b.iloc[13].tolist()
    assert [m.path for m in m30] == [m.path for m in m31] == ["micrograph.mrc"]
    # recentred, each version with its own origin units (the ASPIRE developers copied the
    # numbers, so only the formula differs: px × particle_px/mic_px vs Å / mic_px)
    f30 = realfile(realdata, "ComputationalCryoEM/ASPIRE-Python",
                   d + "sample_particles_relion30.star")
    f31 = realfile(realdata, "ComputationalCryoEM/ASPIRE-Python",
                   d + "sample_particles_relion31.star")
    r30, _ = particle_set_from_star(f30, "p", "refined", "/proj")
    r31, _ = particle_set_from_star(f31, "p", "refined", "/proj")
    o30 = read_star(f30)["model_class_1"]
    o31 = read_star(f31)["particles"]
    # 3.0 without a CTF job: micrograph px = particle px, so x = X − rlnOriginX
    np.testing.assert_allclose(r30.particles["x"], o30["rlnCoordinateX"] - o30["rlnOriginX"])
    np.testing.assert_allclose(r30.particles["y"], o30["rlnCoordinateY"] - o30["rlnOriginY"])
    # 3.1 without a micrograph pixel size: rlnMicrographOriginalPixelSize (0.885 Å)
    np.testing.assert_allclose(r31.particles["x"],
                               o31["rlnCoordinateX"] - o31["rlnOriginXAngst"] / 0.885)
    np.testing.assert_allclose(r31.particles["y"],
                               o31["rlnCoordinateY"] - o31["rlnOriginYAngst"] / 0.885)


def test_cryodrgn_relion31_block_order(realdata):
    a, _ = _set(realdata, "ml-struct-bio/cryodrgn", "tests/data/relion31.star", stage="refined")
    b, _ = _set(realdata, "ml-struct-bio/cryodrgn", "tests/data/relion31.v2.star",
                stage="refined")
    assert len(a.particles) == 5
    pd.testing.assert_frame_equal(a.particles, b.particles)
    assert a.image_pixel_size == b.image_pixel_size == pytest.approx(2.806)
    assert not np.allclose(a.particles["x"], a.particles["raw_x"])  # origins were applied


def test_topaz_star_vs_txt(realdata):
    rel = "test/test_data/EMPIAR-10025/rawdata/"
    s, mics = _set(realdata, "tbepler/topaz", rel + "particles.star")
    assert len(s.particles) == 1500
    txt = pd.read_csv(realfile(realdata, "tbepler/topaz", rel + "particles.txt"), sep="\t")
    assert len(txt) == 1500
    got = s.particles.assign(key=s.particles["micrograph"].map(micrograph_key))
    assert got["key"].nunique() == txt["image_name"].nunique() == 30
    for key, g in got.groupby("key"):
        t = txt[txt["image_name"] == key]
        a = sorted(zip(g["raw_x"], g["raw_y"]))
        b = sorted(zip(t["x_coord"].astype(float), t["y_coord"].astype(float)))
        assert a == b, key
    assert s.image_pixel_size == pytest.approx(3.733333 * 1e4 / 38023)
    assert s.voltage == 300.0 and s.cs == 2.7 and s.amp_contrast == pytest.approx(0.1)


COUNTS = [
    ("ml-struct-bio/cryodrgn", "tests/data/relion5.star", 17, 2),
    ("ml-struct-bio/cryodrgn", "tests/data/relion31.6opticsgroups.star", 139, None),
    ("ml-struct-bio/cryodrgn", "tests/data/sta_testing.star", 219, None),
    ("ml-struct-bio/cryodrgn", "tests/data/FinalRefinement-OriginalParticles-PfCRT.star", 5, None),
    ("jianlin-cheng/CryoSegNet", "finetune_dataset/sample.star", 629, 1),
    ("jianlin-cheng/CryoSegNet", "finetune_dataset/sample2.star", 2, None),
    ("teamtomo/starfile", "tests/data/one_loop.star", 16, None),
]


@pytest.mark.parametrize("repo,path,rows,n_mics", COUNTS, ids=[c[1] for c in COUNTS])
def test_known_particle_counts(realdata, repo, path, rows, n_mics):
    s, mics = _set(realdata, repo, path, stage="refined")
    assert len(s.particles) == rows
    assert np.isfinite(s.particles[["x", "y", "raw_x", "raw_y"]].to_numpy()).all()
    assert s.particles["uid"].tolist() == list(range(rows))
    assert {m.path for m in mics} == set(s.particles["micrograph"])
    if n_mics is not None:
        assert len(mics) == n_mics


def test_one_loop_is_3d_and_windows_paths_kept(realdata):
    s, mics = _set(realdata, "teamtomo/starfile", "tests/data/one_loop.star")
    assert s.is_3d and {"z", "raw_z"} <= set(s.particles.columns)
    assert [m.path for m in mics] == ["tomo_ts01.mrc_15.00Apx.mrc"]
    assert s.particles["raw_z"].iloc[0] == pytest.approx(964.5)


def test_star_without_coordinates_is_a_clear_error(realdata):
    # empiar_10076_7.star: 7 particle images with no rlnCoordinateX (not placeable)
    with pytest.raises(StarFormatError, match="empiar_10076_7.star: particles without rlnCoordinateX"):
        _set(realdata, "ml-struct-bio/cryodrgn", "tests/data/empiar_10076_7.star")


def test_warptools_tomogram_particles(realdata):
    base = "testing/data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12"
    tomos = realfile(realdata, "bpowell122/tomodrgn", base + "_tomograms.star")
    s, mics = _set(realdata, "bpowell122/tomodrgn", base + ".star", stage="picked",
                   tomograms_star=tomos)
    assert s.is_3d and len(s.particles) == 40
    assert s.particles.groupby("micrograph").size().to_dict() == {
        "Unt_050.tomostar": 10, "Unt_076.tomostar": 10, "Unt_083.tomostar": 10,
        "Unt_088.tomostar": 10}
    assert len(mics) == 4
    for m in mics:
        assert (m.nx, m.ny, m.nz) == (4400, 6000, 1400)
        assert m.pixel_size == pytest.approx(1.667)
    np.testing.assert_array_equal(s.particles["z"], s.particles["raw_z"])  # picked: no shifts
    assert s.image_pixel_size == 12.0 and s.box_size == 32


def test_relion5_centred_coordinates_need_and_use_tomograms(tmp_path):
    tomograms = tmp_path / "tomograms.star"
    tomograms.write_text("""# version 50001
data_global
loop_
_rlnTomoName
_rlnTomoTiltSeriesPixelSize
_rlnTomoSizeX
_rlnTomoSizeY
_rlnTomoSizeZ
TS_01 2.0 4000 3000 1000
""")
    particles = tmp_path / "particles.star"
    particles.write_text("""# version 50001
data_particles
loop_
_rlnTomoName
_rlnCenteredCoordinateXAngst
_rlnCenteredCoordinateYAngst
_rlnCenteredCoordinateZAngst
_rlnOriginXAngst
_rlnOriginYAngst
_rlnOriginZAngst
TS_01 0.0 -100.0 20.0 4.0 0.0 -2.0
TS_01 10.0 0.0 0.0 0.0 0.0 0.0
""")
    with pytest.raises(StarFormatError, match="tomograms.star"):
        particle_set_from_star(particles, "particles", "picked", tmp_path)
    s, mics = particle_set_from_star(particles, "particles", "refined", tmp_path,
                                     tomograms_star=tomograms)
    p = s.particles
    # px = Å / 2.0 + size / 2, then refined: − origin Å / 2.0
    np.testing.assert_allclose(p["raw_x"], [2000.0, 2005.0])
    np.testing.assert_allclose(p["raw_y"], [1450.0, 1500.0])
    np.testing.assert_allclose(p["raw_z"], [510.0, 500.0])
    np.testing.assert_allclose(p["x"], [1998.0, 2005.0])
    np.testing.assert_allclose(p["z"], [511.0, 500.0])
    assert (mics[0].nx, mics[0].ny, mics[0].nz) == (4000, 3000, 1000)
