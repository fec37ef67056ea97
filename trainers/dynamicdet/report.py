"""PartiNet's run files beside the core's: opt/hyp/cfg yaml, results.txt/png, the P/R/F1
curves, training views and validation images with labels and predictions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas only where the run files are written: detect does not load it
    import pandas as pd

HYP_KEYS = ("lr", "weight_decay", "mosaic", "scale", "iou_thres", "img_size", "train_size",
            "batch", "epochs", "repeat")


def _yaml(path: Path, doc: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump(json.loads(json.dumps(doc, default=str)), sort_keys=False))


def write_run_files(run_dir: Path, task, options: dict, views, val) -> None:
    run_dir = Path(run_dir)
    _yaml(run_dir / "opt.yaml", options)
    hyp = {k: options.get(k) for k in HYP_KEYS}
    hyp.update({"box_gain": "0.05*3/nl", "obj_gain": "0.7*(img/640)^2*3/nl", "fliplr": 0.5,
                "flipud": 0.5, "rot90": 1.0, "assigner": "simota"})
    _yaml(run_dir / "hyp.yaml", hyp)
    _yaml(run_dir / "cfg.yaml", {"model_cfg": options["model_cfg"], "nc": 1,
                                 "names": ["particle"]})
    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        import pandas as pd

        df = pd.read_csv(metrics)
        if "epoch" in df:
            rows = df.groupby("epoch").last().reset_index()
            rows.to_string(run_dir / "results.txt", index=False, na_rep="-")
            _plot_results(rows, run_dir / "results.png")
    if task.last_eval is not None:
        _curves(task.last_eval.curve, run_dir)
    rng = np.random.default_rng(0)
    for b in range(3):
        imgs = [views(int(rng.integers(len(views.samples))), rng) for _ in range(4)]
        _mosaic_jpg([i for i, _ in imgs], [bx for _, bx in imgs], run_dir / f"train_batch{b}.jpg")
    if val:
        _val_images(task, val[0], run_dir)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_results(rows: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    cols = [c for c in rows.columns if c.startswith(("train/", "val/")) and
            rows[c].notna().any() and not c.endswith("_step")]
    if not cols:
        return
    n = len(cols)
    fig, axes = plt.subplots(2, (n + 1) // 2, figsize=(3 * ((n + 1) // 2), 5), squeeze=False)
    for ax, c in zip(axes.flat, cols):
        r = rows[["epoch", c]].dropna()
        ax.plot(r["epoch"], r[c], marker=".")
        ax.set_title(c, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _curves(curve: pd.DataFrame, run_dir: Path) -> None:
    plt = _plt()
    specs = {"PR_curve.png": ("recall", "precision"), "F1_curve.png": ("threshold", "f1"),
             "P_curve.png": ("threshold", "precision"), "R_curve.png": ("threshold", "recall")}
    for name, (x, y) in specs.items():
        fig, ax = plt.subplots(figsize=(4, 4))
        if len(curve):
            ax.plot(curve[x], curve[y], lw=1.5)
        ax.set_xlabel("confidence" if x == "threshold" else x)
        ax.set_ylabel(y)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        fig.tight_layout()
        fig.savefig(run_dir / name, dpi=80)
        plt.close(fig)


def _to8(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [0.5, 99.5])
    return (np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def draw_boxes(img8: np.ndarray, xyxy: np.ndarray, colour=(0, 255, 0),
               thickness: int = 2) -> np.ndarray:
    """BGR copy of a grey image with boxes (x1, y1, x2, y2 px) drawn."""
    import cv2

    out = cv2.cvtColor(img8, cv2.COLOR_GRAY2BGR)
    for x1, y1, x2, y2 in np.asarray(xyxy).reshape(-1, 4):
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), colour, thickness)
    return out


def _cxcywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2])


def _mosaic_jpg(imgs, boxes, path: Path) -> None:
    import cv2

    tiles = [draw_boxes(_to8(i), _cxcywh(b), thickness=1) for i, b in zip(imgs, boxes)]
    row1 = np.concatenate(tiles[:2], 1)
    row2 = np.concatenate(tiles[2:4], 1)
    cv2.imwrite(str(path), np.concatenate([row1, row2], 0))


def _val_images(task, s, run_dir: Path) -> None:
    import cv2
    import torch

    from trainers.core.datamodule import pad_to_multiple
    from trainers.dynamicdet.data import STRIDE, to_input

    img = s.prep.image
    d = float(task.hparams["diameter"])
    cv2.imwrite(str(run_dir / "test_batch0_labels.jpg"),
                draw_boxes(_to8(img), _cxcywh(np.column_stack([s.xy, np.full((len(s.xy), 2), d)]))))
    net = task.net.to("cpu").eval()
    x = torch.from_numpy(to_input(pad_to_multiple(img, STRIDE), int(net.cfg["ch"])))[None]
    from trainers.dynamicdet.boxes import postprocess

    pred, _ = net.infer(x, float(task.hparams.get("dy_thres", 0.5)))
    det = postprocess(pred, 0.1, float(task.hparams.get("iou_thres", 0.2)))[0].numpy()
    cv2.imwrite(str(run_dir / "test_batch0_pred.jpg"), draw_boxes(_to8(img), det[:, :4]))
