"""A tomogram-picker run with validation tomograms writes val_metrics.json whose best-F1
threshold is that of its own validation picks, the heatmap score ``pick tomo --out_thresh``
filters on; ``cryoglean slurm value threshold`` hands it to a pipeline. The picks are made
again through ``pick tomo``'s own path (``pick_one``) from the saved weights, and the best
threshold computed from them with best_f1_rule.py, not with ``trainers.evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")

from best_f1_rule import best_threshold, far_apart  # noqa: E402
from test_tomopicker_helpers import blob_tomogram, write_lists, write_mrc  # noqa: E402

BBOX = 10  # matching radius 5 voxels; the blobs lie more than 10 apart
OFF_GRID = np.array([0.3137, 0.1729, 0.0613])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cryoglean.cli import main

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tomo-val")
    lists = {}
    for tag, seed in (("train", 2), ("val", 5)):
        vol, xyz = blob_tomogram(shape=(20, 80, 96), n=8, snr=4, seed=seed)
        # --order zxy: the volume as stored, so file and loaded voxels are the same
        path = write_mrc(root / f"{tag}.mrc", vol)
        img, crd = write_lists(root, {tag: path}, {tag: xyz}, tag=tag)
        if tag == "val":
            # labels off the voxel grid: integer picks are then never equally far from a
            # target, where which of two picks the matching takes would be arbitrary
            xyz = xyz + OFF_GRID
            crd.write_text("image_name\tx_coord\ty_coord\tz_coord\n" + "".join(
                f"{tag}\t{x:.4f}\t{y:.4f}\t{z:.4f}\n" for x, y, z in xyz))
        lists[tag] = (img, crd, xyz, path)
    out = root / "runs"
    assert main(["train", "tomo", "--train_img_txt", str(lists["train"][0]),
                 "--train_coord_txt", str(lists["train"][1]), "--val_img_txt",
                 str(lists["val"][0]), "--val_coord_txt", str(lists["val"][1]),
                 "--order", "zxy", "--bbox", str(BBOX), "--num_epochs", "2",
                 "--limit_train_batches", "8", "--lr", "3e-3", "--pn", "--cutoff_z", "0",
                 "--exp_id", "e", "--output", str(out), "--gpus", "-1", "--quiet",
                 "--seed", "3"]) == 0
    return {"dir": out / "e", "val": lists["val"], "root": root}


def test_val_metrics_threshold_is_the_best_f1_of_picks_own_picks(run, capsys):
    from cryoglean.cli import main
    from trainers.tomopicker.options import PickOptions
    from trainers.tomopicker.pick import load_model, pick_one

    d = run["dir"]
    assert not (d / "train_metrics.json").exists()
    val = json.loads((d / "val_metrics.json").read_text())["summary"]
    img_txt, _, truth, path = run["val"]
    # the weights the last validation scored: the task saves them then (cet_pick's
    # model_last.pth)
    ckpt = d / "model_last.pth"
    net, h = load_model(ckpt)

    def picks_at(thresh):
        opts = PickOptions(test_img_txt=str(img_txt), load_model=str(ckpt), out_thresh=thresh,
                           K=int(h["K"]), nms=int(h["nms"]), cutoff_z=int(h["cutoff_z"]))
        out = run["root"] / f"picks-{thresh}"
        out.mkdir()
        cols, _ = pick_one(net, h, "val", path, opts, out)
        return (np.stack([cols[k] for k in "xyz"], axis=1).astype(np.float64),
                np.asarray(cols["score"], np.float64))

    xyz, score = picks_at(0.0)  # validation decodes with no score threshold
    assert len(score) > 0 and far_apart({"val": truth}, BBOX / 2)
    f1, thr = best_threshold({"val": (xyz, score)}, {"val": truth}, radius=BBOX / 2)
    assert val["dims"] == 3 and val["n_truth"] == len(truth)
    assert val["best_threshold"] == pytest.approx(thr, rel=1e-5, abs=1e-7)
    assert val["best_f1"] == pytest.approx(f1, abs=1e-9)
    assert f1 > 0  # some particle found: the threshold is not merely the top score
    # pick --out_thresh T keeps the validation's picks scoring above T
    cut_xyz, cut_score = picks_at(val["best_threshold"])
    keep = score > val["best_threshold"]
    np.testing.assert_allclose(cut_score, score[keep], rtol=1e-6)
    np.testing.assert_array_equal(cut_xyz, xyz[keep])
    assert main(["slurm", "value", "threshold", str(d)]) == 0
    assert float(capsys.readouterr().out.strip()) == val["best_threshold"]
