"""The fast 8-bit conversion equals the reference formula (np.percentile on a float64 copy,
clip, scale, round) bit for bit, on every shape, dtype and tail case."""

from __future__ import annotations

import numpy as np
import pytest

from converters import images


def _reference(img, normalize):
    img = np.asarray(img, dtype=np.float64)
    lo, hi = (np.percentile(img, (0.5, 99.5)) if normalize == "percentile"
              else (img.min(), img.max()))
    if not hi > lo:
        return np.zeros(img.shape, dtype=np.uint8)
    return np.round(np.clip((img - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def _images():
    rng = np.random.default_rng(7)
    yield "normal 700x900", rng.standard_normal((700, 900)).astype(np.float32)
    yield "heavy tail", (rng.standard_cauchy((513, 257))).astype(np.float32)
    yield "exponential f64", rng.exponential(size=(400, 300)) * 1e3
    yield "few levels", rng.integers(0, 4, size=(300, 301)).astype(np.float32)  # ties everywhere
    yield "hot pixels", np.where(rng.random((350, 350)) < 0.01, 1e6,
                                 rng.standard_normal((350, 350))).astype(np.float32)
    yield "constant", np.full((300, 300), 3.0, dtype=np.float32)
    yield "tiny", rng.standard_normal((3, 5)).astype(np.float32)
    yield "uint16", rng.integers(0, 65535, size=(260, 270)).astype(np.uint16)
    yield "with nan", np.where(rng.random((280, 280)) < 0.001, np.nan,
                               rng.standard_normal((280, 280))).astype(np.float32)
    yield "3d stack", rng.standard_normal((3, 130, 140)).astype(np.float32)


@pytest.mark.parametrize("normalize", ["percentile", "minmax"])
def test_fast_uint8_equals_the_reference(normalize):
    for name, img in _images():
        assert np.array_equal(images.to_uint8(img, normalize), _reference(img, normalize)), name


def test_percentiles_equal_numpy_in_the_tails_and_the_middle():
    rng = np.random.default_rng(3)
    flat = rng.standard_normal(300_000).astype(np.float32)
    qs = (0.0, 0.5, 5.0, 50.0, 95.0, 99.5, 100.0)
    assert images._percentiles(flat, qs) == list(np.percentile(flat.astype(np.float64), qs))
