"""``cryoglean train centernet`` / ``pick centernet`` / ``evaluate`` through the CLI, on tiny
generated micrographs (tiny network, 128 px input, one epoch)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")

from test_trainers_helpers import one_thread, use_registry, write_dataset  # noqa: E402, F401

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--width", "4", "--head_conv", "8", "--input_width", "128", "--crop", "64",
        "--particle_size", "16", "--batch_size", "2", "--num_epoch", "1", "--edge", "2",
        "--quiet", "--lr", "1e-3"]


def _train(tmp_path, img, lab, mode, *extra):
    from trainers.cli import train_group

    args = ["centernet", "--data", str(img), "--label", str(lab), "--label_type", "thi",
            "--mode", mode, "--exp_id", f"run_{mode}", "--output", str(tmp_path / "runs"),
            *TINY, *extra]
    r = CliRunner().invoke(train_group, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return tmp_path / "runs" / f"run_{mode}"


@pytest.mark.parametrize("mode", ["particle", "vesicle", "fiber"])
def test_train_and_pick_each_mode(tmp_path, monkeypatch, mode):
    use_registry(monkeypatch)
    img, lab, truth = write_dataset(tmp_path / "d", n_mics=3, n=128, count=4, radius=6,
                                    mode=mode)
    run = _train(tmp_path, img, lab, mode)
    for f in ("options.yaml", "hparams.yaml", "metrics.csv", "split.json",
              "weights/last.ckpt", "weights/best.ckpt", "loss.png"):
        assert (run / f).is_file(), f
    import yaml

    opts = yaml.safe_load((run / "options.yaml").read_text())
    assert opts["mode"] == mode and opts["input_width"] == 128
    metrics = pd.read_csv(run / "metrics.csv")
    assert "train/loss_epoch" in metrics.columns
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) >= 1

    from trainers.cli import pick_group
    from trainers.labels import read_labels

    out = tmp_path / "picks"
    r = CliRunner().invoke(pick_group, [
        "centernet", "--data", str(img), "--load_model", str(run / "weights/last.ckpt"),
        "--output", str(out), "--output_type", "thi", "--vis_thresh", "0.0", "--edge", "2",
        "--K", "50", "--visual", "--shard", "0/1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("*.thi")) == [f"mic_{i:04d}.thi" for i in range(3)]
    assert len(list(out.glob("*.png"))) == 3
    picks = read_labels(out, "thi")
    if mode == "vesicle" and len(picks):
        assert "radius" in picks.columns
    if mode == "fiber" and len(picks):
        assert "filament" in picks.columns
    if len(picks):  # picks are in px of the 128 px micrographs
        assert picks["x"].between(0, 128).all() and picks["y"].between(0, 128).all()


def test_pick_shard_and_scale_to_original_pixels(tmp_path, monkeypatch):
    """Micrographs 256 px, network input 128 px: picks come back in 256 px coordinates."""
    use_registry(monkeypatch)
    img, lab, truth = write_dataset(tmp_path / "d", n_mics=3, n=256, count=4, radius=10)
    run = _train(tmp_path, img, lab, "particle")
    from trainers.centernet.options import PickOptions
    from trainers.centernet.pick import load_picker, pick_centernet, pick_micrograph
    from trainers.core.pick import parse_shard

    assert parse_shard("1/3", 3) == [1]
    assert parse_shard(None, 2) == [0, 1]
    assert sum(len(parse_shard(f"{k}/4", 10)) for k in range(4)) == 10
    with pytest.raises(ValueError, match="K/N"):
        parse_shard("1-3", 3)
    s = pick_centernet(PickOptions(data=str(img), load_model=str(run / "weights/last.ckpt"),
                                   output=str(tmp_path / "p"), output_type="thi",
                                   shard="2/3", vis_thresh=0.0, edge=0, K=30, quiet=True))
    assert s["micrographs"] == 1
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["mic_0002.thi"]
    net, h = load_picker(run / "weights/last.ckpt")
    df = pick_micrograph(net, h, img / "mic_0000.mrc",
                         PickOptions(vis_thresh=0.0, edge=0, K=500))
    assert len(df) > 0
    assert df["x"].max() > 128 or df["y"].max() > 128  # scaled back from the 128 px input
    assert (df["diameter"] == 32).all()  # 16 px at the input = 32 px of the micrograph


def test_help_and_errors(tmp_path, monkeypatch):
    from trainers.cli import pick_group, train_group

    r = CliRunner().invoke(train_group, ["centernet", "--help"])
    assert r.exit_code == 0
    for opt in ("--sparse_anno", "--pu_prior", "--continual", "--load_exemplar",
                "--sampling_size", "--particle_size", "--train_pct", "--resume", "--gpus"):
        assert opt in r.output
    r = CliRunner().invoke(pick_group, ["centernet", "--help"])
    assert "--shard" in r.output and "--vis_thresh" in r.output
    r = CliRunner().invoke(train_group, ["centernet", "--bach_size", "3"])
    assert r.exit_code != 0 and "--batch_size" in r.output  # close-match suggestion
    from trainers.centernet.options import TrainOptions

    with pytest.raises(ValueError, match="did you mean num_epoch"):
        TrainOptions.from_dict({"num_epochs": 3})
    use_registry(monkeypatch)
    img, lab, _ = write_dataset(tmp_path / "d", n_mics=1, n=64, count=1, radius=4)
    r = CliRunner().invoke(train_group, ["centernet", "--data", str(img), "--label", str(lab),
                                         "--label_type", "thi", "--mode", "particle",
                                         "--exp_id", "x", "--output", str(tmp_path),
                                         "--continual"])
    # a domain error, left to cryoglean.cli.main to print as one line
    assert r.exit_code != 0 and isinstance(r.exception, ValueError)
    assert "--load_model" in str(r.exception)


def test_parse_gpus():
    from trainers.core.devices import parse_gpus

    assert parse_gpus("-1") == {"accelerator": "cpu", "devices": 1}
    import torch

    if not torch.cuda.is_available():
        assert parse_gpus("0,1") == {"accelerator": "cpu", "devices": 1}
        assert parse_gpus(None)["accelerator"] == "cpu"
    else:
        assert parse_gpus("0,1") == {"accelerator": "gpu", "devices": [0, 1], "strategy": "ddp"}
    with pytest.raises(ValueError, match="GPU ids"):
        parse_gpus("zero")


def test_evaluate_cli(tmp_path, monkeypatch):
    use_registry(monkeypatch)
    from trainers.evaluate_cli import evaluate_command
    from trainers.labels import write_labels

    truth = pd.DataFrame({"micrograph": ["m1"] * 3 + ["m2"],
                          "x": [10.0, 50.0, 90.0, 20.0], "y": [10.0, 50.0, 90.0, 20.0]})
    picks = pd.DataFrame({"micrograph": ["m1", "m1", "m1"], "x": [11.0, 52.0, 200.0],
                          "y": [10.0, 50.0, 200.0], "score": [0.9, 0.8, 0.7]})
    write_labels(truth, tmp_path / "truth", "thi", micrographs=["m1", "m2", "m3"])
    write_labels(picks, tmp_path / "picks", "thi", micrographs=["m1", "m2"])
    out = tmp_path / "eval"
    r = CliRunner().invoke(evaluate_command, [
        "--picks", str(tmp_path / "picks"), "--truth", str(tmp_path / "truth"),
        "--radius-frac", "0.5", "--diameter", "10", "--out", str(out), "--json"],
        catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    # 3 micrographs from the truth files (m3 empty); TP 2 of 3 picks, 4 targets
    s = doc["summary"]
    assert (s["micrographs"], s["tp"], s["n_picks"], s["n_truth"]) == (3, 2, 3, 4)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(0.5)
    assert s["rmse"] == pytest.approx(np.sqrt((1 + 4) / 2))
    for f in ("metrics.json", "per_micrograph.csv", "pr_curve.csv", "pr.png", "f1.png"):
        assert (out / f).is_file()
    from cryoglean.cli import cli  # library errors become one line in cryoglean.cli

    r = CliRunner().invoke(cli, ["evaluate", "--picks", str(tmp_path / "picks"),
                                 "--truth", str(tmp_path / "truth")])
    assert r.exit_code != 0 and "--radius" in r.output


def test_evaluate_mixed_formats(tmp_path, monkeypatch):
    """Truth as one Topaz table, picks as per-micrograph THI files; keys matched by name."""
    use_registry(monkeypatch)
    from trainers.evaluate_cli import run_evaluation
    from trainers.labels import write_labels

    truth = pd.DataFrame({"micrograph": ["m1", "m1", "m2"], "x": [10.0, 40.0, 30.0],
                          "y": [10.0, 40.0, 30.0]})
    picks = pd.DataFrame({"micrograph": ["m1", "m2", "m2"], "x": [12.0, 30.0, 90.0],
                          "y": [10.0, 31.0, 90.0], "score": [0.9, 0.8, 0.1]})
    write_labels(truth, tmp_path / "truth.txt", "topaz")
    write_labels(picks, tmp_path / "picks", "thi")
    res = run_evaluation(tmp_path / "picks", tmp_path / "truth.txt", "thi", "topaz", radius=5)
    s = res.summary
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["auprc"] == pytest.approx((1 * 1 + 1 * 1) / 3)  # TP, TP, then FP: 2/3


def test_cli_modules_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, trainers.cli, trainers.evaluate_cli; "
            "bad = [m for m in ('torch', 'pytorch_lightning', 'matplotlib', 'cv2') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
