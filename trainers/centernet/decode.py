"""Heatmap → picks (pickers.md §D1 decoding) and fiber linking.

``decode`` works at the network input scale (px, DESIGN frame); callers divide by the
preprocessing scale (``Prepared.sx``, ``.sy``) to get px of the original micrograph.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F


def decode(
    out: dict,
    K: int = 2000,
    vis_thresh: float = 0.0,
    edge: float = 25.0,
    min_distance: float = 0.0,
    valid_hw: tuple[int, int] | None = None,
    stride: int = 4,
) -> list[dict]:
    """Per image in the batch: ``{"xy": (n, 2) input px, "score": (n,), "radius": (n,) input px
    (from the size head: (w + h)/4 · stride)}``, sorted by descending score.

    sigmoid → 3×3 max-pool suppression → top-``K`` → + offsets → ×``stride``; then
    score > ``vis_thresh``; picks closer than ``edge`` px to the border of the ``valid_hw``
    region (the unpadded image) dropped; greedy ``min_distance`` suppression when > 0.
    """
    heat = torch.sigmoid(out["hm"])
    hmax = F.max_pool2d(heat, 3, stride=1, padding=1)
    heat = heat * (hmax == heat).float()
    b, _, h, w = heat.shape
    k = min(K, h * w)
    scores, inds = torch.topk(heat.view(b, -1), k)
    ys = torch.div(inds, w, rounding_mode="floor").float()
    xs = (inds % w).float()
    reg = out["reg"].view(b, 2, -1)
    wh = out["wh"].view(b, 2, -1)
    res = []
    H, W = valid_hw if valid_hw is not None else (h * stride, w * stride)
    for i in range(b):
        off = reg[i][:, inds[i]]
        x = ((xs[i] + off[0]) * stride).cpu().numpy().astype(np.float64)
        y = ((ys[i] + off[1]) * stride).cpu().numpy().astype(np.float64)
        size = wh[i][:, inds[i]]
        rad = ((size[0] + size[1]) / 4 * stride).cpu().numpy().astype(np.float64)
        sc = scores[i].cpu().numpy().astype(np.float64)
        keep = (sc > vis_thresh) & (x >= edge) & (y >= edge) & (x <= W - edge) & (y <= H - edge)
        x, y, sc, rad = x[keep], y[keep], sc[keep], rad[keep]
        if min_distance > 0 and len(x):
            sel = greedy_min_distance(np.stack([x, y], 1), min_distance)
            x, y, sc, rad = x[sel], y[sel], sc[sel], rad[sel]
        res.append({"xy": np.stack([x, y], 1), "score": sc, "radius": rad})
    return res


def greedy_min_distance(xy: np.ndarray, dist: float) -> np.ndarray:
    """Indices kept when walking picks in order (highest score first) and dropping any pick
    closer than ``dist`` to one already kept."""
    from scipy.spatial import cKDTree

    tree = cKDTree(xy)
    dropped = np.zeros(len(xy), dtype=bool)
    kept = []
    for i in range(len(xy)):
        if dropped[i]:
            continue
        kept.append(i)
        for j in tree.query_ball_point(xy[i], dist - 1e-9):
            if j != i:
                dropped[j] = True
    return np.asarray(kept, dtype=np.int64)


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 0.0
    c = float(np.clip(np.dot(u, v) / (nu * nv), -1, 1))
    return math.acos(c)


def link_fibers(
    xy: np.ndarray, scores: np.ndarray, max_dist: float = 120.0, max_turn: float = 0.3,
    min_points: int = 2,
) -> np.ndarray:
    """Greedy filament tracing (pickers.md §D1 fiber mode): start at the best unassigned pick,
    step to the nearest unassigned pick within ``max_dist`` whose direction turns by less than
    ``max_turn`` rad from the current direction (any direction for the first step), continue
    until none is left, then grow the other end the same way. Returns a group id per pick
    (−1 for picks in chains shorter than ``min_points``)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    group = np.full(n, -1, dtype=np.int64)
    used = np.zeros(n, dtype=bool)
    gid = 0
    for seed in np.argsort(-np.asarray(scores), kind="stable"):
        if used[seed]:
            continue
        used[seed] = True
        chain = [seed]
        for direction in (1, -1):
            cur = seed
            prev_dir = None
            if direction == -1 and len(chain) > 1:
                prev_dir = xy[chain[0]] - xy[chain[1]]
                cur = chain[0]
            elif direction == -1:
                break
            while True:
                d = np.hypot(*(xy - xy[cur]).T)
                d[used] = np.inf
                best = -1
                for j in np.argsort(d):
                    if not np.isfinite(d[j]) or d[j] > max_dist:
                        break
                    if prev_dir is None or _angle(prev_dir, xy[j] - xy[cur]) < max_turn:
                        best = j
                        break
                if best < 0:
                    break
                used[best] = True
                prev_dir = xy[best] - xy[cur]
                cur = best
                if direction == 1:
                    chain.append(best)
                else:
                    chain.insert(0, best)
        if len(chain) >= min_points:
            group[chain] = gid
            gid += 1
    return group


def densify_filaments(xy: np.ndarray, group: np.ndarray, step: float = 5.0):
    """Points every ``step`` px along consecutive label points of each filament group (EPicker
    ``gen_box.place_boxes``). Returns (xy, group). Points with group −1 are kept as they are."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    group = np.asarray(group)
    out_xy, out_g = [xy[group < 0]], [group[group < 0]]
    for g in np.unique(group[group >= 0]):
        pts = xy[group == g]
        seg = [pts[:1]]
        for a, b in zip(pts[:-1], pts[1:]):
            n = max(1, int(np.ceil(np.hypot(*(b - a)) / step)))
            t = np.arange(1, n + 1)[:, None] / n
            seg.append(a + t * (b - a))
        dense = np.concatenate(seg)
        out_xy.append(dense)
        out_g.append(np.full(len(dense), g))
    return np.concatenate(out_xy), np.concatenate(out_g)
