"""A simulated tomogram: particles of two sizes, gold fiducials and membranes, imaged with a
CTF-like transfer, a missing wedge and noise; the truth of every item.

Frame (DESIGN.md): voxels of the ``mrcfile`` array ``data[z, y, x]``; a position (x, y, z) with
integer values is the centre of voxel ``data[z, y, x]``. Lengths in voxels unless named ``_A``.

How the volume is built (``v`` = voxel size in Å):

1. **Items.** Membranes first (``FacilityConfig.tomo_membranes`` vesicles: spherical lipid
   bilayers, two Gaussian head-group sheets 40 Å apart, σ = 6 Å, radius 0.2–0.4 × the smaller
   of nx, ny, centre possibly outside the volume), then gold fiducials
   (``tomo_gold`` solid 10 nm beads of density 5, the colloidal gold size most labs use), then
   the particles, class by class (largest first): ``tomo_particles[c]`` of diameter
   ``tomo_diameters_A[c]``, each the facility's density shape (:mod:`harvest.synth.density`)
   made at that size, at a random orientation, scaled so that every blob peaks at density 1.
   Particles sit in the central 80 % of z (the ice slab), >= d/2 from every face, never
   overlap each other, a bead or a membrane. Fewer are placed when they do not fit.
2. **Transfer** (Fourier space): ``−|CTF(|k|)| · exp(−k²/k_n² · ln 4)`` — the magnitude of a
   300 kV CTF (Cs 2.7 mm, amplitude contrast 0.1) at the tomogram's defocus (3–5 µm underfocus),
   as in a phase-flipped reconstruction, times a Gaussian envelope at 1/4 at Nyquist (k_n; the
   damping of dose, drift and alignment errors); protein images dark, as in a reconstructed
   tomogram. Low frequencies are weak (amplitude contrast only): a band-pass, as in real data.
3. **Missing wedge** (single tilt axis along y, tilt range ±``tilt_range``°): the projections
   sample every central plane whose normal lies within the tilt range of z, so a Fourier
   component is measured iff ``|k_z| <= tan(tilt_range) · |k_x|``; the others are zeroed.
   The noise is filtered by the same wedge (it is back-projected from the tilt images too).
4. **Noise**: white Gaussian noise, wedge-filtered, scaled so that ``var(signal over particle
   voxels) / var(noise) = tomo_snr`` (particle voxels: within d/2 of a particle centre; the
   signal there is the wedge- and CTF-filtered particle density). The volume is divided by the
   signal's standard deviation there (particle signal of unit variance, as for micrographs).

Why SNR 0.1 by default: it is the per-voxel SNR at which a single slice of a binned tomogram
looks like noise while a whole particle stays detectable (a 17-voxel particle spans ~2,500
voxels: a matched filter over them gains about sqrt(2500 × 0.1) ≈ 16), which is the regime of
real 4–8× binned cellular and lysate tomograms that pickers like cet_pick are built for; the
reference studies' exact figures are not verified here (pickers.md §I).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft

from harvest.synth.config import FacilityConfig
from harvest.synth.density import Density, make_density, random_rotations
from harvest.synth.micrographs import AMP_CONTRAST, CS_MM, VOLTAGE_KV, electron_wavelength_A

GOLD_DIAMETER_A = 100.0  # 10 nm colloidal gold
GOLD_DENSITY = 5.0
BILAYER_HALF_A = 20.0  # head groups 4 nm apart
BILAYER_SIGMA_A = 6.0
SLAB_FRACTION = 0.8  # particles in the central 80 % of z
ENVELOPE_AT_NYQUIST = 0.25
JUNK_KINDS = ("gold", "membrane")


@dataclass
class VolumeTruth:
    """What was placed: ``particles`` (n, 3) true centres (x, y, z) in voxels, ``classes`` (n,)
    the size class of each (index into ``diameters_px``), ``junk`` (m, 3) centres of gold beads
    and membrane vesicles (a vesicle's centre may lie outside the volume), ``junk_kinds`` and
    ``junk_radius`` (voxels: bead radius; vesicle radius at mid-bilayer), the defocus (Å) and the
    noise and signal standard deviations before the final scaling."""

    particles: np.ndarray
    classes: np.ndarray
    diameters_px: list[float]
    junk: np.ndarray
    junk_kinds: list[str]
    junk_radius: np.ndarray
    defocus: float
    signal_std: float = 1.0
    components: dict = field(default_factory=dict)


def voxel_size(config: FacilityConfig) -> float:
    return float(config.pixel_size) * config.tomo_binning


def wedge_mask(shape: tuple[int, int, int], tilt_range_deg: float) -> np.ndarray:
    """Measured Fourier components on the ``rfftn`` grid of a (nz, ny, nx) volume (tilt axis
    y): ``|k_z| <= tan(tilt_range) · |k_x|`` (module docstring, step 3)."""
    nz, ny, nx = shape
    kz = np.abs(np.fft.fftfreq(nz))[:, None, None]
    kx = np.abs(np.fft.rfftfreq(nx))[None, None, :]
    mask = kz <= np.tan(np.deg2rad(tilt_range_deg)) * kx + 1e-12
    return np.broadcast_to(mask, (nz, ny, nx // 2 + 1))


def transfer(shape: tuple[int, int, int], voxel: float, defocus: float) -> np.ndarray:
    """``−|CTF(|k|)| × envelope`` on the rfftn grid (module docstring, step 2)."""
    nz, ny, nx = shape
    kz = np.fft.fftfreq(nz, d=voxel)[:, None, None]
    ky = np.fft.fftfreq(ny, d=voxel)[None, :, None]
    kx = np.fft.rfftfreq(nx, d=voxel)[None, None, :]
    k2 = kx * kx + ky * ky + kz * kz
    lam = electron_wavelength_A(VOLTAGE_KV)
    chi = np.pi * lam * defocus * k2 - 0.5 * np.pi * CS_MM * 1e7 * lam**3 * k2 * k2
    ctf = np.sqrt(1 - AMP_CONTRAST**2) * np.sin(chi) + AMP_CONTRAST * np.cos(chi)
    nyquist2 = (0.5 / voxel) ** 2
    envelope = np.exp(np.log(ENVELOPE_AT_NYQUIST) * k2 / nyquist2)
    return (-np.abs(ctf) * envelope).astype(np.float32)


def _rfftn(vol: np.ndarray) -> np.ndarray:
    """Single-precision FFT on every core (a 512×512×256 volume stays within a few GB)."""
    return fft.rfftn(np.asarray(vol, dtype=np.float32), workers=-1)


def _irfftn(ft: np.ndarray, shape) -> np.ndarray:
    return fft.irfftn(ft, s=shape, axes=(0, 1, 2), workers=-1)


def _splat(shape, pos: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Trilinear deposit of point weights at float (x, y, z) positions (keeps each point's
    centre of mass exactly); points outside the volume are dropped."""
    nz, ny, nx = shape
    vol = np.zeros(shape, dtype=np.float32)
    base = np.floor(pos).astype(int)
    frac = pos - base
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (np.where(dx, frac[:, 0], 1 - frac[:, 0])
                     * np.where(dy, frac[:, 1], 1 - frac[:, 1])
                     * np.where(dz, frac[:, 2], 1 - frac[:, 2])) * weights
                ix, iy, iz = base[:, 0] + dx, base[:, 1] + dy, base[:, 2] + dz
                ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (iz >= 0) & (iz < nz)
                np.add.at(vol, (iz[ok], iy[ok], ix[ok]), w[ok])
    return vol


def _gaussian_ft(shape, sigma: float) -> np.ndarray:
    nz, ny, nx = shape
    k2 = (np.fft.fftfreq(nz)[:, None, None] ** 2 + np.fft.fftfreq(ny)[None, :, None] ** 2
          + np.fft.rfftfreq(nx)[None, None, :] ** 2)
    return np.exp(-2 * np.pi**2 * sigma**2 * k2).astype(np.float32)


def _grid(shape):
    nz, ny, nx = shape
    return (np.arange(nx)[None, None, :], np.arange(ny)[None, :, None],
            np.arange(nz)[:, None, None])


def _place_items(config, shape, voxel, rng):
    """Membranes, gold, then particles by class (largest first); see the module docstring."""
    nz, ny, nx = shape
    half = BILAYER_HALF_A / voxel
    sig = BILAYER_SIGMA_A / voxel
    vesicles = []
    for _ in range(config.tomo_membranes):
        radius = rng.uniform(0.2, 0.4) * min(nx, ny)
        centre = rng.uniform([0, 0, 0.3 * nz], [nx - 1, ny - 1, 0.7 * nz])
        vesicles.append((centre, radius))
    gold_r = GOLD_DIAMETER_A / voxel / 2
    golds: list[np.ndarray] = []
    for _ in range(config.tomo_gold * 50):
        if len(golds) == config.tomo_gold:
            break
        c = rng.uniform([gold_r, gold_r, gold_r], [nx - 1 - gold_r, ny - 1 - gold_r,
                                                     nz - 1 - gold_r])
        if all(np.linalg.norm(c - g) >= 3 * gold_r for g in golds) and all(
                abs(np.linalg.norm(c - vc) - vr) >= gold_r + half + 2 * sig
                for vc, vr in vesicles):
            golds.append(c)
    diam = [d / voxel for d in config.tomo_diameters_A]
    placed: list[tuple[np.ndarray, float]] = []
    classes: list[int] = []
    for c in np.argsort(diam)[::-1]:
        d = diam[c]
        z_lo = max(d / 2, (1 - SLAB_FRACTION) / 2 * (nz - 1))
        z_hi = min(nz - 1 - d / 2, (1 + SLAB_FRACTION) / 2 * (nz - 1))
        lo = np.array([d / 2, d / 2, z_lo])
        hi = np.array([nx - 1 - d / 2, ny - 1 - d / 2, z_hi])
        n = config.tomo_particles[c]
        got = 0
        for _ in range(n * 300):
            if got == n or (hi <= lo).any():
                break
            p = rng.uniform(lo, hi)
            if (all(np.linalg.norm(p - q) >= (d + dq) / 2 for q, dq in placed)
                    and all(np.linalg.norm(p - g) >= d / 2 + gold_r + 1 for g in golds)
                    and all(abs(np.linalg.norm(p - vc) - vr) >= d / 2 + half + 2 * sig
                            for vc, vr in vesicles)):
                placed.append((p, d))
                classes.append(int(c))
                got += 1
    junk = [*golds, *[vc for vc, _ in vesicles]]
    kinds = ["gold"] * len(golds) + ["membrane"] * len(vesicles)
    radius = [gold_r] * len(golds) + [vr for _, vr in vesicles]
    particles = np.asarray([p for p, _ in placed], dtype=np.float64).reshape(-1, 3)
    return (particles, np.asarray(classes, dtype=np.int64), diam,
            np.asarray(junk, dtype=np.float64).reshape(-1, 3), kinds,
            np.asarray(radius, dtype=np.float64))


def _particle_density(shape, particles, classes, diam, densities, voxel, rng) -> np.ndarray:
    """Fourier transform of the particles' density (blobs peaking at 1), per class."""
    total = np.zeros((shape[0], shape[1], shape[2] // 2 + 1), dtype=np.complex64)
    for c, dens in enumerate(densities):
        xyz = particles[classes == c]
        if not len(xyz):
            continue
        sigma = dens.sigma_A / voxel
        rot = random_rotations(len(xyz), rng)
        pos = (np.einsum("nij,kj->nki", rot, dens.centres_A) / voxel
               + xyz[:, None, :]).reshape(-1, 3)
        peak = (2 * np.pi) ** 1.5 * sigma**3  # a unit-amplitude Gaussian blob peaks at 1
        vol = _splat(shape, pos, np.tile(dens.amplitudes * peak, len(xyz)))
        total += _rfftn(vol) * _gaussian_ft(shape, sigma)
    return total


def _window(shape, centre, reach):
    """Slices (z, y, x) of the box within ``reach`` voxels of ``centre`` (None if outside)."""
    sl = []
    for v, n in zip(centre[::-1], shape):
        lo, hi = max(0, int(np.floor(v - reach))), min(n, int(np.ceil(v + reach)) + 1)
        if lo >= hi:
            return None
        sl.append(slice(lo, hi))
    return tuple(sl)


def _junk_density(shape, junk, kinds, radius, voxel) -> np.ndarray:
    x, y, z = _grid(shape)
    vol = np.zeros(shape, dtype=np.float32)
    half = BILAYER_HALF_A / voxel
    sig = BILAYER_SIGMA_A / voxel
    for (cx, cy, cz), kind, r in zip(junk, kinds, radius):
        sl = _window(shape, (cx, cy, cz), r + (3 if kind == "gold" else half + 6 * sig))
        if sl is None:
            continue
        dist = np.sqrt((x[..., sl[2]] - cx) ** 2 + (y[:, sl[1], :] - cy) ** 2
                       + (z[sl[0]] - cz) ** 2)
        if kind == "gold":  # solid bead, edge softened over ~1 voxel
            vol[sl] += GOLD_DENSITY / (1 + np.exp(np.clip((dist - r) / 0.5, -50, 50)))
        else:
            vol[sl] += (np.exp(-((dist - r - half) ** 2) / (2 * sig**2))
                        + np.exp(-((dist - r + half) ** 2) / (2 * sig**2)))
    return vol


def particle_voxels(shape, particles, classes, diam) -> np.ndarray:
    """Boolean mask of voxels within d/2 of a particle centre (d of its class)."""
    x, y, z = _grid(shape)
    mask = np.zeros(shape, dtype=bool)
    for (cx, cy, cz), c in zip(particles, classes):
        r = diam[c] / 2
        sl = _window(shape, (cx, cy, cz), r)
        if sl is None:
            continue
        d2 = (x[..., sl[2]] - cx) ** 2 + (y[:, sl[1], :] - cy) ** 2 + (z[sl[0]] - cz) ** 2
        mask[sl] |= d2 <= r * r
    return mask


def simulate_tomogram(config: FacilityConfig, rng: np.random.Generator,
                      densities: list[Density] | None = None, keep_components: bool = False):
    """A (nz, ny, nx) float32 tomogram and its :class:`VolumeTruth` (module docstring).

    ``densities``: one per size class (default: new ones of ``config.shape`` from ``rng``).
    ``keep_components`` stores the scaled noise-free ``signal`` and ``noise`` volumes in
    ``truth.components`` (their sum is the volume; for tests)."""
    nx, ny, nz = config.tomo_size
    shape = (nz, ny, nx)
    voxel = voxel_size(config)
    if densities is None:
        densities = [make_density(config.shape, d, rng) for d in config.tomo_diameters_A]
    defocus = rng.uniform(30000.0, 50000.0)
    particles, classes, diam, junk, kinds, radius = _place_items(config, shape, voxel, rng)
    rho = _particle_density(shape, particles, classes, diam, densities, voxel, rng)
    junk_ft = _rfftn(_junk_density(shape, junk, kinds, radius, voxel))
    wedge = wedge_mask(shape, config.tilt_range)
    h = transfer(shape, voxel, defocus) * wedge
    particle_signal = _irfftn(rho * h, shape)
    signal = particle_signal + _irfftn(junk_ft * h, shape)
    del rho, junk_ft
    mask = particle_voxels(shape, particles, classes, diam)
    std = float(particle_signal[mask].std()) if mask.any() else float(signal.std()) or 1.0
    white = _rfftn(rng.standard_normal(size=shape, dtype=np.float32)) * wedge
    noise = _irfftn(white, shape)
    del white
    noise *= std / np.sqrt(config.tomo_snr) / noise.std()
    volume = ((signal + noise) / std).astype(np.float32)
    truth = VolumeTruth(particles=particles, classes=classes, diameters_px=diam, junk=junk,
                        junk_kinds=kinds, junk_radius=radius, defocus=float(defocus),
                        signal_std=std)
    if keep_components:
        truth.components = {"signal": signal / std, "particle_signal": particle_signal / std,
                            "noise": noise / std}
    return volume, truth
