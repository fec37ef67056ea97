"""Simulated micrographs: placement, determinism, CTF convention, SNR definition, centres."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from harvest.synth import FacilityConfig, simulate_micrograph
from harvest.synth.density import make_density, random_rotations
from harvest.synth.micrographs import AMP_CONTRAST, _blob_image, ctf_2d, electron_wavelength_A

SMALL = FacilityConfig(nx=256, ny=192, pixel_size=2.0, diameter_A=60.0,
                       particles_per_micrograph=10, junk_per_micrograph=3)


def test_image_and_truth():
    image, truth = simulate_micrograph(SMALL, np.random.default_rng(1), key="mic_0007",
                                       with_carbon=True)
    assert image.dtype == np.float32 and image.shape == (192, 256)
    assert truth.key == "mic_0007" and (truth.nx, truth.ny) == (256, 192)
    assert len(truth.particles) == 10
    assert len(truth.junk) == len(truth.junk_kinds) >= 3
    assert "carbon_edge" in truth.junk_kinds
    assert set(truth.junk_kinds) <= {"ice", "aggregate", "carbon_edge"}
    d = SMALL.diameter_px
    p = truth.particles
    dist = np.hypot(*(p[:, None, :] - p[None, :, :]).transpose(2, 0, 1))
    assert dist[~np.eye(len(p), dtype=bool)].min() >= d
    assert (p >= d / 2).all() and (p[:, 0] <= 256 - 1 - d / 2).all()
    assert (p[:, 1] <= 192 - 1 - d / 2).all()
    to_junk = np.hypot(*(p[:, None, :] - truth.junk[None, :, :]).transpose(2, 0, 1))
    assert to_junk.min() >= d  # a particle and a junk item never share pixels
    assert truth.defocus_u >= truth.defocus_v > 0


def test_deterministic_and_seeded():
    a, ta = simulate_micrograph(SMALL, np.random.default_rng(5))
    b, tb = simulate_micrograph(SMALL, np.random.default_rng(5))
    c, tc = simulate_micrograph(SMALL, np.random.default_rng(6))
    assert np.array_equal(a, b) and np.array_equal(ta.particles, tb.particles)
    assert not np.array_equal(ta.particles, tc.particles)


def test_snr_is_signal_variance_over_noise_variance():
    """Same seed, two SNRs: only the noise scale differs. The image is in units where the
    CTF-modulated particle signal has unit variance over the particle pixels, so the noise
    has variance 1/snr and the difference of the two images has std |1/√1 − 1/√4| = 0.5."""
    low, _ = simulate_micrograph(replace(SMALL, snr=1.0),
                                 np.random.default_rng(3))
    high, truth = simulate_micrograph(replace(SMALL, snr=4.0),
                                      np.random.default_rng(3))
    assert np.std(low - high) == pytest.approx(0.5, rel=0.02)
    clean, truth = simulate_micrograph(replace(SMALL, snr=1e12),
                                       np.random.default_rng(3))
    yy, xx = np.mgrid[0:192, 0:256]
    mask = np.zeros_like(clean, dtype=bool)
    for x, y in truth.particles:
        mask |= (xx - x) ** 2 + (yy - y) ** 2 <= (SMALL.diameter_px / 2) ** 2
    assert clean[mask].var() == pytest.approx(1.0, rel=0.15)


def test_projection_centre_of_mass_is_the_true_centre():
    """Without CTF, each projection's centre of mass is the particle position (subpixel)."""
    rng = np.random.default_rng(0)
    for shape in ("globular", "elongated", "ring"):
        density = make_density(shape, 60.0, rng)
        centre = np.array([[70.3, 41.7]])
        img = _blob_image(centre, density, random_rotations(1, rng), 2.0, 96, 128,
                          np.ones((96, 65)))
        yy, xx = np.mgrid[0:96, 0:128]
        com = np.array([(img * xx).sum(), (img * yy).sum()]) / img.sum()
        assert np.allclose(com, centre[0], atol=0.02), shape


def test_shapes_differ():
    rng = np.random.default_rng(0)
    def spread(shape):
        c = make_density(shape, 100.0, rng).centres_A
        return np.sort(np.linalg.eigvalsh(np.cov(c.T)))
    elongated = spread("elongated")
    assert elongated[-1] > 5 * elongated[-2]  # a rod
    ring = make_density("ring", 100.0, rng).centres_A
    r = np.linalg.norm(ring, axis=1)
    assert r.std() < 0.15 * r.mean()  # blobs on a circle
    with pytest.raises(ValueError, match="unknown density shape"):
        make_density("cube", 100.0, rng)


def test_ctf_convention():
    """CTF(0) = −A; along the astigmatism angle the defocus is U, across it V."""
    px, u, v, angle = 1.5, 15000.0, 13000.0, 30.0
    ctf = ctf_2d(256, 256, px, u, v, angle)
    assert ctf[0, 0] == pytest.approx(-AMP_CONTRAST)
    lam = electron_wavelength_A(300.0)
    assert lam == pytest.approx(0.019687, abs=1e-5)

    def ctf_1d(k, df):
        chi = np.pi * lam * df * k**2 - 0.5 * np.pi * 2.7e7 * lam**3 * k**4
        return -(np.sqrt(1 - AMP_CONTRAST**2) * np.sin(chi) + AMP_CONTRAST * np.cos(chi))

    # Angles 0 and 90 degrees put U and V on the grid axes.
    ctf0 = ctf_2d(256, 256, px, u, v, 0.0)
    k = np.fft.rfftfreq(256, d=px)
    assert np.allclose(ctf0[0, :], ctf_1d(k, u))  # along x: U
    ky = np.fft.fftfreq(256, d=px)[:129]
    assert np.allclose(ctf0[:129, 0], ctf_1d(np.abs(ky), v))  # along y: V
    ctf90 = ctf_2d(256, 256, px, u, v, 90.0)
    assert np.allclose(ctf90[0, :], ctf_1d(k, v))
    assert not np.allclose(ctf, ctf0)


def test_config_validation():
    for bad in ({"nx": -5}, {"n_micrographs": 0}, {"pixel_size": 0.0}, {"snr": -1.0},
                {"shape": "cube"}, {"versions": ("relion99",)}, {"versions": ()},
                {"diameter_A": 2000.0}):
        with pytest.raises(ValueError, match="FacilityConfig"):
            FacilityConfig(**bad).validate()
