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

    def __init__(self, key: np.ndarray):
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
    for d, c in enumerate(cells):
        key = key * radix[d] + (c - lo[d])
    return key


def _layout(codes: list[np.ndarray], cells: list[list[np.ndarray]]):
    """(lower corner, radix) per axis with one spare cell each side, or None if the keys of
    (micrograph, cells…) would not fit in 62 bits."""
    ndim = len(cells[0])
    lo = np.array([min(int(c[d].min()) for c in cells if len(c[d])) - 1 for d in range(ndim)],
                  dtype=np.int64)
    hi = np.array([max(int(c[d].max()) for c in cells if len(c[d])) + 1 for d in range(ndim)],
                  dtype=np.int64)
    radix = hi - lo + 1
    span = float(max(int(c.max()) for c in codes if len(c)) + 1) * float(
        np.prod(radix.astype(np.float64)))
    if span >= 2.0**62:
        return None
    return lo, radix


def _cells(axes: list[np.ndarray]) -> list[np.ndarray] | None:
    out = []
    for a in axes:
        if not np.isfinite(a).all() or (np.abs(a) >= 2.0**52).any():
            return None
        out.append(np.floor(a).astype(np.int64))
    return out


def _expand(src: np.ndarray | None, start: np.ndarray, count: np.ndarray):
    """Pairs (src[i], start[i] + k) for k < count[i] (src None: i itself); only the rows
    with a count are expanded."""
    has = np.flatnonzero(count)
    if not len(has):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    count, start = count[has], start[has]
    total = int(count.sum())
    first = np.cumsum(count) - count
    i = np.repeat(has if src is None else src[has], count)
    j = np.repeat(start - first, count) + np.arange(total, dtype=np.int64)
    return i, j


def _neighbour_runs(grid: _Grid, keys: np.ndarray, offset_key: int):
    """For query cell keys ``keys`` and one offset: (start, count) of the run of ``grid``'s
    sorted points in the neighbouring cell (count 0 where that cell is empty)."""
    target = keys + offset_key
    pos = np.searchsorted(grid.cell_keys, target)
    np.minimum(pos, len(grid.cell_keys) - 1, out=pos)
    hit = grid.cell_keys[pos] == target
    count = np.where(hit, grid.cell_size[pos], 0)
    return grid.cell_start[pos], count


def _d2(a: list[np.ndarray], i: np.ndarray, b: list[np.ndarray], j: np.ndarray) -> np.ndarray:
    """Squared distances of pairs (a[i], b[j]), axes added in order (as scipy does)."""
    s = None
    for ua, ub in zip(a, b):
        d = ua[i] - ub[j]
        s = d * d if s is None else s + d * d
    return s


def _offset_key(o, radix) -> int:
    k = 0
    for d in range(len(radix)):
        k = k * int(radix[d]) + o[d]
    return k


def close_pairs(code: np.ndarray, axes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All close pairs (i < j as indices of the input) among points with micrograph codes
    ``code`` and coordinates ``axes`` ([x, y] or [x, y, z], in units of their radius; a z of 0
    adds nothing to a distance, so 2D points may sit among 3D ones); see the module docstring."""
    if len(code) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cells = _cells(axes)
    lay = None if cells is None else _layout([code], [cells])
    if lay is None:
        return _kdtree_pairs(code, axes)
    lo, radix = lay
    g = _Grid(_keys(code, cells, lo, radix))
    us = [a[g.order] for a in axes]
    n = len(code)
    ii, jj = [], []
    # the same cell: the later points of its run
    start = g.cell_start[g.point_cell]
    count = g.cell_size[g.point_cell] - (np.arange(n, dtype=np.int64) - start) - 1
    i, j = _expand(None, np.arange(1, n + 1, dtype=np.int64), count)
    ii.append(i)
    jj.append(j)
    half = _HALF_2D if len(axes) == 2 else _HALF_3D
    for o in half:
        start, count = _neighbour_runs(g, g.sorted_keys, _offset_key(o[:len(axes)], radix))
        i, j = _expand(None, start, count)
        ii.append(i)
        jj.append(j)
    i, j = np.concatenate(ii), np.concatenate(jj)
    close = _d2(us, i, us, j) <= LIMIT2
    a, b = g.order[i[close]], g.order[j[close]]
    return np.minimum(a, b), np.maximum(a, b)


def near(code_c: np.ndarray, ax_c: list[np.ndarray], code_o: np.ndarray,
         ax_o: list[np.ndarray]) -> np.ndarray:
    """For each candidate point (codes ``code_c``, coordinates ``ax_c`` as in
    :func:`close_pairs`): is a point of the other set close (``√d² < 1 − 1e-9``)?"""
    out = np.zeros(len(code_c), dtype=bool)
    if not len(code_c) or not len(code_o):
        return out
    three = len(ax_c) > 2
    cells_c, cells_o = _cells(ax_c), _cells(ax_o)
    lay = None
    if cells_c is not None and cells_o is not None:
        lay = _layout([code_c, code_o], [cells_c, cells_o])
    if lay is None:
        return _kdtree_near(code_c, ax_c, code_o, ax_o)
    lo, radix = lay
    g = _Grid(_keys(code_o, cells_o, lo, radix))
    uo = [a[g.order] for a in ax_o]
    keys = _keys(code_c, cells_c, lo, radix)
    src = np.arange(len(code_c), dtype=np.int64)
    for o in (_ALL_3D if three else _ALL_2D):
        start, count = _neighbour_runs(g, keys, _offset_key(o[:len(ax_c)], radix))
        i, j = _expand(src, start, count)
        hit = np.sqrt(_d2(ax_c, i, uo, j)) < LIMIT
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


def _stack(code, axes) -> np.ndarray:
    z = axes[2] if len(axes) > 2 else np.zeros(len(code))
    return np.column_stack([axes[0], axes[1], z, code.astype(np.float64) * 3.0])


def _kdtree_pairs(code, axes):
    from scipy.spatial import cKDTree

    pts = _stack(code, axes)
    idx = np.flatnonzero(np.isfinite(pts).all(axis=1))
    if len(idx) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = cKDTree(pts[idx]).query_pairs(LIMIT, output_type="ndarray")
    a, b = idx[pairs[:, 0]], idx[pairs[:, 1]]
    return np.minimum(a, b), np.maximum(a, b)


def _kdtree_near(code_c, ax_c, code_o, ax_o):
    from scipy.spatial import cKDTree

    out = np.zeros(len(code_c), dtype=bool)
    pc, po = _stack(code_c, ax_c), _stack(code_o, ax_o)
    fc, fo = np.isfinite(pc).all(axis=1), np.isfinite(po).all(axis=1)
    if not fc.any() or not fo.any():
        return out
    dist, _ = cKDTree(po[fo]).query(pc[fc], k=1, distance_upper_bound=1.0)
    out[np.flatnonzero(fc)[dist < LIMIT]] = True
    return out
