"""PartiNet's file stages: ``cryoglean star`` (strict ``>``, ceil, golden files, RELION layout
read back by harvest.starread and by starfile as an oracle) and ``cryoglean split`` (PartiNet's
75/25 split with scikit-learn's random_state 42, export yolo's layout, a real STAR)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import mrcfile
import numpy as np
import pytest
from click.testing import CliRunner

from converters.formats import star as star_format
from converters.formats import yolo
from converters.partinet import (
    PartiNetFileError,
    detections_to_star,
    partinet_split_indices,
    read_detections,
    split_star,
)
from cryoglean.cli import cli
from harvest.starread import read_star

GOLDEN = Path(__file__).parents[1] / "golden" / "partinet"
REALDATA = Path(os.environ.get("CRYOGLEAN_REALDATA",
                               Path(__file__).resolve().parents[3] / "shared" / "realdata"))
CRYOSEGNET = REALDATA / "jianlin-cheng__CryoSegNet" / "finetune_dataset"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CRYOGLEAN_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} missing: run once with CRYOGLEAN_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text()


@pytest.fixture()
def detections(tmp_path):
    """Images of known sizes (PNG 100×50, MRC 64×32, one PNG without labels) and detect's
    labels, with values chosen at the edges of PartiNet's rules."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    cv2.imwrite(str(images / "mic_a.png"), np.zeros((50, 100), np.uint8))
    cv2.imwrite(str(images / "mic_c.png"), np.zeros((20, 20), np.uint8))
    with mrcfile.new(images / "mic_b.mrc") as m:
        m.set_data(np.zeros((32, 64), np.float32))
    (labels / "mic_a.txt").write_text(
        "0 0.5 0.5 0.1 0.2 0.1\n"          # conf == --conf: dropped (strictly greater)
        "0 0.123 0.456 0.05 0.04 0.10001\n"  # x 12.3 -> 13, y 22.8 -> 23, d max(5, 2) -> 5
        "0 0.25 0.5 0.033 0.1 0.9\n"       # exact 25, 25; d max(3.3, 5) -> 5
        "0 0.011 0.99 0.2 0.301 0.3\n"     # x 1.1 -> 2, y 49.5 -> 50, d max(20, 15.05) -> 20
    )
    (labels / "mic_b.txt").write_text("0 0.5 0.25 0.2 0.1 0.5\n")  # 32, 8, max(12.8, 3.2) -> 13
    (labels / "not_an_image.txt").write_text("0 0.5 0.5 0.1 0.1 0.9\n")  # no image: ignored
    return images, labels


def test_star_rules_strict_conf_and_ceil(detections, tmp_path):
    images, labels = detections
    picks, n_images, missing = read_detections(labels, images, conf=0.1)
    assert n_images == 3 and missing == ["mic_c"]
    got = [(m, x, y, d) for m, x, y, d in picks[["micrograph", "x", "y", "diameter"]].itertuples(
        index=False)]
    assert got == [("mic_a.mrc", 13, 23, 5), ("mic_a.mrc", 25, 25, 5), ("mic_a.mrc", 2, 50, 20),
                   ("mic_b.mrc", 32, 8, 13)]
    # a threshold just below a confidence keeps it; equal drops it
    assert len(read_detections(labels, images, conf=0.0999)[0]) == 5
    assert len(read_detections(labels, images, conf=0.9)[0]) == 0


def test_star_golden_file_and_relion_layout(detections, tmp_path):
    images, labels = detections
    out = tmp_path / "out" / "picks.star"
    res = detections_to_star(labels, images, out, conf=0.1, relion=True,
                             relion_project_dir=tmp_path / "relion",
                             mrc_prefix="MotionCorr/job003/movies")
    assert (res.particles, res.micrographs, res.images) == (4, 2, 3)
    _golden("picks.star", out.read_text())
    pick = tmp_path / "relion" / "partinet" / "pick.star"
    coords_a = tmp_path / "relion" / "partinet" / "movies" / "mic_a.star"
    assert res.relion_files == [pick, coords_a, coords_a.with_name("mic_b.star")]
    _golden("pick.star", pick.read_text())
    _golden("mic_a.star", coords_a.read_text())

    # RELION-side readers: cryoglean's reader and starfile (the oracle) agree on every file
    import starfile

    table = read_star(out)[""]
    oracle = starfile.read(out)
    assert list(table.columns) == list(oracle.columns) == [
        "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnDiameter"]
    assert table["rlnCoordinateX"].tolist() == oracle["rlnCoordinateX"].tolist() == [13, 25, 2, 32]
    assert table["rlnDiameter"].tolist() == oracle["rlnDiameter"].tolist() == [5, 5, 20, 13]
    index = read_star(pick)["coordinate_files"]
    oracle_index = starfile.read(pick)
    assert index["rlnMicrographName"].tolist() == oracle_index["rlnMicrographName"].tolist() == [
        "MotionCorr/job003/movies/mic_a.mrc", "MotionCorr/job003/movies/mic_b.mrc"]
    for rel in index["rlnMicrographCoordinates"]:  # paths relative to the RELION project
        path = tmp_path / "relion" / rel
        ours, theirs = read_star(path)[""], starfile.read(path)
        assert ours["rlnCoordinateX"].tolist() == theirs["rlnCoordinateX"].tolist()
        assert ours["rlnAutopickFigureOfMerit"].tolist() == \
            theirs["rlnAutopickFigureOfMerit"].tolist()
    mic_a = read_star(coords_a)[""]
    assert mic_a["rlnCoordinateY"].tolist() == [23.0, 25.0, 50.0]
    assert mic_a["rlnAutopickFigureOfMerit"].tolist() == [0.10001, 0.9, 0.3]
    # the picks format reader takes the STAR back (PartiNet flavour sniffed)
    back = star_format.read(out)
    assert back["x"].tolist() == [13, 25, 2, 32] and set(back["micrograph"]) == {
        "mic_a.mrc", "mic_b.mrc"}


