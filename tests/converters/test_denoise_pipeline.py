"""converters.denoise.denoise_image against the plain transcription in denoise_reference.py.

Equality rule (the module's promise): the same uint8 output, or at most 1 grey level apart on at
most 0.1 % of the pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
from denoise_reference import denoise_reference, gaussian_kernel, nl_means, standard_scaler
from denoise_reference import transform as ref_transform
from denoise_reference import wiener_filter as ref_wiener

from converters import denoise as dn


def blobs_on_noise(shape, seed, n_blobs=30, sigma_px=6.0, amplitude=2.0, dtype=np.float32):
    """Gaussian blobs ("particles") on white noise with a slow gradient, like a micrograph."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    y, x = np.mgrid[:ny, :nx]
    img = rng.normal(size=shape) + 0.5 * x / nx
    for cy, cx in zip(rng.uniform(0, ny, n_blobs), rng.uniform(0, nx, n_blobs)):
        img += amplitude * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma_px**2))
    return img.astype(dtype)


def assert_equal_rule(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.dtype == np.uint8 and ref.dtype == np.uint8
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1, f"max difference {diff.max()} grey levels"
    frac = np.count_nonzero(diff) / diff.size
    assert frac <= 0.001, f"{frac:.4%} of pixels differ"


CASES = [
    ("noise 256x256", lambda: np.random.default_rng(1).normal(size=(256, 256)).astype(np.float32)),
    ("blobs 300x212 (non-square)", lambda: blobs_on_noise((300, 212), seed=2)),
    ("blobs 212x300 (wide)", lambda: blobs_on_noise((212, 300), seed=3)),
    ("blobs 512x512", lambda: blobs_on_noise((512, 512), seed=4, n_blobs=80)),
    ("odd 97x131", lambda: blobs_on_noise((97, 131), seed=5, n_blobs=5)),
    (
        "int16 counts",
        lambda: (blobs_on_noise((160, 176), seed=6) * 300 + 1000).astype(np.int16),
    ),
    (
        "float16",
        lambda: blobs_on_noise((128, 144), seed=7).astype(np.float16),
    ),
]


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_module_matches_reference(name, make):
    img = make()
    ours = dn.denoise_image(img)
    assert ours.shape == img.shape and ours.dtype == np.uint8
    assert_equal_rule(ours, denoise_reference(img))
    assert ours.min() == 0 and ours.max() == 255  # the final min-max stretch


def test_constant_image_gives_zeros():
    img = np.full((64, 80), 3.25, dtype=np.float32)
    ref = denoise_reference(img)
    ours = dn.denoise_image(img)
    assert_equal_rule(ours, ref)
    assert not ours.any()


def test_constant_uint16_image_gives_zeros():
    ours = dn.denoise_image(np.full((40, 48), 7, dtype=np.uint16))
    assert ours.shape == (40, 48) and not ours.any()


def test_input_is_not_modified():
    img = blobs_on_noise((96, 96), seed=8)
    before = img.copy()
    dn.denoise_image(img)
    np.testing.assert_array_equal(img, before)


def test_legacy_flip_is_partinet_100():
    """PartiNet 1.0.0 flipped the micrograph (``rot90(a.T)`` == ``flipud(a)``) before denoising."""
    img = blobs_on_noise((120, 136), seed=9)
    a = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(np.rot90(a.T), np.flipud(a))
    legacy = dn.denoise_image(img, legacy_flip=True)
    assert_equal_rule(legacy, denoise_reference(img, legacy_flip=True))
    np.testing.assert_array_equal(legacy, dn.denoise_image(np.flipud(img)))
    assert not np.array_equal(legacy, dn.denoise_image(img))


def test_legacy_flip_is_roughly_flipud_of_normal_output():
    """Not exactly flipud(normal): the Wiener step's (-4, -4) px shift reverses with the flip,
    so the two differ by an 8-row offset (and CLAHE tiles); after undoing it they agree."""
    img = blobs_on_noise((256, 256), seed=10, n_blobs=40, sigma_px=10, amplitude=6)
    normal = dn.denoise_image(img).astype(float)
    legacy = dn.denoise_image(img, legacy_flip=True).astype(float)
    aligned = np.roll(np.flipud(normal), -8, axis=0)
    inner = (slice(16, -16), slice(16, -16))
    assert np.corrcoef(legacy[inner].ravel(), aligned[inner].ravel())[0, 1] > 0.95


def test_stages_match_reference_exactly():
    img = blobs_on_noise((200, 168), seed=11)
    scaled = dn._standard_scaler(img.copy())
    np.testing.assert_array_equal(scaled, standard_scaler(img))
    smoothed = nl_means(scaled)
    ref = ref_wiener(smoothed, gaussian_kernel())
    ours = dn._wiener(smoothed, threads=1)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 * ref.max())
    np.testing.assert_array_equal(dn._transform_inplace(ours.copy()), ref_transform(ref))


