"""A DynamicDet run's val_metrics.json holds the best-F1 confidence of its own validation
picks, that number is what ``detect --conf-thres`` filters on, and ``cryoglean slurm value
threshold`` hands it to a pipeline.

The picks are made again here through detect's own path (``run_batch``) from the saved weights,
and the best threshold is computed from them and the labels with the rule of best_f1_rule.py,
not with ``trainers.evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")
cv2 = pytest.importorskip("cv2")

from best_f1_rule import best_threshold, far_apart  # noqa: E402

# _one_thread: the training module's autouse fixture (one torch thread), active here too
from test_dynamicdet_train import _one_thread, write_partinet_set  # noqa: E402, F401

NX, NY, D = 128, 100, 20  # not square: the network input is padded (rows to 128)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from trainers.dynamicdet.options import Step1Options, Step2Options
    from trainers.dynamicdet.train import train_step1, train_step2

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dd")
    # discs at least 2·D apart (the best-F1 rule's premise), on a non-square micrograph (the
    # network input is padded)
    y, truth = write_partinet_set(root / "ds", n_train=2, n_val=2, seed=1, shape=(NY, NX),
                                  min_sep=2)
    truth = {stem: t for stem, t in truth.items() if stem.startswith("val_")}
    common = dict(data=str(y), project=str(root / "runs"), epochs=1, batch=2, img_size=128,
                  workers=0, device="cpu", quiet=True)
    s1 = train_step1(Step1Options(cfg="tiny", **common))
    s2 = train_step2(Step2Options(weight=s1["last"], **common))
    return {"truth": truth, "images": root / "ds" / "images" / "val",
            "step1": Path(s1["run_dir"]), "step2": Path(s2["run_dir"])}


@pytest.mark.parametrize("stage", ["step1", "step2"])
def test_val_metrics_threshold_is_the_best_f1_of_detects_own_picks(runs, stage, capsys):
    from cryoglean.cli import main
    from trainers.dynamicdet.detect import load_model, run_batch
    from trainers.dynamicdet.task import VAL_CONF

    run = runs[stage]
    val = json.loads((run / "val_metrics.json").read_text())["summary"]
    net, h, _ = load_model(run / "weights" / "last.pt")
    # the route validation takes: head 2 in step 1 (no router score reaches inf), the router
    # at the run's dy_thres in step 2 (detect's default --dy-thres 0.5)
    route = float("inf") if stage == "step1" else float(h["dy_thres"])
    files = sorted(runs["images"].iterdir())
    low = run_batch(net, files, 128, route, VAL_CONF, float(h["iou_thres"]), "cpu")
    picks = {p.stem: ((d[:, 0:2] + d[:, 2:4]) / 2, d[:, 4]) for p, _, d, _ in low}
    assert sum(len(s) for _, s in picks.values()) > 0 and far_apart(runs["truth"], D / 2)
    f1, thr = best_threshold(picks, runs["truth"], radius=D / 2)
    assert val["n_truth"] == sum(len(t) for t in runs["truth"].values())
    assert val["best_threshold"] == pytest.approx(thr, rel=1e-5, abs=1e-7)
    assert val["best_f1"] == pytest.approx(f1, abs=1e-9)
    # detect at that threshold keeps exactly the validation picks above it (NMS after the
    # confidence cut keeps what NMS of every candidate kept above it)
    cut = run_batch(net, files, 128, route, val["best_threshold"], float(h["iou_thres"]), "cpu")
    for (_, _, d, _), (_, _, dl, _) in zip(cut, low):
        above = dl[dl[:, 4] > val["best_threshold"]]
        np.testing.assert_allclose(d, above, rtol=1e-6, atol=1e-5)
    # and the pipeline's job reads it
    assert main(["slurm", "value", "threshold", str(run)]) == 0
    assert float(capsys.readouterr().out.strip()) == val["best_threshold"]