def test_star_cli_and_errors(detections, tmp_path):
    images, labels = detections
    out = tmp_path / "cli.star"
    runner = CliRunner()
    res = runner.invoke(cli, ["star", "--labels", str(labels), "--images", str(images),
                              "--output", str(out), "--conf", "0.2"])
    assert res.exit_code == 0, res.output
    assert "3 particles on 2 of 3 images" in res.output
    assert len(read_star(out)[""]) == 3
    assert not (tmp_path / "partinet").exists()  # no RELION files without --relion
    res = runner.invoke(cli, ["star", "--labels", str(labels), "--images", str(images),
                              "--output", str(out), "--relion"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "partinet" / "pick.star").is_file()  # default: beside --output
    # labels without confidences, a missing labels folder, a folder as output: one line each
    (labels / "mic_b.txt").write_text("0 0.5 0.25 0.2 0.1\n")
    for args, message in [
        (["--labels", str(labels)], "without a confidence column"),
        (["--labels", str(tmp_path / "nope")], "labels directory not found"),
    ]:
        res = runner.invoke(cli, ["star", *args, "--images", str(images), "--output", str(out)])
        assert res.exit_code == 1 and message in res.output, res.output
        assert "Traceback" not in res.output
    with pytest.raises(PartiNetFileError, match="FILE.star"):
        detections_to_star(labels, images, tmp_path / "folder_name")


def test_star_without_rows_writes_the_header(detections, tmp_path):
    images, labels = detections
    out = tmp_path / "empty.star"
    res = detections_to_star(labels, images, out, conf=0.95)
    assert res.particles == 0
    assert list(read_star(out)[""].columns) == [
        "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnDiameter"]


def test_split_indices_match_scikit_learn():
    """Expected values from scikit-learn 1.9.1's train_test_split(np.arange(n), test_size=0.25,
    shuffle=True, random_state=42) (run once outside the suite; it is not a dependency)."""
    train, val = partinet_split_indices(10)
    assert train.tolist() == [0, 7, 2, 9, 4, 3, 6] and val.tolist() == [8, 1, 5]
    train, val = partinet_split_indices(13)
    assert train.tolist() == [5, 2, 1, 12, 4, 7, 10, 3, 6] and val.tolist() == [11, 9, 0, 8]
    train, val = partinet_split_indices(8, test_size=0.4, seed=7)
    assert train.tolist() == [3, 1, 4, 7] and val.tolist() == [2, 5, 0, 6]
    assert [len(partinet_split_indices(n)[1]) for n in (2, 3, 4, 5, 40, 101)] == [
        1, 1, 1, 2, 10, 26]  # ceil(0.25·n)
    train, val = partinet_split_indices(3, test_size=0)
    assert sorted(train.tolist()) == [0, 1, 2] and val.size == 0
    with pytest.raises(PartiNetFileError, match="none for training"):
        partinet_split_indices(1)
    with pytest.raises(PartiNetFileError, match="below 1"):
        partinet_split_indices(4, test_size=1.0)


def _star(path: Path, rows, diameter=True) -> Path:
    labels = ["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY"] + (
        ["rlnDiameter"] if diameter else [])
    text = "\ndata_\n\nloop_\n" + "".join(f"_{lab} #{i}\n" for i, lab in enumerate(labels, 1))
    text += "".join(" ".join(str(v) for v in r[: len(labels)]) + "\n" for r in rows)
    path.write_text(text)
    return path


def test_split_layout_and_assignment(tmp_path):
    images = tmp_path / "denoised"
    images.mkdir()
    stems = [f"mic_{i:02d}" for i in range(10)]
    for i, s in enumerate(stems):
        if i == 3:  # an MRC among PNGs, as PartiNet's lookup allows
            with mrcfile.new(images / f"{s}.mrc") as m:
                m.set_data(np.zeros((40, 80), np.float32))
        else:
            cv2.imwrite(str(images / f"{s}.png"), np.zeros((40, 80), np.uint8))
    rows = [(f"MotionCorr/job002/{s}.mrc", 20 + i, 10, 8) for i, s in enumerate(reversed(stems))]
    rows.append(("gone.mrc", 5, 5, 8))  # no image: skipped
    star = _star(tmp_path / "particles.star", rows)
    out = tmp_path / "training_data"
    res = split_star(star, images, out)
    # sorted stems indexed like sklearn: validation = indices 8, 1, 5
    assert res.val == ["mic_01", "mic_05", "mic_08"]
    assert res.train == [s for s in stems if s not in res.val]
    assert res.without_image == ["gone"] and res.particles == 10
    assert sorted(p.name for p in (out / "images" / "val").iterdir()) == [
        "mic_01.png", "mic_05.png", "mic_08.png"]
    assert (out / "images" / "train" / "mic_03.mrc").is_file()
    # train.txt / val.txt: absolute paths of the final images; the yaml as export yolo writes it
    assert (out / "val.txt").read_text().splitlines() == [
        str(out / "images" / "val" / f"{s}.png") for s in res.val]
    assert (out / "cryo_training.yaml").read_text() == (
        f"train: {out / 'train.txt'}\nval: {out / 'val.txt'}\n\n# number of classes\nnc: 1\n\n"
        "# class names\nnames: [ 'particle' ]\n")
    # PartiNet's label line: class x/W y/H d/W d/H with 6 decimals; mic_09 is the first STAR row
    assert (out / "labels" / "train" / "mic_09.txt").read_text() == \
        "0 0.250000 0.250000 0.100000 0.200000\n"
    back = yolo.read(out / "labels" / "val" / "mic_05.txt", image_size=(80, 40))
    assert back[["x", "y", "diameter"]].values.tolist() == [[24.0, 10.0, 8.0]]
    # an existing output is replaced only with force (PartiNet would mix old and new files)
    with pytest.raises(FileExistsError, match="--force"):
        split_star(star, images, out)
    res = split_star(star, images, out, class_id=2, force=True)
    assert (out / "labels" / "val" / "mic_05.txt").read_text().startswith("2 ")


def test_split_needs_a_diameter_and_images(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((10, 10), np.uint8))
    cv2.imwrite(str(images / "b.png"), np.zeros((10, 10), np.uint8))
    star = _star(tmp_path / "p.star", [("a.mrc", 1, 2), ("b.mrc", 3, 4)], diameter=False)
    with pytest.raises(PartiNetFileError, match="--diameter"):
        split_star(star, images, tmp_path / "o")
    res = split_star(star, images, tmp_path / "o", diameter=4)
    assert res.train == ["a"] and res.val == ["b"]
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(PartiNetFileError, match="none of its 2 micrograph"):
        split_star(star, other, tmp_path / "o2", diameter=4)
    assert not (tmp_path / "o2").exists()


@pytest.mark.skipif(not CRYOSEGNET.is_dir(), reason="../shared/realdata not available")
def test_split_real_star_from_cryosegnet(tmp_path):
    """CryoSegNet's sample.star (629 expert picks on an EMPIAR-10017 micrograph, no
    _rlnDiameter; its CSV says 108 px) with the 4096² JPEG: labels agree with starfile's reading
    of the STAR. One micrograph cannot be split 75/25 (scikit-learn refuses too): all train."""
    import starfile

    star = CRYOSEGNET / "sample.star"
    out = tmp_path / "ds"
    runner = CliRunner()
    res = runner.invoke(cli, ["split", "--star", str(star), "--images",
                              str(CRYOSEGNET / "images"), "--output", str(out)])
    assert res.exit_code == 1 and "_rlnDiameter" in res.output and "--diameter" in res.output
    res = runner.invoke(cli, ["split", "--star", str(star), "--images",
                              str(CRYOSEGNET / "images"), "--output", str(out),
                              "--diameter", "108"])
    assert res.exit_code == 1 and "none for training" in res.output
    res = runner.invoke(cli, ["split", "--star", str(star), "--images",
                              str(CRYOSEGNET / "images"), "--output", str(out),
                              "--diameter", "108", "--test-size", "0"])
    assert res.exit_code == 0, res.output
    label = out / "labels" / "train" / "Falcon_2012_06_12-14_33_35_0.txt"
    lines = label.read_text().splitlines()
    oracle = starfile.read(star)
    assert len(lines) == len(oracle) == 629
    first = lines[0].split()
    assert first == ["0", f"{oracle['rlnCoordinateX'][0] / 4096:.6f}",
                     f"{oracle['rlnCoordinateY'][0] / 4096:.6f}", f"{108 / 4096:.6f}",
                     f"{108 / 4096:.6f}"]
    back = yolo.read(label, image_size=(4096, 4096))
    assert np.abs(back["x"].to_numpy() - oracle["rlnCoordinateX"].to_numpy()).max() < 0.003
    assert (out / "images" / "train" / "Falcon_2012_06_12-14_33_35_0.jpg").is_file()
    assert (out / "val.txt").read_text() == ""
