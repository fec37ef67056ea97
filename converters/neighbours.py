"""Picks closer than a radius on the same micrograph, in numpy: candidate pairs by grid hashing,
and the greedy de-duplication and "near a positive" rules of :mod:`converters.select`.

Points come in units of their micrograph's radius (``u = coordinate / radius``, float64, z = 0
for 2D) with an integer micrograph code. Two points of one micrograph are *close* when

    d² = (Δx)² + (Δy)² + (Δz)²  (float64, summed in this order)  ≤  (1 − 1e-9)²

which is the test ``scipy.spatial.cKDTree.query_pairs(1 − 1e-9)`` applies to the same
coordinates (scipy's squared Euclidean distance adds the per-axis squares in axis order), so the
pairs found here are the pairs the KD-tree found before; :func:`near` uses ``√d² < 1 − 1e-9``,
the test of ``cKDTree.query(..., distance_upper_bound=1)`` followed by ``dist < 1 − 1e-9``.

Grid hashing: each point falls in the unit cell ``floor(u)``; a close pair has both points in the
same or adjacent cells (|Δ| < 1 on every axis). Cells get one int64 key (micrograph, cx, cy, cz
in mixed radix), points are sorted by key, and for each neighbouring cell offset the partners
of every point are one contiguous run found by ``searchsorted``: no tree, no Python loop over
micrographs. Where the keys would not fit 62 bits (absurd coordinate ranges), the KD-tree is
used instead.

Greedy (:func:`greedy_keep`): visit points in priority order and keep a point unless a kept
point of higher priority is close; computed in vectorised rounds (a point is kept once every
higher-priority close point is dropped, dropped once one is kept), each round on the still
undecided points only.
"""

from __future__ import annotations

import numpy as np

LIMIT = 1.0 - 1e-9  # "closer than the radius", with the KD-tree's margin
LIMIT2 = LIMIT**2  # cKDTree compares squared distances with r ** p
_HALF_2D = ((1, -1, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0))  # + the same cell
_ALL_2D = tuple((a, b, 0) for a in (-1, 0, 1) for b in (-1, 0, 1))
_ALL_3D = tuple((a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1))
_HALF_3D = tuple(o for o in _ALL_3D if o > (0, 0, 0))


class _Grid:
    """Points sorted by cell key; per cell its first point and size."""

    def __init__(self, code: np.ndarray, cells: np.ndarray, lo: np.ndarray, radix: np.ndarray):
        key = _keys(code, cells, lo, radix)
        self.order = np.argsort(key, kind="stable")
        k = key[self.order]
        start = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
        self.cell_keys = k[start]
        self.cell_start = start
        self.cell_size = np.diff(np.append(start, len(k)))
        self.point_cell = np.repeat(np.arange(len(start)), self.cell_size)  # sorted points
        self.sorted_keys = k


def _keys(code, cells, lo, radix) -> np.ndarray:
    key = code.astype(np.int64)
    for d in range(3):
        key = key * radix[d] + (cells[:, d] - lo[d])
    return key


def _layout(code_all: np.ndarray, cells_all: np.ndarray):
    """(lower corner, radix per axis) with one spare cell each side, or None if the keys of
    (micrograph, cx, cy, cz) would not fit in 62 bits."""
    if not len(cells_all):
        return np.zeros(3, np.int64), np.ones(3, np.int64)
    lo = cells_all.min(axis=0) - 1
    radix = cells_all.max(axis=0) - lo + 2
    span = float(code_all.max() + 1) * float(np.prod(radix.astype(np.float64)))
    if span >= 2.0**62:
        return None
    return lo, radix


def _cells(u: np.ndarray) -> np.ndarray | None:
    if not np.isfinite(u).all() or (np.abs(u) >= 2.0**52).any():
        return None
    return np.floor(u).astype(np.int64)


