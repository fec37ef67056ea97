"""Real files written by other tools are read with their known contents (read in place)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import realfile

from converters import registry
from converters.formats import _common, cryolo, star, topaz

BOXM = "MPI-Dortmund/napari-boxmanager"
TOPAZ = "tbepler/topaz"
CSN = "jianlin-cheng/CryoSegNet"
DRGN = "ml-struct-bio/cryodrgn"
ASPIRE = "ComputationalCryoEM/ASPIRE-Python"


@pytest.mark.parametrize(
    "name,rows,first_corner,conf",
    [
        ("TcdA1-0018_frames_sum.cbox", 120, (3700.3671875, 3874.455551147461), 0.6578449010848999),
        ("TcdA1-0019_frames_sum.cbox", 129, None, None),
    ],
)
def test_particle_cbox_2d(realdata, name, rows, first_corner, conf):
    path = realfile(realdata, BOXM, f"test_data/particle_cbox_2d/{name}")
    picks = registry.read_picks(path)  # .cbox -> cbox
    assert len(picks) == rows
    assert "z" not in picks.columns  # <NA> Z: 2-D
    assert (picks["micrograph"] == path.stem).all()
    assert (picks["diameter"] == 220.0).all()
    assert picks["score"].between(0, 1).all()
    if first_corner:
        # corners: centre = corner + width/2 (crYOLO CoordsIO, napari-boxmanager reader)
        assert picks["x"].iloc[0] == first_corner[0] + 110
        assert picks["y"].iloc[0] == first_corner[1] + 110
        assert picks["score"].iloc[0] == conf


@pytest.mark.parametrize("name,rows,filaments", [("ActLifeact_02885.cbox", 223, 4),
                                                 ("ActLifeact_03211.cbox", 16, 1)])
def test_filament_cbox(realdata, name, rows, filaments):
    picks = cryolo.read_cbox(realfile(realdata, BOXM, f"test_data/filament_cbox_2d/{name}"))
    assert len(picks) == rows
    assert picks["filament"].nunique() == filaments
    assert picks["filament"].dtype == np.int64
    assert (picks["diameter"] == 100.0).all()


@pytest.fixture(scope="module")
def cbox3d(realdata):
    return registry.read_picks(realfile(realdata, BOXM, "test_data/cbox3d/particles.cbox"))


def test_cbox3d(cbox3d):
    picks = cbox3d
    assert len(picks) == 34414  # the 3278 _slice_index rows are not picks
    first = picks.iloc[0]
    assert (first["x"], first["y"], first["z"]) == (714.5 + 18.5, 665.0 + 18.5, 114.5625)
    assert picks["score"].isna().all()  # <NA> confidences
    assert (picks["diameter"] == 37.0).all()


def test_cbox3d_rewrites_identically(cbox3d, tmp_path):
    (out,) = cryolo.write_cbox(cbox3d, tmp_path / "particles.cbox")
    back = cryolo.read_cbox(out)
    for c in ("x", "y", "z", "diameter"):
        np.testing.assert_array_equal(back[c], cbox3d[c])
    assert "<NA>" in out.read_text().splitlines()[20]


@pytest.mark.parametrize("path,rows", [
    ("test_data/2d_center.box", [(24, 40), (36, 62), (78, 51)]),
    ("test_data/box_data/test_0.box", [(47, 18), (29, 36), (7, 7)]),
])
def test_eman_box(realdata, path, rows):
    picks = registry.read_picks(realfile(realdata, BOXM, path))
    assert list(zip(picks["x"], picks["y"])) == rows  # width 0: corner = centre
    assert (picks["diameter"] == 0).all()


def test_topaz_txt_and_star_agree(realdata):
    txt = registry.read_picks(
        realfile(realdata, TOPAZ, "test/test_data/EMPIAR-10025/rawdata/particles.txt"))
    st = registry.read_picks(
        realfile(realdata, TOPAZ, "test/test_data/EMPIAR-10025/rawdata/particles.star"))
    assert len(txt) == len(st) == 1500
    assert txt["micrograph"].nunique() == 30
    assert txt.iloc[0][["micrograph", "x", "y"]].tolist() == [
        "14sep05c_c_00003gr_00014sq_00004hl_00004es_c", 6924.0, 2481.0]
    # same picks: the STAR names carry .mrc, Topaz strips it
    assert [_common.mic_stem(m) for m in st["micrograph"]] == txt["micrograph"].tolist()
    assert st.attrs["star_flavor"] == "relion30"
    np.testing.assert_array_equal(st["x"], txt["x"])
    np.testing.assert_array_equal(st["y"], txt["y"])
    assert star.sniff_flavor(
        realfile(realdata, TOPAZ, "test/test_data/EMPIAR-10025/rawdata/particles.star")
    ) == "relion30"


def test_cryosegnet_star_and_csv_agree(realdata):
    """sample.star (TAB-separated, data_, 3 columns) and the CryoPPP csv hold the same 629 picks
    of Falcon_2012_06_12-14_33_35_0, in the same order; the csv adds Diameter 108."""
    st = registry.read_picks(realfile(realdata, CSN, "finetune_dataset/sample.star"))
    csv = registry.read_picks(
        realfile(realdata, CSN, "finetune_dataset/csv_files/Falcon_2012_06_12-14_33_35_0.csv"))
    assert len(st) == len(csv) == 629
    assert set(st["micrograph"]) == {"Falcon_2012_06_12-14_33_35_0.mrc"}
    assert set(csv["micrograph"]) == {"Falcon_2012_06_12-14_33_35_0"}
    np.testing.assert_array_equal(st["x"], csv["x"])
    np.testing.assert_array_equal(st["y"], csv["y"])
    assert (csv["diameter"] == 108).all()
    assert (st["x"].iloc[0], st["y"].iloc[0]) == (3752.0, 693.0)


def test_cryosegnet_sample2_relion31(realdata):
    picks = star.read(realfile(realdata, CSN, "finetune_dataset/sample2.star"))
    assert len(picks) == 2
    assert picks.attrs["star_flavor"] == "relion31"
    assert picks[["x", "y"]].values.tolist() == [[4857.0, 425.0], [3094.0, 1269.0]]
    assert picks["class_id"].tolist() == [50, 18]


@pytest.mark.parametrize("repo,path,rows,has_score", [
    (DRGN, "tests/data/relion31.star", 5, False),
    (DRGN, "tests/data/relion31.v2.star", 5, False),
    (DRGN, "tests/data/relion5.star", 17, True),
    (ASPIRE, "tests/saved_test_data/sample_particles_relion31.star", 17, True),
    (ASPIRE, "tests/saved_test_data/sample_particles_relion30.star", 17, True),
])
def test_relion_particle_stars(realdata, repo, path, rows, has_score):
    p = realfile(realdata, repo, path)
    picks = registry.read_picks(p)
    assert len(picks) == rows
    assert ("score" in picks.columns) == has_score
    assert picks["x"].notna().all() and picks["y"].notna().all()
    assert picks["micrograph"].str.endswith(".mrc").all()


def test_aspire_30_and_31_hold_the_same_picks(realdata):
    a = star.read(realfile(realdata, ASPIRE, "tests/saved_test_data/sample_particles_relion30.star"))
    b = star.read(realfile(realdata, ASPIRE, "tests/saved_test_data/sample_particles_relion31.star"))
    # hand-edited by the ASPIRE developers: row 15 of the 3.1 file repeats row 14, the other
    # 16 rows are the same particles as the 3.0 file
    keep = np.arange(17) != 14
    cols = ["x", "y", "score"]
    np.testing.assert_array_equal(a[cols].values[keep], b[cols].values[keep])
    np.testing.assert_array_equal(b[cols].values[14], b[cols].values[13])


def test_star_without_coordinates_is_a_clear_error(realdata):
    p = realfile(realdata, DRGN, "tests/data/empiar_10076_7.star")
    with pytest.raises(ValueError, match="empiar_10076_7.star.*rlnCoordinateX"):
        star.read(p)


def test_topaz_reader_on_real_file_scale(realdata):
    p = realfile(realdata, TOPAZ, "test/test_data/EMPIAR-10025/rawdata/particles.txt")
    small = topaz.read(p, scale=0.125)  # e.g. a table of 8x down-scaled images read back
    full = topaz.read(p)
    np.testing.assert_array_equal(small["x"] * 8, full["x"])
