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


def _histogram_cases():
    rng = np.random.default_rng(11)
    yield "uniform 300x301", rng.integers(0, 256, (300, 301))
    yield "narrow normal", np.clip(rng.normal(128, 3, (257, 513)), 0, 255)
    yield "wide normal 1024", np.clip(rng.normal(90, 40, (990, 1024)), 0, 255)
    yield "high levels only", rng.integers(250, 256, (64, 64))
    yield "two levels", np.where(rng.random((50, 70)) < 0.01, 255, 0)
    yield "one level", np.full((20, 30), 77)
    yield "one pixel", np.full((1, 1), 200)
    yield "zero and 255", np.tile([0, 255], (8, 5))
    for k in range(40):  # random sizes and level ranges: rounding ties and odd totals
        lo = int(rng.integers(0, 255))
        yield f"random {k}", rng.integers(lo, 256, tuple(rng.integers(1, 200, 2)))


@pytest.mark.parametrize("name,img", list(_histogram_cases()), ids=lambda v: v if
                         isinstance(v, str) else "")
def test_equalize_hist_is_opencvs_bit_for_bit(name, img):
    """The numpy histogram equalisation (no OpenCV import on the pick path) equals
    ``cv2.equalizeHist`` on every pixel, including one-level images and rounding ties."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) is not installed")
    u8 = np.asarray(img, dtype=np.uint8)
    np.testing.assert_array_equal(images.equalize_hist(u8), cv2.equalizeHist(u8), err_msg=name)