def _expand(src: np.ndarray, start: np.ndarray, count: np.ndarray):
    """Pairs (src[i], start[i] + k) for k < count[i]."""
    total = int(count.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.cumsum(count) - count
    i = np.repeat(src, count)
    j = np.repeat(start - first, count) + np.arange(total, dtype=np.int64)
    return i, j


def _neighbour_runs(grid: _Grid, src_keys: np.ndarray, offset_key: int):
    """For query keys ``src_keys`` (cell keys of query points) and one offset: (start, count)
    of the run of ``grid``'s sorted points in the neighbouring cell."""
    target = src_keys + offset_key
    pos = np.searchsorted(grid.cell_keys, target)
    pos_c = np.minimum(pos, len(grid.cell_keys) - 1)
    hit = grid.cell_keys[pos_c] == target if len(grid.cell_keys) else np.zeros(len(target), bool)
    count = np.where(hit, grid.cell_size[pos_c], 0)
    start = np.where(hit, grid.cell_start[pos_c], 0)
    return start, count


def _d2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a[:, 0] - b[:, 0]
    s = d * d
    d = a[:, 1] - b[:, 1]
    s = s + d * d
    d = a[:, 2] - b[:, 2]
    return s + d * d


def _offset_key(o, radix) -> int:
    return int((o[0] * radix[1] + o[1]) * radix[2] + o[2])


def close_pairs(code: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All close pairs (i < j as indices of the input) among points ``u`` (n × 3) with
    micrograph codes ``code``; see the module docstring."""
    n = len(u)
    cells = _cells(u)
    lay = None if cells is None else _layout(code, cells)
    if lay is None:
        return _kdtree_pairs(code, u)
    lo, radix = lay
    g = _Grid(code, cells, lo, radix)
    us = u[g.order]
    flat = bool((cells[:, 2] == cells[0, 2]).all()) if n else True
    ii, jj = [], []
    # the same cell: later points of the run
    rank = np.arange(n, dtype=np.int64) - g.cell_start[g.point_cell]
    count = g.cell_size[g.point_cell] - rank - 1
    i, j = _expand(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64) + 1, count)
    ii.append(i)
    jj.append(j)
    for o in (_HALF_2D if flat else _HALF_3D):
        start, count = _neighbour_runs(g, g.sorted_keys, _offset_key(o, radix))
        i, j = _expand(np.arange(n, dtype=np.int64), start, count)
        ii.append(i)
        jj.append(j)
    i, j = np.concatenate(ii), np.concatenate(jj)
    close = _d2(us[i], us[j]) <= LIMIT2
    a, b = g.order[i[close]], g.order[j[close]]
    return np.minimum(a, b), np.maximum(a, b)


def near(code_c: np.ndarray, u_c: np.ndarray, code_o: np.ndarray, u_o: np.ndarray) -> np.ndarray:
    """For each candidate point: is a point of the other set close (``√d² < 1 − 1e-9``)?"""
    out = np.zeros(len(u_c), dtype=bool)
    if not len(u_c) or not len(u_o):
        return out
    cells_c, cells_o = _cells(u_c), _cells(u_o)
    lay = None
    if cells_c is not None and cells_o is not None:
        lay = _layout(np.concatenate([code_c, code_o]), np.concatenate([cells_c, cells_o]))
    if lay is None:
        return _kdtree_near(code_c, u_c, code_o, u_o)
    lo, radix = lay
    g = _Grid(code_o, cells_o, lo, radix)
    uo = u_o[g.order]
    keys = _keys(code_c, cells_c, lo, radix)
    flat = bool((cells_c[:, 2] == cells_c[0, 2]).all() and (cells_o[:, 2] == cells_c[0, 2]).all())
    for o in (_ALL_2D if flat else _ALL_3D):
        start, count = _neighbour_runs(g, keys, _offset_key(o, radix))
        i, j = _expand(np.arange(len(u_c), dtype=np.int64), start, count)
        hit = np.sqrt(_d2(u_c[i], uo[j])) < LIMIT
        out[i[hit]] = True
    return out


def greedy_keep(n: int, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Sequential greedy over positions 0..n-1 (0 = highest priority) given close pairs
    ``hi < lo``: True where kept."""
    state = np.zeros(n, dtype=np.int8)  # +1 keep, -1 drop, 0 undecided
    has_higher = np.zeros(n, dtype=bool)
    has_higher[lo] = True
    state[~has_higher] = 1
    while True:
        active = state[lo] == 0
        hi, lo = hi[active], lo[active]
        if not len(lo):
            break
        s = state[hi]
        state[lo[s == 1]] = -1  # a higher-priority close point is kept
        blocked = np.zeros(n, dtype=bool)
        blocked[lo[state[hi] >= 0]] = True  # one is kept or still undecided
        state[(state == 0) & ~blocked] = 1
    return state > 0


def _kdtree_pairs(code, u):
    from scipy.spatial import cKDTree

    finite = np.isfinite(u).all(axis=1)
    idx = np.flatnonzero(finite)
    if len(idx) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pts = np.column_stack([u[idx], code[idx].astype(np.float64) * 3.0])
    pairs = cKDTree(pts).query_pairs(LIMIT, output_type="ndarray")
    a, b = idx[pairs[:, 0]], idx[pairs[:, 1]]
    return np.minimum(a, b), np.maximum(a, b)


def _kdtree_near(code_c, u_c, code_o, u_o):
    from scipy.spatial import cKDTree

    out = np.zeros(len(u_c), dtype=bool)
    fc, fo = np.isfinite(u_c).all(axis=1), np.isfinite(u_o).all(axis=1)
    if not fc.any() or not fo.any():
        return out
    po = np.column_stack([u_o[fo], code_o[fo].astype(np.float64) * 3.0])
    pc = np.column_stack([u_c[fc], code_c[fc].astype(np.float64) * 3.0])
    dist, _ = cKDTree(po).query(pc, k=1, distance_upper_bound=1.0)
    out[np.flatnonzero(fc)[dist < LIMIT]] = True
    return out
