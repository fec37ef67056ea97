"""Particle image stacks cut from a simulated micrograph (what an Extract job writes)."""

from __future__ import annotations

import numpy as np

EXTRACT_BINNING = 2  # particle pixel size = 2 × micrograph pixel size in every generated project


def extract_stack(image: np.ndarray, xy: np.ndarray, box_px: int) -> np.ndarray:
    """Boxes of ``box_px`` micrograph pixels around ``xy`` (n, 2; x = column, y = row), binned
    by :data:`EXTRACT_BINNING`: float32 (n, box_px // 2, box_px // 2). Boxes are cut at the
    rounded centre; parts outside the micrograph are zero."""
    b = EXTRACT_BINNING
    out_box = box_px // b
    ny, nx = image.shape
    stack = np.zeros((len(xy), out_box, out_box), dtype=np.float32)
    half = box_px // 2
    for i, (x, y) in enumerate(np.asarray(xy, dtype=np.float64).reshape(-1, 2)):
        x0, y0 = int(round(x)) - half, int(round(y)) - half
        box = np.zeros((box_px, box_px), dtype=np.float32)
        xs, ys = max(x0, 0), max(y0, 0)
        xe, ye = min(x0 + box_px, nx), min(y0 + box_px, ny)
        if xe > xs and ye > ys:
            box[ys - y0 : ye - y0, xs - x0 : xe - x0] = image[ys:ye, xs:xe]
        stack[i] = box.reshape(out_box, b, out_box, b).mean(axis=(1, 3))
    return stack
