"""EPicker's view of a micrograph (pickers.md §D1, EPicker ``mrc_utils/preprocess.py``).

Average the frames of a stack → Fourier crop (or pad) to ``input_width`` columns (rows scaled
by the same factor) → min–max to uint8 (:func:`converters.images.to_uint8`, the project's one
8-bit conversion) → histogram equalisation. Labels follow with ``x' = x · nx'/nx``,
``y' = y · ny'/ny`` (px of the micrograph file → px of the network input; DESIGN frame both).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harvest.conventions import micrograph_key
from trainers.core.dataset import Prepared

# After histogram equalisation a uint8 image is close to uniform: mean 0.5, std 1/sqrt(12).
# EPicker uses 0.508/0.289 for training and 0.502/0.289 for picking; one pair is used here.
NORM_MEAN = 0.5
NORM_STD = 0.2887
STRIDE_MULTIPLE = 32  # the network downsamples by 32 in its deepest stage


def equalize(img: np.ndarray) -> np.ndarray:
    """Min–max to uint8 then histogram equalisation (as ``cv2.equalizeHist``)."""
    from converters.images import equalize_hist, to_uint8

    return equalize_hist(to_uint8(img, "minmax"))


def prepare(path: str | Path, input_width: int) -> Prepared:
    """EPicker's preprocessing of one micrograph (see the module docstring)."""
    from converters.images import fourier_resize
    from trainers.data import read_image

    img = read_image(path)
    ny, nx = img.shape
    nx2 = int(input_width)
    ny2 = max(1, int(round(ny * nx2 / nx)))
    small = fourier_resize(img, (ny2, nx2))
    return Prepared(
        name=micrograph_key(Path(path).name),
        path=Path(path),
        image=equalize(small),
        nx=nx,
        ny=ny,
        sx=nx2 / nx,
        sy=ny2 / ny,
    )


def to_tensor_image(u8: np.ndarray) -> np.ndarray:
    """uint8 image → normalised float32 (1, H, W) network input."""
    return ((u8.astype(np.float32) / 255.0 - NORM_MEAN) / NORM_STD)[None]


def to_input(px_at_1024: float, h: dict) -> float:
    """A distance given at EPicker's 1024-px-wide scale (--edge, --min_distance) in px of the
    network input (width ``input_width``)."""
    return float(px_at_1024) * int(h.get("input_width", 1024)) / 1024.0