def test_wiener_shift_is_minus_four_pixels():
    """An impulse at (y, x) lands, blurred, centred at (y - 4, x - 4) (kernel at the origin)."""
    img = np.zeros((64, 64), dtype=np.uint8)
    img[30, 40] = 255
    out = dn._wiener(img, threads=1)
    assert np.unravel_index(np.argmax(out), out.shape) == (26, 36)
    np.testing.assert_allclose(out, ref_wiener(img, gaussian_kernel()), atol=1e-12)


def test_wiener_filter_real_is_the_reference_transfer_function():
    shape = (48, 37)
    h = np.fft.fft2(gaussian_kernel(), s=shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    phase = np.exp(2j * np.pi * 4 * (ky + kx))  # conj of the 4-px delay of the top-left kernel
    g = np.conj(h) / (np.abs(h) ** 2 + 30.0)
    np.testing.assert_allclose(
        (g / phase)[:, : shape[1] // 2 + 1], dn.wiener_filter_real(shape), atol=1e-14
    )


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((3, 32, 32), np.float32), "2-D"),
        (np.zeros((5, 64), np.float32), "smaller than"),
        (np.full((32, 32), np.nan, np.float32), "NaN"),
        (np.zeros((32, 32), np.complex64), "pixel type"),
    ],
)
def test_bad_arrays_raise_one_line(bad, match):
    with pytest.raises(dn.DenoiseInputError, match=match):
        dn.denoise_image(bad)


def test_timings_are_reported_per_stage():
    timings: dict[str, float] = {}
    dn.denoise_image(blobs_on_noise((64, 64), seed=12), timings=timings)
    stages = {"scale", "nlm", "wiener", "clahe", "guided"}
    assert set(timings) == stages | {"cpu:" + s for s in stages}
    assert all(t >= 0 for t in timings.values())


def test_real_particle_image_matches_reference(realdata):
    """Real cryo-EM noise: the first 320x320 EMPIAR-10076 particle image of cryoDRGN's test
    stack (read in place; GPL files are not copied)."""
    import mrcfile
    from conftest import realfile

    path = realfile(realdata, "ml-struct-bio/cryodrgn", "tests/data/empiar_10076_7.mrc")
    with mrcfile.open(path, permissive=True) as mrc:
        img = np.array(mrc.data[0], dtype=np.float32)
    ours = dn.denoise_image(img)
    assert_equal_rule(ours, denoise_reference(img))
    averaged, _ = dn.read_micrograph(path)  # a 3-D stack is averaged like movie frames
    with mrcfile.open(path, permissive=True) as mrc:
        np.testing.assert_allclose(averaged, mrc.data.astype(np.float64).mean(axis=0), rtol=1e-5)


def test_equality_rule_can_fail():
    base = np.zeros((100, 100), np.uint8)
    two_levels = base.copy()
    two_levels[0, 0] = 2
    with pytest.raises(AssertionError, match="max difference"):
        assert_equal_rule(two_levels, base)
    many = base.copy()
    many.flat[:11] = 1  # 0.11 % of 10 000 pixels
    with pytest.raises(AssertionError, match="differ"):
        assert_equal_rule(many, base)
    few = base.copy()
    few.flat[:10] = 1  # 0.10 %: allowed
    assert_equal_rule(few, base)


def test_output_content_is_displaced_about_minus_three_pixels():
    """Documented PartiNet property kept for equality: Wiener kernel at the origin (-4 px) plus
    two even 20 px box means (+0.5 px each) move features by ~(-3, -3) px (y and x)."""
    rng = np.random.default_rng(13)
    ny, nx = 256, 256
    y, x = np.mgrid[:ny, :nx]
    shifts = []
    for cy, cx in [(128.0, 128.0), (100.0, 150.0), (80.3, 170.7), (170.0, 90.0)]:
        img = 0.05 * rng.normal(size=(ny, nx)) + np.exp(
            -((y - cy) ** 2 + (x - cx) ** 2) / (2 * 6.0**2)
        )
        out = dn.denoise_image(img.astype(np.float32)).astype(float)
        w = np.clip(out - np.median(out), 0, None)
        w[w < 0.5 * w.max()] = 0
        shifts.append(((w * y).sum() / w.sum() - cy, (w * x).sum() / w.sum() - cx))
    shifts = np.array(shifts)
    assert np.all(np.abs(shifts + 3.0) < 1.0), shifts
    assert np.all(np.abs(shifts.mean(axis=0) + 3.0) < 0.5), shifts
