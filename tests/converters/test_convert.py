"""``cryoglean convert FROM TO INPUT -o OUT``: picker files into other picker files without a
catalog (issue 10, item 8), on real files from other tools where there are some."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import realfile

from converters import registry
from converters.convert import convert
from converters.formats._common import TargetExistsError

BOXM = "MPI-Dortmund/napari-boxmanager"
TOPAZ = "tbepler/topaz"


def _cli(*argv):
    from cryoglean.cli import cli

    return CliRunner().invoke(cli, ["convert", *map(str, argv)])


def test_real_cbox_to_topaz(realdata, tmp_path):
    src = realfile(realdata, BOXM, "test_data/particle_cbox_2d")
    r = _cli("cbox", "topaz", src, "-o", tmp_path / "p.txt")
    assert r.exit_code == 0, r.output
    ours = registry.read_picks(src, "cbox")
    theirs = registry.read_picks(tmp_path / "p.txt", "topaz")
    assert len(theirs) == len(ours) == 249
    assert set(theirs["micrograph"]) == {"TcdA1-0018_frames_sum", "TcdA1-0019_frames_sum"}
    np.testing.assert_array_equal(theirs["x"], np.round(ours["x"]))
    # again without --force: refused, nothing changed
    before = (tmp_path / "p.txt").read_bytes()
    r = _cli("cbox", "topaz", src, "-o", tmp_path / "p.txt")
    assert r.exit_code == 1 and "--force" in r.output and "\n" not in r.output.strip()
    assert (tmp_path / "p.txt").read_bytes() == before
    assert _cli("cbox", "topaz", src, "-o", tmp_path / "p.txt", "--force").exit_code == 0


def test_thi_to_star_flavours(tmp_path):
    picks = pd.DataFrame({"micrograph": ["m1"] * 3 + ["m2"] * 2,
                          "x": [10.0, 20, 30, 40, 50], "y": [5.0, 6, 7, 8, 9],
                          "score": [0.1, 0.2, 0.3, 0.4, 0.5]})
    registry.write_picks(picks, tmp_path / "thi", "thi")
    res = convert("thi", "star", tmp_path / "thi", tmp_path / "coords")
    assert sorted(p.name for p in res.files) == ["m1.star", "m2.star"]
    back = registry.read_picks(tmp_path / "coords", "star")
    np.testing.assert_array_equal(np.sort(back["x"]), picks["x"])
    res = convert("thi", "star", tmp_path / "thi", tmp_path / "p.star", flavour="relion31")
    table = registry.read_picks(res.files[0], "star")
    assert table.attrs["star_flavor"] == "relion31" and set(table["micrograph"]) == {"m1", "m2"}
    with pytest.raises(ValueError, match="no flavour 'relion32'; did you mean 'relion31'"):
        convert("thi", "star", tmp_path / "thi", tmp_path / "q.star", flavour="relion32")
    with pytest.raises(TargetExistsError):
        convert("thi", "star", tmp_path / "thi", tmp_path / "p.star", flavour="relion31")


def test_sizes_and_boxes_come_from_options(realdata, tmp_path):
    src = realfile(realdata, TOPAZ, "test/test_data/EMPIAR-10025/rawdata/particles.txt")
    r = _cli("topaz", "yolo", src, "-o", tmp_path / "y1")
    assert r.exit_code == 1 and "--boxsize" in r.output
    r = _cli("topaz", "yolo", src, "-o", tmp_path / "y2", "--boxsize", 40)
    assert r.exit_code == 1 and "--micrograph-size" in r.output and "--images" in r.output
    r = _cli("topaz", "yolo", src, "-o", tmp_path / "y3", "--boxsize", 40,
             "--micrograph-size", "7676x7420")
    assert r.exit_code == 0, r.output
    # and back, with the same size: the Topaz table's integers again
    r = _cli("yolo", "topaz", tmp_path / "y3", "-o", tmp_path / "back.txt",
             "--micrograph-size", "7676x7420")
    assert r.exit_code == 0, r.output
    a = registry.read_picks(src, "topaz").reset_index(drop=True)
    b = registry.read_picks(tmp_path / "back.txt", "topaz").reset_index(drop=True)
    assert len(a) == len(b) and (a["micrograph"] == b["micrograph"]).all()
    # picks on the declared image come back exactly; a few of Topaz's own picks lie past its
    # edge (y up to 7432 of 7420): YOLO can only hold the visible part of their box
    on = (a["x"] <= 7676) & (a["y"] <= 7420)
    assert 0 < (~on).sum() < 0.01 * len(a)
    np.testing.assert_array_equal(a.loc[on, ["x", "y"]].to_numpy(),
                                  b.loc[on, ["x", "y"]].to_numpy())
    assert (b.loc[~on, "x"] <= 7676).all() and (b.loc[~on, "y"] <= 7420).all()


def test_images_give_the_sizes(tmp_path):
    import mrcfile

    (tmp_path / "imgs").mkdir()
    with mrcfile.new(tmp_path / "imgs" / "m1.mrc") as mrc:
        mrc.set_data(np.zeros((30, 50), np.float32))
    picks = pd.DataFrame({"micrograph": ["m1"], "x": [25.0], "y": [15.0], "diameter": [10.0]})
    registry.write_picks(picks, tmp_path / "in", "box")
    res = convert("box", "yolo", tmp_path / "in", tmp_path / "y", images=tmp_path / "imgs")
    line = res.files[0].read_text().split()
    assert [float(v) for v in line[1:]] == [0.5, 0.5, 0.2, pytest.approx(1 / 3, abs=1e-6)]
