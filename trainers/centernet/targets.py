"""CenterNet training targets: Gaussian heatmap, centre offsets and sizes at output stride 4.

Coordinates: input px of the network view (DESIGN frame). A pick at ``(x, y)`` has its heatmap
peak at output cell ``(floor(x/4), floor(y/4))`` and offset ``(x/4 − floor(x/4), ...)``; decoding
inverts this exactly: ``x = 4·(cell + offset)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """Heatmap radius for a box of ``height × width`` output px: the smallest of the three
    corner-shift radii of CornerNet/CenterNet's ``gaussian_radius`` (CenterNet
    ``utils/image.py``; its roots divide by 2 rather than 2a, kept as written there because
    EPicker's targets come from it)."""
    h, w, m = height, width, min_overlap
    b1 = h + w
    c1 = w * h * (1 - m) / (1 + m)
    r1 = (b1 + math.sqrt(b1 * b1 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - m) * w * h
    r2 = (b2 + math.sqrt(b2 * b2 - 16 * c2)) / 2
    a3 = 4 * m
    b3 = -2 * m * (h + w)
    c3 = (m - 1) * w * h
    r3 = (b3 + math.sqrt(b3 * b3 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(hm: np.ndarray, cx: int, cy: int, radius: int) -> None:
    """Max-paint a Gaussian of σ = (2r+1)/6 and peak 1 centred on cell (cx, cy)."""
    d = 2 * radius + 1
    sigma = d / 6
    g1 = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-(g1[None, :] ** 2 + g1[:, None] ** 2) / (2 * sigma * sigma))
    h, w = hm.shape
    x0, x1 = max(cx - radius, 0), min(cx + radius + 1, w)
    y0, y1 = max(cy - radius, 0), min(cy + radius + 1, h)
    if x1 <= x0 or y1 <= y0:
        return
    patch = g[y0 - cy + radius : y1 - cy + radius, x0 - cx + radius : x1 - cx + radius]
    np.maximum(hm[y0:y1, x0:x1], patch, out=hm[y0:y1, x0:x1])


@dataclass
class CenterNetEncoder:
    """Encodes a view and its picks into CenterNet targets.

    ``particle_size``: particle diameter in input px; the target box is a square of that side
    (vesicles: side 2·radius when the label has a radius). Gaussian radius: CenterNet
    ``gaussian_radius`` of the box at output scale with overlap 0.7, at least ``min_radius``.
    """

    particle_size: float
    stride: int = 4
    max_objs: int = 2000
    min_radius: int = 1

    def radius_cells(self, side_px: float) -> int:
        s = side_px / self.stride
        return max(self.min_radius, int(gaussian_radius(s, s, 0.7)))

    def encode(self, image: np.ndarray, xy: np.ndarray, radius: np.ndarray, group=None) -> dict:
        h, w = image.shape
        oh, ow = h // self.stride, w // self.stride
        hm = np.zeros((oh, ow), dtype=np.float32)
        ind = np.zeros(self.max_objs, dtype=np.int64)
        reg = np.zeros((self.max_objs, 2), dtype=np.float32)
        wh = np.zeros((self.max_objs, 2), dtype=np.float32)
        mask = np.zeros(self.max_objs, dtype=np.float32)
        wh_mask = np.zeros(self.max_objs, dtype=np.float32)
        k = 0
        for (x, y), r in zip(np.asarray(xy).reshape(-1, 2), np.asarray(radius).reshape(-1)):
            cx, cy = x / self.stride, y / self.stride
            ix, iy = int(math.floor(cx)), int(math.floor(cy))
            if not (0 <= ix < ow and 0 <= iy < oh):
                continue
            side = 2 * r if np.isfinite(r) and r > 0 else self.particle_size
            draw_gaussian(hm, ix, iy, self.radius_cells(side))
            if k < self.max_objs:
                ind[k] = iy * ow + ix
                reg[k] = (cx - ix, cy - iy)
                wh[k] = side / self.stride
                wh_mask[k] = float(np.isfinite(r) and r > 0)
                mask[k] = 1
                k += 1
        return {"hm": hm[None], "ind": ind, "reg": reg, "wh": wh, "mask": mask,
                "wh_mask": wh_mask}

    @staticmethod
    def collate(items):
        from torch.utils.data import default_collate

        return default_collate(items)
