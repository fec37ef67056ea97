"""PNG plots of training and evaluation curves (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from converters.images import to_uint8  # the one 8-bit conversion (pictures use it too)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_pr(curve: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Precision–recall curve (``curve``: DataFrame[threshold, precision, recall, f1])."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(curve["recall"], curve["precision"], lw=1.5)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title or "precision–recall")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_f1(curve: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """F1 (and precision, recall) against the score threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for col in ("f1", "precision", "recall"):
        ax.plot(curve["threshold"], curve[col], label=col, lw=1.5 if col == "f1" else 1)
    ax.set_xlabel("score threshold")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "F1 against threshold")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


#: Human names of the metrics Lightning's CSVLogger writes (``metrics.csv`` columns).
METRIC_NAMES = {
    "train/loss_epoch": "training loss (epoch mean)",
    "train/loss_step": "training loss (per batch)",
    "train/loss": "training loss",
    "val/loss": "validation loss",
    "train/hm": "training heatmap loss",
    "train/wh": "training size loss",
    "train/off": "training offset loss",
}


#: CenterNet's loss terms (EPicker's names) as words.
ABBREVIATIONS = {"hm": "heatmap", "wh": "size", "off": "offset", "reg": "offset"}


def human_name(column: str) -> str:
    """A metric column as people say it: ``train/hm_loss`` → ``training hm loss``."""
    if column in METRIC_NAMES:
        return METRIC_NAMES[column]
    split, _, rest = column.partition("/")
    words = {"train": "training", "val": "validation"}.get(split, split)
    rest = rest.replace("_epoch", " (epoch mean)").replace("_step", " (per batch)")
    rest = " ".join(ABBREVIATIONS.get(w, w) for w in rest.replace("_", " ").split(" "))
    return f"{words} {rest}".strip() if rest else column.replace("_", " ")


def plot_losses(metrics: pd.DataFrame, path: str | Path) -> Path | None:
    """Training/validation losses against epoch from a Lightning CSVLogger ``metrics.csv``:
    epoch means (per-batch values are left out when their epoch mean is there), labelled axes
    and human names."""
    cols = [c for c in metrics.columns if "loss" in c]
    cols = [c for c in cols if not (c.endswith("_step") and c[:-5] + "_epoch" in cols)]
    if not cols or "epoch" not in metrics.columns:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for c in cols:
        d = metrics[["epoch", c]].dropna().groupby("epoch")[c].mean()
        if len(d):
            ax.plot(d.index, d.values, marker=".", label=human_name(c))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (log scale)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("losses during training")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


#: Longest side of a picture of picks: a 4096² micrograph drawn at full size was a 34 MB PNG
#: that needed 2.7 GB of memory; 1024 px shows particles of 40 px and up.
MAX_SIDE = 1024


def shrink(image: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """(image area-averaged to at most ``max_side`` px on its longest side, factor applied)."""
    import cv2

    h, w = image.shape[:2]
    f = min(1.0, max_side / max(h, w, 1))
    if f >= 1.0:
        return image, 1.0
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(np.asarray(image, dtype=np.float32), size, interpolation=cv2.INTER_AREA), f


def banner(rgb: np.ndarray, text: str, color=(255, 255, 0)) -> None:
    """Write ``text`` on a dark band at the top of an RGB uint8 image (in place)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = max(0.5, w / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = th + base + 10
    rgb[:band] = (rgb[:band] * 0.35).astype(np.uint8)
    cv2.putText(rgb, text, (6, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                max(1, round(scale * 1.5)), cv2.LINE_AA)


def draw_circles(rgb: np.ndarray, xy, radius: float, color, factor: float = 1.0) -> None:
    """Circles at ``xy`` (px of the original micrograph) on an image shrunk by ``factor``;
    lines at least 2 px wide and circles at least 4 px across, so they stay visible."""
    import cv2

    r = max(4, round(radius * factor))
    lw = max(2, round(min(rgb.shape[:2]) / 400))
    for x, y in np.asarray(xy, dtype=float).reshape(-1, 2):
        cv2.circle(rgb, (round(x * factor), round(y * factor)), r, color, lw, cv2.LINE_AA)


def plot_picks(image, xy, path: str | Path, radius: float, scores=None,
               warning: str | None = None, max_side: int = MAX_SIDE) -> Path:
    """Micrograph (2D array, DESIGN frame) with picks drawn as circles of ``radius`` px, as a
    PNG at most ``max_side`` px wide or high. No picks: says so on the picture; ``warning``
    (e.g. a scale mismatch with the model's training data) is written on it too."""
    import cv2

    small, f = shrink(np.asarray(image, dtype=np.float32), max_side)
    rgb = np.repeat(to_uint8(small)[:, :, None], 3, axis=2)
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    draw_circles(rgb, xy, radius, (0, 255, 0), f)
    notes = [] if len(xy) else ["no picks on this micrograph"]
    if warning:
        notes.append(warning)
    if notes:
        banner(rgb, "; ".join(notes))
    path = Path(path)
    if not cv2.imwrite(str(path), rgb[:, :, ::-1]):
        raise OSError(f"{path}: could not write the picture of the picks")
    return path
