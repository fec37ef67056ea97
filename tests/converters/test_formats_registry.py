"""Registry API, format guessing, overwrite protection, error messages and dataset helpers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from converters import registry
from converters.formats import _common, cetpick, cryolo, thi, yolo


def _picks(n=5, mic="mic_0001"):
    return pd.DataFrame({"micrograph": mic, "x": np.arange(n) * 10.0 + 50,
                         "y": np.arange(n) * 7.0 + 60, "diameter": 40.0})


def test_names_and_capabilities():
    all_names = registry.names()
    assert all_names == sorted(all_names)
    for name in ("yolo", "cryolo", "box", "cbox", "topaz", "thi", "star", "csv", "coord",
                 "cetpick", "imod", "copick"):
        spec = registry.get(name)
        assert spec.name == name
        assert {"read", "write"} <= spec.capabilities
        assert spec.extensions and all(e.startswith(".") for e in spec.extensions)
    assert "copick" in registry.names(3) and "copick" not in registry.names(2)
    assert "yolo" in registry.names(2) and "yolo" not in registry.names(3)
    assert registry.get("box").extensions == (".box",)
    with pytest.raises(ValueError, match="dim"):
        registry.names(4)


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match=r"unknown format 'thl'; did you mean 'thi'\? known: "):
        registry.get("thl")
    with pytest.raises(ValueError, match="unknown format 'zzzz'; known: box"):
        registry.get("zzzz")


@pytest.mark.parametrize("text,fmt", [
    ("image_name\tx_coord\ty_coord\nm\t1\t2\n", "topaz"),
    ("image_name\tx_coord\ty_coord\tz_coord\nm\t1\t2\t3\n", "cetpick"),
    ("image_name x_coord z_coord y_coord score\nm 1 3 2 0.5\n", "cetpick"),
    ("0 0.5 0.5 0.1 0.1\n", "yolo"),
    ("0 0.5 0.5 0.1 0.1 0.9\n", "yolo"),
    ("10.5 20.25 30\n11 21 31\n", "imod"),
    ("1 1 10.5 20.25 30\n", "imod"),
])
def test_guess_txt_by_content(tmp_path, text, fmt):
    p = tmp_path / "m.txt"
    p.write_text(text)
    assert registry.guess_format(p) == fmt


def test_guess_unknown_extension(tmp_path):
    p = tmp_path / "m.xyz"
    p.write_text("1 2\n")
    with pytest.raises(ValueError, match=r"m\.xyz.*extension '\.xyz'"):
        registry.read_picks(p)


def test_cetpick_reads_inference_order(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("image_name\tx_coord\tz_coord\ty_coord\tscore\ntomo1\t10\t3\t20\t0.9\n")
    got = registry.read_picks(p)
    assert got[["x", "y", "z", "score"]].values.tolist() == [[10, 20, 3, 0.9]]
    assert cetpick.axes_from_columns(1, 2, 3, "xzy") == (1, 3, 2)
    assert cetpick.axes_from_columns(1, 2, 3, "zxy") == (2, 3, 1)


def test_directory_read_uses_stems(tmp_path):
    registry.write_picks(_picks(3, "Movies/a.mrc"), tmp_path / "d", "thi")
    registry.write_picks(_picks(2, "b"), tmp_path / "d", "thi")
    got = registry.read_picks(tmp_path / "d")
    assert got["micrograph"].tolist() == ["a"] * 3 + ["b"] * 2


def test_mixed_directory_needs_format(tmp_path):
    registry.write_picks(_picks(), tmp_path, "thi")
    registry.write_picks(_picks(), tmp_path, "box")
    with pytest.raises(ValueError, match="cannot tell the format"):
        registry.read_picks(tmp_path)
    assert len(registry.read_picks(tmp_path, "box")) == 5


def test_never_overwrites_without_flag(tmp_path):
    (f,) = registry.write_picks(_picks(), tmp_path, "box")
    before = f.read_text()
    with pytest.raises(FileExistsError, match=r"mic_0001\.box: exists; pass overwrite=True"):
        registry.write_picks(_picks(2), tmp_path, "box")
    assert f.read_text() == before
    registry.write_picks(_picks(2), tmp_path, "box", overwrite=True)
    assert len(f.read_text().splitlines()) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["mic_0001.box"]  # no temp files left


def test_table_format_in_directory(tmp_path):
    (f,) = registry.write_picks(_picks(), tmp_path / "labels", "topaz")
    assert f == tmp_path / "labels" / "particles.txt"
    (g,) = registry.write_picks(_picks(), tmp_path / "labels", "star", flavor="relion31")
    assert g.name == "particles.star"


def test_single_file_for_one_micrograph(tmp_path):
    (f,) = registry.write_picks(_picks(), tmp_path / "x.box", "box")
    assert f == tmp_path / "x.box"
    with pytest.raises(ValueError, match="give a directory"):
        registry.write_picks(pd.concat([_picks(), _picks(mic="b")]), tmp_path / "y.box", "box")


def test_missing_columns_and_sizes_are_clear(tmp_path):
    with pytest.raises(ValueError, match="lacks column"):
        registry.write_picks(pd.DataFrame({"x": [1.0]}), tmp_path, "box")
    with pytest.raises(ValueError, match="box size"):
        registry.write_picks(_picks().drop(columns="diameter"), tmp_path, "box")
    with pytest.raises(ValueError, match="image size of micrograph 'mic_0001' unknown"):
        registry.write_picks(_picks(), tmp_path, "yolo")
    with pytest.raises(ValueError, match="voxel_spacing"):
        registry.write_picks(_picks().assign(z=1.0), tmp_path, "copick")
    with pytest.raises(ValueError, match="z"):
        registry.write_picks(_picks(), tmp_path, "imod")
    with pytest.raises(ValueError, match="unknown STAR flavor 'relion4'"):
        registry.write_picks(_picks(), tmp_path, "star", flavor="relion4")


@pytest.mark.parametrize("fmt,name,text,line", [
    ("box", "m.box", "10 20 30 30\n11 xx 30 30\n", 2),
    ("box", "m.box", "10 20 30 30\n\n11 20\n", 3),
    ("thi", "m.thi", "[Particle Coordinates: X Y Value]\n1\t2\t0.5\nfoo\t2\t0.1\n[End]\n", 3),
    ("topaz", "m.txt", "image_name\tx_coord\ty_coord\nm\t1\t2\nm\tq\t3\n", 3),
    ("yolo", "m.txt", "0 0.5 0.5 0.1 0.1\n0 0.5 0.5\n", 2),
    ("cbox", "m.cbox", "data_cryolo\nloop_\n_CoordinateX\n_CoordinateY\n_Width\n_Height\n"
                       "1 2 3 4\n1 2 3\n", 8),
    ("csv", "m.csv", "X-Coordinate,Y-Coordinate,Diameter\n1,2,3\nzz,2,3\n", 3),
])
def test_malformed_input_names_file_and_line(tmp_path, fmt, name, text, line):
    p = tmp_path / name
    p.write_text(text)
    opts = {"image_size": (100, 100)} if fmt == "yolo" else {}
    with pytest.raises(ValueError, match=rf"{name}:{line}: "):
        registry.read_picks(p, fmt, **opts)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.box"):
        registry.read_picks(tmp_path / "nope.box")


def test_yolo_dataset_yaml_like_partinet(tmp_path):
    y = yolo.write_dataset_yaml(tmp_path, tmp_path / "train.txt", tmp_path / "val.txt")
    assert y.name == "cryo_training.yaml"
    assert y.read_text() == (
        f"train: {tmp_path}/train.txt\nval: {tmp_path}/val.txt\n\n# number of classes\nnc: 1\n"
        "\n# class names\nnames: [ 'particle' ]\n"
    )
    doc = yaml.safe_load(y.read_text())
    assert doc["nc"] == 1 and doc["names"] == ["particle"]


def test_yolo_image_size_from_images(tmp_path):
    import mrcfile

    images = tmp_path / "images"
    images.mkdir()
    with mrcfile.new(images / "mic_0001.mrc") as m:
        m.set_data(np.zeros((100, 80), dtype=np.float32))  # ny=100, nx=80
    (f,) = registry.write_picks(_picks(1), tmp_path / "labels", "yolo", images=images)
    assert f.read_text() == "0 0.625000 0.600000 0.500000 0.400000\n"
    back = registry.read_picks(f, images=images)
    assert back[["x", "y", "diameter"]].values.tolist() == [[50.0, 60.0, 40.0]]


def test_cryolo_config(tmp_path):
    p = cryolo.write_config(tmp_path / "config.json", 160, "train_image/", "train_annot/")
    doc = json.loads(p.read_text())
    assert doc["model"]["anchors"] == [160, 160]
    assert doc["model"]["architecture"] == "PhosaurusNet" and doc["model"]["input_size"] == 1024
    assert doc["model"]["filter"] == [0.1, "filtered_tmp/"]
    assert doc["train"]["train_image_folder"] == "train_image/"
    assert doc["train"]["saved_weights_name"] == "cryolo_model.h5"
    assert doc["valid"] == {"valid_image_folder": "", "valid_annot_folder": "", "valid_times": 1}
    assert doc["other"] == {"log_path": "logs/"}
    q = cryolo.write_config(tmp_path / "c2.json", 100, "a/", "b/", "c/", "d/", nb_epoch=5,
                            filter=None)
    doc = json.loads(q.read_text())
    assert doc["train"]["nb_epoch"] == 5 and "filter" not in doc["model"]
    assert doc["valid"]["valid_annot_folder"] == "d/"
    with pytest.raises(ValueError, match="unknown crYOLO config key 'nb_epochs'"):
        cryolo.write_config(tmp_path / "c3.json", 100, "a/", "b/", nb_epochs=5)


def test_thi_file_lists(tmp_path):
    lst = thi.write_file_list(["/data/a.mrc", "/data/b.mrc"], tmp_path / "list.thi")
    lines = lst.read_text().splitlines()
    assert lines[0].startswith("[") and lines[0].endswith("]") and lines[1:] == [
        "/data/a.mrc", "/data/b.mrc"]
    assert thi.read_file_list(lst) == [("/data/a.mrc", None), ("/data/b.mrc", None)]
    merged = tmp_path / "merge_results.thi"
    merged.write_text("[Micrograph Particle coordinate:\n #0:MICROGRAPH_PATH    STRING\n"
                      " #1:PARTICLE_PATH    STRING]\n/abs/mic.mrc /abs/out/mic.thi\n")
    assert thi.read_file_list(merged) == [("/abs/mic.mrc", "/abs/out/mic.thi")]


def test_mic_stem():
    assert _common.mic_stem("J3/motioncorrected/x_patch_aligned.mrc") == "x_patch_aligned"
    assert _common.mic_stem("a.b.c") == "a.b.c"
    assert _common.mic_stem("C:\\data\\m.tiff") == "m"


def test_cryolo_star_annotations(tmp_path):
    files = cryolo.write_star(_picks(3), tmp_path)
    assert [f.name for f in files] == ["mic_0001.star"]
    text = files[0].read_text()
    assert text.startswith("data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n")
    back = cryolo.read_star(files[0])
    assert back[["x", "y"]].values.tolist() == [[50.0, 60.0], [60.0, 67.0], [70.0, 74.0]]
    assert (back["micrograph"] == "mic_0001").all()


def test_star_garbage_is_a_format_error(tmp_path):
    p = tmp_path / "bad.star"
    p.write_text("this is not a star file\n")
    with pytest.raises(ValueError, match="bad.star"):
        registry.read_picks(p)


def test_copick_json_layout(tmp_path):
    picks = _picks(2).assign(z=[3.0, 4.0], micrograph="TS001")
    (f,) = registry.write_picks(picks, tmp_path, "copick", voxel_spacing=10.0,
                                object_name="ribosome", user_id="me")
    assert f == tmp_path / "TS001" / "Picks" / "me_0_ribosome.json"
    doc = json.loads(f.read_text())
    assert doc["pickable_object_name"] == "ribosome" and doc["run_name"] == "TS001"
    assert doc["unit"] == "angstrom" and doc["voxel_spacing"] == 10.0
    assert doc["points"][0]["location"] == {"x": 500.0, "y": 600.0, "z": 30.0}
    assert doc["points"][0]["transformation_"] == np.eye(4).tolist()
    back = registry.read_picks(tmp_path)
    assert back[["x", "y", "z"]].values.tolist() == [[50.0, 60.0, 3.0], [60.0, 67.0, 4.0]]
    with pytest.raises(ValueError, match="underscores"):
        registry.write_picks(picks, tmp_path / "x", "copick", voxel_spacing=1.0, user_id="a_b")


def test_new_label_directory_appears_whole(tmp_path):
    picks = pd.concat([_picks(2, f"m{i}") for i in range(20)])
    files = registry.write_picks(picks, tmp_path / "labels", "box")
    assert len(files) == 20 and all(f.parent == tmp_path / "labels" for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels"]  # no hidden temp dir left
    # an existing directory with one clashing file: nothing is written
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "m5.box").write_text("keep\n")
    with pytest.raises(FileExistsError, match="m5.box"):
        registry.write_picks(picks, tmp_path / "more", "box")
    assert sorted(p.name for p in (tmp_path / "more").iterdir()) == ["m5.box"]


def test_partinet_star_parses_like_partinet(tmp_path):
    """PartiNet's split parser: header lines `_rln<Name> #<index>`, values through int()."""
    picks = _picks(3, "Movies/mic_0001_DW.mrc").assign(x=[10.4, 20.5, 30.6])
    (f,) = registry.write_picks(picks, tmp_path / "p.star", "star", flavor="partinet")
    lines = f.read_text().splitlines()
    assert lines[:7] == ["data_", "", "loop_", "_rlnMicrographName #1", "_rlnCoordinateX #2",
                         "_rlnCoordinateY #3", "_rlnDiameter #4"]
    columns = {}
    for line in lines:
        if line.startswith("_rln"):
            name, idx = line.split()
            columns[name[4:]] = int(idx[1:]) - 1
    rows = [line.split() for line in lines[7:]]
    assert [r[columns["MicrographName"]] for r in rows] == ["mic_0001_DW.mrc"] * 3
    assert [int(r[columns["CoordinateX"]]) for r in rows] == [10, 20, 31]  # half to even
    assert [int(r[columns["Diameter"]]) for r in rows] == [40] * 3


