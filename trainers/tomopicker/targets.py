"""Heatmap targets as cet_pick draws them (``datasets/tomo_moco.py``, ``utils/image.py``).

The heatmap has the loaded volume's D slices (``--compress``: halved) and H, W divided by
``--down_ratio`` 2. At each label a 3-D Gaussian of radius r = CenterNet's
``gaussian_radius((h, h), 0.7)`` with h = bbox // down_ratio (bbox 16 → r 2, bbox 32 → r 4),
diameter 2r + 1, σ = diameter / 6, values > 0.9 set to 1, is combined with ``np.maximum``.
For PU training every voxel left at 0 becomes −1 (unlabelled).
"""

from __future__ import annotations

import math

import numpy as np

DOWN_RATIO = 2


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius (the smallest of its three quadratic cases; formulas from
    CenterNet ``utils/image.py`` ``gaussian_radius``, re-implemented)."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def radius_for_bbox(bbox: int, down_ratio: int = DOWN_RATIO) -> int:
    """Integer Gaussian radius in heatmap voxels for a box of ``bbox`` input px."""
    h = math.ceil(int(bbox) // down_ratio)
    return max(0, int(gaussian_radius(h, h)))


def gaussian3d(radius: int) -> np.ndarray:
    d = 2 * radius + 1
    sigma = d / 6
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2)
               / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    g[g > 0.9] = 1
    return g.astype(np.float32)


def draw(hm: np.ndarray, centre, radius: int) -> None:
    """np.maximum of the Gaussian at integer ``centre`` (x, y, z heatmap voxels) into ``hm``
    (D, H, W), clipped at the borders."""
    x, y, z = (int(c) for c in centre)
    depth, height, width = hm.shape
    if not (0 <= x < width and 0 <= y < height and 0 <= z < depth):
        return
    g = gaussian3d(radius)
    lf, rt = min(x, radius), min(width - x, radius + 1)
    tp, bt = min(y, radius), min(height - y, radius + 1)
    fr, bk = min(z, radius), min(depth - z, radius + 1)
    region = hm[z - fr:z + bk, y - tp:y + bt, x - lf:x + rt]
    np.maximum(region, g[radius - fr:radius + bk, radius - tp:radius + bt,
                         radius - lf:radius + rt], out=region)


def heatmap_coords(xyz: np.ndarray, compress: bool, down_ratio: int = DOWN_RATIO) -> np.ndarray:
    """Loaded-volume (x, y, z) → integer heatmap voxels (x // 2, y // 2, z [// 2])."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    out = np.floor(xyz).astype(np.int64)
    out[:, 0] //= down_ratio
    out[:, 1] //= down_ratio
    if compress:
        out[:, 2] //= 2
    return out


def make_heatmap(shape_dhw: tuple[int, int, int], hm_xyz: np.ndarray, bbox: int,
                 unlabelled: bool, down_ratio: int = DOWN_RATIO) -> np.ndarray:
    """Heatmap (D, H // down_ratio, W // down_ratio) with a Gaussian per label (``hm_xyz``
    in heatmap voxels); ``unlabelled``: every 0 becomes −1 (PU training)."""
    d, h, w = shape_dhw
    hm = np.zeros((d, h // down_ratio, w // down_ratio), dtype=np.float32)
    r = radius_for_bbox(bbox, down_ratio)
    for c in np.asarray(hm_xyz).reshape(-1, 3):
        draw(hm, c, r)
    if unlabelled:
        hm[hm == 0] = -1
    return hm
