"""PartiNet's stages end to end on tiny generated PNG micrographs: ``train dynamicdet step1``
→ ``step2`` → ``detect`` through the CLI (PartiNet's flags and files), resume, overfitting."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")
cv2 = pytest.importorskip("cv2")

N, D = 128, 20  # micrograph side, particle diameter (px)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_partinet_set(root: Path, n_train=4, n_val=2, count=5, seed=0, shape=(N, N),
                       min_sep=1.5) -> tuple[Path, dict]:
    """PartiNet's split layout: images/{train,val}/*.png, labels/{train,val}/*.txt, lists and
    cryo_training.yaml; ``shape`` (ny, nx) px, bright discs of diameter D more than
    ``min_sep``·D apart (up to ``count`` per image: fewer where they do not fit). Returns (yaml,
    truth {stem: (n, 2) px})."""
    rng = np.random.default_rng(seed)
    truth = {}
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        paths = []
        for i in range(n):
            img = rng.normal(128, 20, (ny, nx))
            pts = []
            for _ in range(10000):
                if len(pts) == count:
                    break
                p = rng.uniform(D, [nx - D, ny - D])  # (x, y)
                if all(np.hypot(*(p - q)) > min_sep * D for q in pts):
                    pts.append(p)
            for x, y in pts:
                img[(xx - x) ** 2 + (yy - y) ** 2 <= (D / 2) ** 2] += 60
            f = root / "images" / split / f"{split}_{i}.png"
            cv2.imwrite(str(f), img.clip(0, 255).astype(np.uint8))
            (root / "labels" / split / f"{split}_{i}.txt").write_text("".join(
                f"0 {x / nx:.6f} {y / ny:.6f} {D / nx:.6f} {D / ny:.6f}\n" for x, y in pts))
            paths.append(str(f))
            truth[f.stem] = np.array(pts)
        (root / f"{split}.txt").write_text("\n".join(paths) + "\n")
    y = root / "cryo_training.yaml"
    y.write_text(f"train: {root / 'train.txt'}\nval: {root / 'val.txt'}\n\n# number of "
                 "classes\nnc: 1\n\n# class names\nnames: [ 'particle' ]\n")
    return y, truth


def cli(args):
    from cryoglean.cli import main

    assert main(args) == 0


def test_step1_step2_detect_with_partinet_flags_and_files(tmp_path):
    from trainers.core.checkpoint import load_checkpoint

    y, truth = write_partinet_set(tmp_path / "ds")
    proj = tmp_path / "runs"
    common = ["--data", str(y), "--project", str(proj), "--img-size", "128", "--device", "cpu",
              "--workers", "0", "--batch", "2", "--quiet"]
    cli(["train", "dynamicdet", "step1", *common, "--cfg", "tiny", "--epochs", "1"])
    run = proj / "exp"
    for name in ("weights/best.pt", "weights/last.pt", "results.txt", "results.png",
                 "PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "opt.yaml",
                 "hyp.yaml", "cfg.yaml", "train_batch0.jpg", "test_batch0_labels.jpg",
                 "test_batch0_pred.jpg"):
        assert (run / name).is_file(), name
    first = load_checkpoint(run / "weights" / "last.pt")
    # resume: the same run, the epoch counter continues
    cli(["train", "dynamicdet", "step1", *common, "--resume", str(run / "weights/last.pt"),
         "--epochs", "2"])
    assert not (proj / "exp2").exists()
    again = load_checkpoint(run / "weights" / "last.pt")
    assert again["global_step"] > first["global_step"]
    cli(["train", "dynamicdet", "step2", *common, "--weight", str(run / "weights/last.pt"),
         "--epochs", "1"])
    ck = load_checkpoint(proj / "exp2" / "weights" / "best.pt")
    pct = ck["router_calibration"]["percentiles"]
    assert len(pct) == 101 and pct == sorted(pct)
    sd2 = ck["state_dict"]
    assert all(torch.equal(sd2[k], again["state_dict"][k]) for k in sd2 if "router" not in k)

    det = tmp_path / "det"
    src = tmp_path / "ds" / "images" / "val"
    args = ["detect", "--weight", str(proj / "exp2/weights/best.pt"), "--source", str(src),
            "--project", str(det), "--device", "cpu", "--conf-thres", "0.01", "--batch", "2",
            "--easy-fraction", "0.5", "--quiet"]
    cli(args)
    sharded = [a if a != str(det) else str(tmp_path / "det-array") for a in args[:-3]]
    cli([*sharded, "--dy-thres", "0.5", "--nosave", "--shard", "1/2"])
    out = det / "exp"
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["val_0.txt", "val_1.txt"]
    assert sorted(p.name for p in out.glob("*.png")) == ["val_0.png", "val_1.png"]
    # an array task writes its shard into PROJECT/exp itself (the tasks share one folder)
    array = tmp_path / "det-array" / "exp"
    assert [p.name for p in (array / "labels").iterdir()] == ["val_1.txt"]
    assert not list(array.glob("*.png"))
    for f in (out / "labels").iterdir():
        for line in f.read_text().splitlines():
            vals = [float(v) for v in line.split()]
            assert len(vals) == 6 and line.split()[0] == "0"
            assert line == ("%g " * 6).rstrip() % tuple(vals)  # %g as PartiNet
            assert all(0 <= v <= 1 for v in vals[1:5]) and vals[5] > 0.01
    log = (det / "partinet_detect.log").read_text().splitlines()
    assert re.fullmatch(r".*val_0\.png: \d+ particles, (easy|hard) .*Done\. \(.*ms\)", log[0])
    assert re.fullmatch(r"2 micrographs processed in [\d.]+ s", log[2])
    assert re.fullmatch(r"Average processing rate: [\d.]+ micrographs/s", log[3])
    log = (tmp_path / "det-array" / "partinet_detect.log").read_text().splitlines()
    assert re.fullmatch(r"1 micrographs processed in [\d.]+ s", log[1])


def test_detect_reads_mrc_min_max_as_partinet(tmp_path):
    import mrcfile

    from trainers.dynamicdet.data import read_gray8

    img = np.arange(12, dtype=np.float32).reshape(3, 4) * 2 - 5
    with mrcfile.new(tmp_path / "m.mrc") as m:
        m.set_data(img)
    g = read_gray8(tmp_path / "m.mrc")
    assert g.dtype == np.uint8 and g[0, 0] == 0 and g[-1, -1] == 255
    np.testing.assert_array_equal(g, ((img - img.min()) / (img.max() - img.min()) * 255)
                                  .astype(np.uint8))


def test_pick_dynamicdet_writes_registry_labels(tmp_path):
    from trainers import pickers
    from trainers.dynamicdet.options import Step1Options
    from trainers.dynamicdet.train import train_step1

    y, _ = write_partinet_set(tmp_path / "ds", n_train=2, n_val=1)
    s = train_step1(Step1Options(data=str(y), project=str(tmp_path / "r"), cfg="tiny",
                                 epochs=1, batch=2, img_size=128, workers=0, device="cpu",
                                 quiet=True, fast_dev_run=True))
    fmt = pickers.get("centernet").default_format()
    cli(["pick", "dynamicdet", "--data", str(tmp_path / "ds/images/val"), "--load_model",
         s["last"], "--output", str(tmp_path / "picks"), "--output_type", fmt,
         "--conf_thres", "0.0"])
    assert [p.stem for p in (tmp_path / "picks").iterdir()] == ["val_0"]


def test_overfits_to_f1_above_0_9(tmp_path):
    from trainers.dynamicdet.detect import load_model, run_batch
    from trainers.dynamicdet.options import Step1Options
    from trainers.dynamicdet.train import train_step1
    from trainers.evaluate import evaluate_picks

    y, truth = write_partinet_set(tmp_path / "ds", n_train=4, n_val=2, seed=3)
    s = train_step1(Step1Options(data=str(y), project=str(tmp_path / "r"), cfg="tiny",
                                 epochs=12, batch=4, img_size=128, repeat=4, lr=3e-3,
                                 mosaic=0.0, workers=0, device="cpu", quiet=True, seed=1))
    assert s["val"]["best_f1"] >= 0.9, s["val"]
    net, _, _ = load_model(s["best"])
    files = sorted((tmp_path / "ds/images/val").glob("*.png"))
    rows = []
    for f in files:
        (_, _, d, _), = run_batch(net, [f], 128, float("inf"), 0.1, 0.2, "cpu")
        rows.append(pd.DataFrame({"micrograph": f.stem, "x": (d[:, 0] + d[:, 2]) / 2,
                                  "y": (d[:, 1] + d[:, 3]) / 2, "score": d[:, 4]}))
    gt = pd.concat([pd.DataFrame({"micrograph": f.stem, "x": truth[f.stem][:, 0],
                                  "y": truth[f.stem][:, 1]}) for f in files])
    res = evaluate_picks(pd.concat(rows), gt, D / 2, micrographs=[f.stem for f in files])
    assert res.summary["best_f1"] >= 0.9, res.summary



def test_a_failed_run_leaves_no_run_folder_behind_for_the_next(tmp_path, monkeypatch):
    """The run folder handed to DDP child processes through the environment must not leak:
    a step that fails (step2 without --weight) left it set, and every later run in the same
    process, or a child of it (the demo under pytest-xdist), trained into that stale folder."""
    from trainers.dynamicdet.options import Step1Options, Step2Options
    from trainers.dynamicdet.train import RUN_ENV, TrainingError, train_step1, train_step2

    monkeypatch.delenv(RUN_ENV, raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    y, _ = write_partinet_set(tmp_path / "data", n_train=2, n_val=1)
    with pytest.raises(TrainingError, match="--weight"):
        train_step2(Step2Options(data=str(y), project=str(tmp_path / "a"), device="cpu"))
    assert RUN_ENV not in __import__("os").environ
    # a stale value (not a DDP child: no LOCAL_RANK) does not redirect a new run
    monkeypatch.setenv(RUN_ENV, str(tmp_path / "stale"))
    summary = train_step1(Step1Options(data=str(y), project=str(tmp_path / "b"), cfg="tiny",
                                       img_size=64, epochs=1, device="cpu", workers=0,
                                       batch=2, quiet=True, fast_dev_run=True))
    assert Path(summary["run_dir"]) == tmp_path / "b" / "exp"
    assert not (tmp_path / "stale").exists()