def test_image_lists(tmp_path):
    from converters.formats import topaz

    t = topaz.write_image_list({"Movies/a.mrc": "/x/a.mrc", "b": "/x/b.mrc"}, tmp_path / "i.txt")
    assert t.read_text() == "image_name\tpath\na\t/x/a.mrc\nb\t/x/b.mrc\n"
    c = cetpick.write_image_list(["/t/TS_01.rec"], tmp_path / "c.txt")
    assert c.read_text() == "image_name\trec_path\nTS_01\t/t/TS_01.rec\n"
    y = yolo.write_image_list([tmp_path / "images/train/a.png"], tmp_path / "train.txt")
    assert y.read_text() == f"{tmp_path}/images/train/a.png\n"


def test_yolo_centres_off_the_image_become_the_visible_part_of_their_box(tmp_path):
    # A recentred edge pick may lie up to 5 % outside its micrograph (harvest.validate).
    # YOLOv7/PartiNet loaders refuse a whole label file with a value < 0 or a centre > 1,
    # so such a box is cut to the part on the image; inside centres keep their full box.
    picks = pd.DataFrame({"micrograph": "mic_0001", "x": [-4.0, 104.0, 50.0, -30.0],
                          "y": [50.0, 50.0, 102.0, 50.0], "diameter": 20.0})
    (f,) = registry.write_picks(picks, tmp_path / "labels", "yolo", image_size=(100, 100))
    rows = [list(map(float, line.split())) for line in f.read_text().splitlines()]
    assert len(rows) == 3  # the box of x = -30 (d 20) lies wholly off the image: dropped
    values = np.array([r[1:] for r in rows])
    assert (values >= 0).all() and (values <= 1).all()
    # x -4, d 20: visible x in [0, 6] -> cx 0.03, w 0.06; height untouched
    assert rows[0] == pytest.approx([0, 0.03, 0.5, 0.06, 0.2])
    # x 104: visible [94, 100] -> cx 0.97, w 0.06
    assert rows[1] == pytest.approx([0, 0.97, 0.5, 0.06, 0.2])
    # y 102: visible [92, 100] -> cy 0.96, h 0.08
    assert rows[2] == pytest.approx([0, 0.5, 0.96, 0.2, 0.08])
    inside = pd.DataFrame({"micrograph": "mic_0001", "x": [5.0], "y": [95.0], "diameter": 20.0})
    (g,) = registry.write_picks(inside, tmp_path / "in", "yolo", image_size=(100, 100))
    assert g.read_text() == "0 0.050000 0.950000 0.200000 0.200000\n"  # PartiNet's own rule
