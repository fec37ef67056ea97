"""The separable Fourier resampler equals the plain two-dimensional one bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import fft as sfft

from converters import images


def _plain_rfft2_resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Oracle: the whole rfft2, then the same crop of rows and columns."""
    img = np.asarray(img, dtype=np.float32)
    ny, nx = img.shape
    my, mx = shape
    spec = sfft.rfft2(img)
    out = np.zeros((my, mx // 2 + 1), dtype=spec.dtype)
    kx = min(nx // 2 + 1, mx // 2 + 1)
    top, bottom = min((ny + 1) // 2, (my + 1) // 2), min(ny // 2, my // 2)
    out[:top, :kx] = spec[:top, :kx]
    if bottom:
        out[my - bottom:, :kx] = spec[ny - bottom:, :kx]
    return (sfft.irfft2(out, s=(my, mx)) * np.float32((my * mx) / (ny * nx))).astype(np.float32)


@pytest.mark.parametrize(
    "src, dst",
    [((448, 576), (224, 288)), ((449, 577), (100, 151)), ((64, 64), (33, 17)),
     ((100, 100), (150, 130)), ((37, 90), (37, 45)), ((512, 384), (511, 383))],
)
def test_separable_resize_is_bit_identical_to_rfft2(src, dst):
    img = np.random.default_rng(sum(src)).standard_normal(src).astype(np.float32)
    out = images.fourier_resize(img, dst)
    assert out.shape == dst and out.dtype == np.float32
    assert np.array_equal(out, _plain_rfft2_resize(img, dst))
