"""PNG plots of training and evaluation curves (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


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


def plot_losses(metrics: pd.DataFrame, path: str | Path) -> Path | None:
    """Training/validation losses against epoch from a Lightning CSVLogger ``metrics.csv``."""
    cols = [c for c in metrics.columns if "loss" in c]
    if not cols or "epoch" not in metrics.columns:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for c in cols:
        d = metrics[["epoch", c]].dropna().groupby("epoch")[c].mean()
        if len(d):
            ax.plot(d.index, d.values, marker=".", label=c)
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_picks(image, xy, path: str | Path, radius: float, scores=None) -> Path:
    """Micrograph (2D array, DESIGN frame) with picks drawn as circles of ``radius`` px."""
    plt = _pyplot()
    from matplotlib.patches import Circle

    h, w = image.shape
    fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(image, cmap="gray", interpolation="nearest")  # origin upper: row 0 at the top
    for x, y in xy:
        ax.add_patch(Circle((x, y), radius, fill=False, color="lime", lw=0.8))
    ax.set_axis_off()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
