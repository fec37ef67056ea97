"""``export --label-fraction F``: a sparse, subregion-style subset of the training labels.

cet_pick / MiLoPYP is trained from tomograms whose particles are labelled only inside a few
small regions ("label 10–70 % of the particles in small subregions", pickers.md §E4); the rest
of each tomogram is unlabelled, not empty. This module makes such a subset from complete labels,
for experiments: each training micrograph or tomogram is cut into a ``GRID`` × ``GRID`` raster
of rectangles in x, y (every rectangle spans the whole z range); the rectangles are taken in a
seeded random order until they hold ≈ F of that image's particles (the last rectangle is kept
if that brings the count closer to F · n, else a smaller one is sought), and only the labels inside them are written.

Validation labels stay complete (evaluation needs every true particle). The manifest's
``label_fraction`` records the fraction asked, the seed, the grid and, per image, the rectangles
kept (``[x0, y0, x1, y1]`` in exported pixels, half-open) and how many labels of how many.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRID = 4
_STREAM = 12  # seed stream of this subset, apart from the split's


def subregion_subset(picks: pd.DataFrame, images: pd.DataFrame, fraction: float | None,
                     seed: int, split: str = "train") -> tuple[pd.DataFrame, dict | None]:
    """The picks with those of ``split`` images outside the chosen rectangles removed, and the
    manifest record (None when ``fraction`` is None or 1: nothing removed).

    ``picks``: ``stem``, ``split``, ``x``, ``y`` (exported pixels); ``images``: ``stem``,
    ``split``, ``out_nx``, ``out_ny``. Raises ValueError unless 0 < fraction <= 1."""
    if fraction is None:
        return picks, None
    if not 0 < float(fraction) <= 1:
        raise ValueError(f"--label-fraction {fraction} must be in (0, 1]; e.g. 0.3 keeps about "
                         "30 % of each training image's labels")
    if float(fraction) == 1.0:
        return picks, None
    rng = np.random.default_rng([int(seed), _STREAM])
    keep = np.ones(len(picks), dtype=bool)
    per_image: dict[str, dict] = {}
    rows = images[images["split"] == split].sort_values("stem")
    for img in rows.itertuples():
        on = np.flatnonzero((picks["stem"] == img.stem).to_numpy()
                            & (picks["split"] == split).to_numpy())
        nx, ny = float(img.out_nx), float(img.out_ny)
        xs = np.clip((picks["x"].to_numpy(float)[on] / nx * GRID).astype(int), 0, GRID - 1)
        ys = np.clip((picks["y"].to_numpy(float)[on] / ny * GRID).astype(int), 0, GRID - 1)
        cell = ys * GRID + xs
        counts = np.bincount(cell, minlength=GRID * GRID)
        target = float(fraction) * len(on)
        chosen, total = [], 0
        for c in rng.permutation(GRID * GRID):
            if total >= target:
                break
            if counts[c] == 0:
                continue
            if abs(total + counts[c] - target) > abs(total - target) and chosen:
                continue  # it would overshoot more than stopping undershoots: a smaller one?
            chosen.append(int(c))
            total += int(counts[c])
        inside = np.isin(cell, chosen)
        keep[on[~inside]] = False
        per_image[str(img.stem)] = {
            "kept": int(inside.sum()), "of": int(len(on)),
            "regions": [[(c % GRID) * nx / GRID, (c // GRID) * ny / GRID,
                         (c % GRID + 1) * nx / GRID, (c // GRID + 1) * ny / GRID]
                        for c in sorted(chosen)],
        }
    kept = sum(v["kept"] for v in per_image.values())
    total = sum(v["of"] for v in per_image.values())
    record = {
        "fraction": float(fraction), "seed": int(seed), "grid": GRID, "split": split,
        "rule": f"per {split} image, random rectangles of a {GRID}x{GRID} raster in x, y (all "
                "of z) until they hold about the fraction of its labels; labels outside are "
                "left out (unlabelled, not negative); other splits complete",
        "kept": kept, "of": total, "achieved": kept / total if total else None,
        "per_image": per_image,
    }
    return picks[keep].reset_index(drop=True), record
