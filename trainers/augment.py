"""Geometric augmentation of a micrograph and its pick coordinates, applied together.

Frame: pixel centres at integer coordinates, ``x`` = column, ``y`` = row of the array (DESIGN
frame). Every transform here maps an image ``img`` and points ``xy`` (n, 2) so that the pixel
that was at ``(x, y)`` in the input is at the returned ``(x', y')`` in the output; the tests in
``tests/trainers/test_trainers_augment.py`` check this with single bright pixels for every transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def hflip(img: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left–right: column ``x`` → ``W − 1 − x``."""
    w = img.shape[1]
    xy = np.array(xy, dtype=np.float64).reshape(-1, 2)
    xy[:, 0] = (w - 1) - xy[:, 0]
    return img[:, ::-1], xy


def vflip(img: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror top–bottom: row ``y`` → ``H − 1 − y``."""
    h = img.shape[0]
    xy = np.array(xy, dtype=np.float64).reshape(-1, 2)
    xy[:, 1] = (h - 1) - xy[:, 1]
    return img[::-1, :], xy


def rot90(img: np.ndarray, xy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.rot90(img, k)`` (counter-clockwise as displayed with row 0 on top).

    One quarter turn maps ``(x, y)`` → ``(y, W − 1 − x)`` (the output has shape (W, H)).
    """
    xy = np.array(xy, dtype=np.float64).reshape(-1, 2)
    for _ in range(k % 4):
        w = img.shape[1]
        img = np.rot90(img)
        xy = np.stack([xy[:, 1], (w - 1) - xy[:, 0]], axis=1)
    return img, xy


def crop(
    img: np.ndarray, xy: np.ndarray, x0: int, y0: int, size_h: int, size_w: int, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Window of ``size_h × size_w`` whose top-left pixel is input ``(x0, y0)`` (may lie outside
    the image: the outside is ``fill``). Points map to ``(x − x0, y − y0)``; points that fall
    outside the window are kept (callers drop them with :func:`inside`)."""
    h, w = img.shape
    out = np.full((size_h, size_w), fill, dtype=img.dtype)
    sy0, sy1 = max(y0, 0), min(y0 + size_h, h)
    sx0, sx1 = max(x0, 0), min(x0 + size_w, w)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    xy = np.array(xy, dtype=np.float64).reshape(-1, 2) - np.array([x0, y0], dtype=np.float64)
    return out, xy


def inside(xy: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mask of points whose nearest pixel lies in an ``h × w`` image."""
    xy = np.asarray(xy).reshape(-1, 2)
    return (xy[:, 0] > -0.5) & (xy[:, 0] < w - 0.5) & (xy[:, 1] > -0.5) & (xy[:, 1] < h - 0.5)


@dataclass
class Augmenter:
    """Random training view: a ``crop``-sized window re-centred at a random point (EPicker's
    random translation with padding; the centre keeps ``margin`` px from the border when the
    image is large enough), then a left–right flip, a top–bottom flip and a random number of
    quarter turns (each on/off per the flags)."""

    crop: int
    margin: int = 128
    flip: bool = True
    rotate: bool = True
    fill: float = 0.0

    def __call__(
        self, img: np.ndarray, xy: np.ndarray, rng: np.random.Generator, extra=None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (view, xy in the view's frame, index of the points kept inside the view).

        ``extra`` is unused here; sizes and ids travel with the returned index.
        """
        h, w = img.shape
        s = self.crop
        cx = _centre(rng, w, s, self.margin)
        cy = _centre(rng, h, s, self.margin)
        view, pts = crop(img, xy, cx - s // 2, cy - s // 2, s, s, self.fill)
        if self.flip and rng.random() < 0.5:
            view, pts = hflip(view, pts)
        if self.flip and rng.random() < 0.5:
            view, pts = vflip(view, pts)
        if self.rotate:
            view, pts = rot90(view, pts, int(rng.integers(4)))
        keep = np.nonzero(inside(pts, s, s))[0]
        return np.ascontiguousarray(view), pts[keep], keep


def _centre(rng: np.random.Generator, n: int, size: int, margin: int) -> int:
    """Random window centre along an axis of length ``n``, at least ``margin`` px (or half the
    axis when shorter) from either end."""
    lo = min(margin, n // 2)
    hi = max(n - lo, lo + 1)
    return int(rng.integers(lo, hi))
