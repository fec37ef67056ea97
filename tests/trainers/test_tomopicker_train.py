"""The tomogram picker end to end on one small generated tomogram, through the CLI: training
overfits (F1 ≥ 0.9), resume continues the run, picking writes cet_pick's x z y text and
heatmap, and the registry copies read back at the same voxels."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")

from test_tomopicker_helpers import blob_tomogram, write_lists, write_mrc  # noqa: E402

BBOX = 12


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One training run (module-wide: the expensive part)."""
    from cryoglean.cli import main

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tomo")
    vol, xyz = blob_tomogram(shape=(24, 96, 96), n=12, snr=4, seed=2)
    # the file is stored un-rotated (IMOD's default: y is the section axis) → --order xzy
    path = write_mrc(root / "t1.mrc", np.ascontiguousarray(np.transpose(vol, (1, 0, 2))))
    from trainers.tomopicker.volume import file_to_loaded

    file_xyz = xyz[:, [0, 2, 1]]  # (x, y, z) of the stored file
    coords = file_to_loaded(file_xyz, "xzy")
    img, crd = write_lists(root, {"t1": path}, {"t1": coords})
    args = ["train", "tomo", "--train_img_txt", str(img), "--train_coord_txt", str(crd),
            "--bbox", str(BBOX), "--num_epochs", "18", "--lr", "1e-3", "--pn",
            "--val_interval", "18", "--cutoff_z", "0", "--exp_id", "e", "--output",
            str(root / "runs"), "--gpus", "-1", "--quiet", "--seed", "3"]
    assert main(args) == 0
    return {"root": root, "img": img, "coords": coords, "file_xyz": file_xyz, "args": args,
            "run": root / "runs" / "e"}


def test_training_overfits_one_tomogram(run):
    d = run["run"]
    # no validation list: validated on the training tomogram (as cet_pick), a summary that
    # is no pick threshold, so not val_metrics.json (pipelines would read it as one)
    assert not (d / "val_metrics.json").exists()
    val = json.loads((d / "train_metrics.json").read_text())["summary"]
    assert val["best_f1"] >= 0.9, val
    for name in ("opt.txt", "options.yaml", "model_last.pth", "model_last_contrastive.pth",
                 "loss.png", "weights/last.ckpt"):
        assert (d / name).is_file(), name
    assert list((d / "debug").glob("epoch018_t1.png"))


def test_pick_output_reads_back_at_the_same_voxels(run, capsys):
    from converters import registry
    from cryoglean.cli import main
    from trainers.labels import read_labels
    from trainers.tomopicker.pick import read_xzy
    from trainers.tomopicker.volume import loaded_to_file

    ckpt = run["run"] / "model_last_contrastive.pth"
    # the run's best-F1 threshold (its validation on the training tomogram), a hair lower: the
    # evaluation counts scores >= it, pick keeps scores > it. A fixed 0.2 made the recall below
    # depend on the machine (10 or 11 of 12 particles above 0.2 after the same training).
    best = json.loads((run["run"] / "train_metrics.json").read_text())["summary"]
    thr = f"{best['best_threshold'] - 1e-6:.9f}"
    formats = [n for n in registry.names(3) if "write" in registry.get(n).capabilities]
    seen = None
    for fmt in formats:
        out = run["root"] / f"picks_{fmt}"
        assert main(["pick", "tomo", "--test_img_txt", str(run["img"]), "--load_model",
                     str(ckpt), "--out_thresh", thr, "--cutoff_z", "0", "--output", str(out),
                     "--output_type", fmt, "--quiet"]) == 0
        loaded = read_xzy(out / "t1.txt")
        assert (out / "t1_hm.mrc").is_file()
        design = loaded_to_file(loaded, "xzy")
        back = read_labels(out / fmt, fmt)
        got = back[["x", "y", "z"]].to_numpy(float)
        assert len(got) == len(design) > 0, fmt
        order = np.lexsort(got.T)
        assert np.allclose(got[order], design[np.lexsort(design.T)], atol=1e-3), fmt
        seen = design
    # the picks find the particles in the file's frame, as well as the validation found them
    # in the loaded frame (F1 >= 0.9 there, test above), and the heatmap has the file's layout
    import mrcfile

    d = np.linalg.norm(seen[:, None] - run["file_xyz"][None], axis=2)
    tp = int((d.min(axis=0) <= BBOX / 2).sum())  # particles with a pick within the radius
    f1 = 2 * tp / (len(seen) + len(run["file_xyz"]))
    assert f1 >= 0.9, (f1, tp, len(seen), best)
    with mrcfile.open(run["root"] / f"picks_{formats[-1]}" / "t1_hm.mrc") as m:
        assert m.data.shape == (48, 24, 48)  # file (ny, nz, nx) with x, y halved


def test_resume_continues_the_run(run):
    from cryoglean.cli import main
    from trainers.core.checkpoint import load_checkpoint

    pth = run["run"] / "model_last_contrastive.pth"
    first = load_checkpoint(pth)
    args = [a if a != "18" else "19" for a in run["args"]]
    assert main([*args, "--resume"]) == 0
    again = load_checkpoint(pth)
    assert (first["epoch"], again["epoch"]) == (18, 19)
    changed = [k for k, v in again["state_dict"].items()
               if v.dtype.is_floating_point and not torch.equal(v, first["state_dict"][k])]
    assert changed  # trained on from the restored state
    import pandas as pd

    steps = pd.read_csv(run["run"] / "metrics.csv")["step"]
    assert steps.max() > steps[steps.index[0]]  # metrics of both parts kept
