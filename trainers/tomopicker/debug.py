"""One picture per validation tomogram (cet_pick's ``debug/`` folder): a slice of the input,
the ground-truth heatmap, the predicted heatmap and the picks near that slice circled (truth
in blue), at the slice holding most labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainers.tomopicker.targets import heatmap_coords, make_heatmap


def debug_picture(sample, heat: np.ndarray, picks: dict, bbox: int, dest: Path) -> Path:
    from trainers.plots import _pyplot

    plt = _pyplot()
    from matplotlib.patches import Circle

    vol = sample.prep.image
    xyz = np.asarray(sample.xy, dtype=np.float64).reshape(-1, 3)
    z = int(np.bincount(np.floor(xyz[:, 2]).astype(int).clip(0, vol.shape[0] - 1)).argmax()) \
        if len(xyz) else vol.shape[0] // 2
    gt = make_heatmap(vol.shape, heatmap_coords(xyz, compress=False), bbox, unlabelled=False)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    axes[0].imshow(vol[z], cmap="gray")
    axes[0].set_title(f"slice {z}")
    axes[1].imshow(gt[z], vmin=0, vmax=1)
    axes[1].set_title("ground-truth heatmap")
    axes[2].imshow(heat[min(z, heat.shape[0] - 1)], vmin=0, vmax=1)
    axes[2].set_title("predicted heatmap")
    axes[3].imshow(vol[z], cmap="gray")
    axes[3].set_title("picks (green), labels (blue)")
    for x, y, zz in xyz:
        if abs(zz - z) <= 1:
            axes[3].add_patch(Circle((x, y), bbox / 2, fill=False, color="deepskyblue", lw=1))
    for (x, y, zz), s in zip(picks["xy"], picks["score"]):
        if abs(zz - z) <= 1:
            axes[3].add_patch(Circle((x, y), bbox / 2 - 1, fill=False, color="lime",
                                     lw=0.4 + 1.2 * float(s)))
    for ax in axes:
        ax.set_axis_off()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(dest, dpi=80)
    plt.close(fig)
    return dest
