"""Decoding as cet_pick (``models/decode.py`` ``tomo_decode``, ``detectors/tomo_det.py``).

Heatmap probabilities (D, h, w) → 3-D max-pool NMS with kernel (3, k, k) (``--nms`` k) →
top-K voxels → x, y × down_ratio (the upstream +0.25 offset floors away) → kept when score >
``out_thresh``, ``cutoff_z ≤ z ≤ D − cutoff_z`` (heatmap slices) and more than ``edge`` (20) px
from the x/y borders. Coordinates returned are voxels of the network-input volume (x, y as
loaded, z in its slices, i.e. compressed ones with ``--compress``).
"""

from __future__ import annotations

import numpy as np
import torch

EDGE = 20


def nms(heat: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    pad = (kernel - 1) // 2
    hmax = torch.nn.functional.max_pool3d(heat[None, None], (3, kernel, kernel), stride=1,
                                          padding=(1, pad, pad))[0, 0]
    return heat * (hmax == heat).float()


def decode(heat: torch.Tensor, K: int = 900, kernel: int = 3, out_thresh: float = 0.0,
           cutoff_z: int = 0, edge: float = EDGE, down_ratio: int = 2,
           valid_dhw: tuple[int, int, int] | None = None) -> dict:
    """Picks of one heatmap ``heat`` (D, h, w) probabilities: ``xy`` (n, 3) x, y, z in input
    voxels and ``score`` (n,), best first. ``valid_dhw``: the unpadded input size (D, H, W)."""
    d, h, w = heat.shape
    peaks = nms(heat, kernel).flatten()
    k = min(int(K), peaks.numel())
    scores, idx = torch.topk(peaks, k)
    idx = idx.cpu().numpy()
    scores = scores.detach().cpu().numpy().astype(np.float64)
    z = idx // (h * w)
    y = (idx % (h * w)) // w
    x = idx % w
    xs = np.floor((x + 0.25) * down_ratio)
    ys = np.floor((y + 0.25) * down_ratio)
    D, H, W = valid_dhw if valid_dhw is not None else (d, h * down_ratio, w * down_ratio)
    keep = (scores > out_thresh) & (z >= cutoff_z) & (z <= D - cutoff_z)
    keep &= (xs > edge) & (xs < W - edge) & (ys > edge) & (ys < H - edge)
    xyz = np.stack([xs, ys, z.astype(np.float64)], axis=1)[keep]
    return {"xy": xyz, "score": scores[keep]}
