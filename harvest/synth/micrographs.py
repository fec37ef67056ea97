"""Simulated micrographs: particles at known positions, CTF, noise and unlabelled junk.

Frame (DESIGN.md): x = column, y = row of the array ``mrcfile`` returns, in pixels, origin at
the first stored pixel; a position ``(x, y)`` with integer values is the centre of pixel
``data[y, x]``.

A micrograph is built as

1. particle signal: every particle is the projection of the facility's density
   (:mod:`harvest.synth.density`) at a random orientation, centred on its true position
   (the projected centre of mass of the density);
2. the CTF of the micrograph (300 kV, Cs 2.7 mm, amplitude contrast 0.1, defocus U/V/angle)
   applied in Fourier space to the whole signal (particles and aggregates);
3. junk, recorded in ``SimMicrograph.junk`` but never labelled as particles: ``ice`` (dark soft
   discs larger than a particle), ``aggregate`` (clumps of 4–6 overlapping particles) and, on
   every third micrograph, a ``carbon`` strip along one side whose edge is recorded as
   ``carbon_edge`` points;
4. white Gaussian noise with variance ``var(signal) / snr``, where ``signal`` is the
   CTF-modulated particle image (aggregates, ice and carbon excluded) and the variance is taken
   over the particle pixels (pixels within diameter/2 of a true particle centre).

Particles never overlap each other or junk (centre distance >= diameter between particles) and
stay >= diameter/2 from the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harvest.synth.config import FacilityConfig
from harvest.synth.density import Density, make_density, projected_blobs, random_rotations

VOLTAGE_KV = 300.0
CS_MM = 2.7
AMP_CONTRAST = 0.1
JUNK_KINDS: tuple[str, ...] = ("ice", "aggregate", "carbon_edge")


@dataclass
class SimMicrograph:
    """Ground truth of one simulated micrograph.

    ``particles`` (n, 2) and ``junk`` (m, 2): true centres (x, y) in pixels of this micrograph
    (frame in the module docstring); ``junk_kinds``: one of :data:`JUNK_KINDS` per junk row.
    ``pixel_size`` Å/px; defocus U/V in Å (U >= V), ``defocus_angle`` in degrees (RELION's
    rlnDefocusAngle); ``ctf_max_res`` Å; ``total_motion`` in Å (RELION's rlnAccumMotionTotal);
    ``diameter_px`` the particle diameter in pixels. ``path`` is the MRC file once written.
    """

    key: str
    nx: int
    ny: int
    pixel_size: float
    defocus_u: float
    defocus_v: float
    defocus_angle: float
    ctf_max_res: float
    ctf_fom: float
    total_motion: float
    diameter_px: float
    particles: np.ndarray
    junk: np.ndarray
    junk_kinds: list[str] = field(default_factory=list)
    path: Path | None = None

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "path": None if self.path is None else str(self.path),
            "nx": self.nx,
            "ny": self.ny,
            "pixel_size": self.pixel_size,
            "defocus_u": self.defocus_u,
            "defocus_v": self.defocus_v,
            "defocus_angle": self.defocus_angle,
            "ctf_max_res": self.ctf_max_res,
            "ctf_fom": self.ctf_fom,
            "total_motion": self.total_motion,
            "diameter_px": self.diameter_px,
            "particles": self.particles.tolist(),
            "junk": self.junk.tolist(),
            "junk_kinds": list(self.junk_kinds),
        }

    @classmethod
    def from_dict(cls, d: dict, root: Path | None = None) -> SimMicrograph:
        """From :meth:`to_dict`; a relative ``path`` is resolved against ``root``."""
        path = d.get("path")
        if path is not None:
            path = Path(path)
            if root is not None and not path.is_absolute():
                path = root / path
        return cls(
            key=d["key"],
            nx=int(d["nx"]),
            ny=int(d["ny"]),
            pixel_size=float(d["pixel_size"]),
            defocus_u=float(d["defocus_u"]),
            defocus_v=float(d["defocus_v"]),
            defocus_angle=float(d["defocus_angle"]),
            ctf_max_res=float(d["ctf_max_res"]),
            ctf_fom=float(d["ctf_fom"]),
            total_motion=float(d["total_motion"]),
            diameter_px=float(d["diameter_px"]),
            particles=np.asarray(d["particles"], dtype=np.float64).reshape(-1, 2),
            junk=np.asarray(d["junk"], dtype=np.float64).reshape(-1, 2),
            junk_kinds=list(d.get("junk_kinds", [])),
            path=path,
        )


# ---------------------------------------------------------------------------------------------
# CTF
# ---------------------------------------------------------------------------------------------


def electron_wavelength_A(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å (0.0197 Å at 300 kV)."""
    v = voltage_kv * 1e3
    return 12.2643247 / np.sqrt(v * (1.0 + 0.978466e-6 * v))


def ctf_2d(
    ny: int, nx: int, pixel_size: float, defocus_u: float, defocus_v: float, angle_deg: float,
    voltage_kv: float = VOLTAGE_KV, cs_mm: float = CS_MM,
    amp_contrast: float = AMP_CONTRAST,
) -> np.ndarray:
    """CTF on the ``rfft2`` grid of an (ny, nx) image, shape (ny, nx // 2 + 1).

    ``−(sqrt(1 − A²) sin χ + A cos χ)`` with ``χ = π λ Δf(θ) k² − π/2 Cs λ³ k⁴`` and the
    astigmatic defocus ``Δf(θ) = (U + V)/2 + (U − V)/2 cos 2(θ − angle)`` (the CTFFIND/RELION
    convention; underfocus positive, so a positive density images dark).
    """
    lam = electron_wavelength_A(voltage_kv)
    cs_A = cs_mm * 1e7
    kx = np.fft.rfftfreq(nx, d=pixel_size)[None, :]
    ky = np.fft.fftfreq(ny, d=pixel_size)[:, None]
    k2 = kx * kx + ky * ky
    theta = np.arctan2(ky, kx)
    defocus = 0.5 * (defocus_u + defocus_v) + 0.5 * (defocus_u - defocus_v) * np.cos(
        2.0 * (theta - np.deg2rad(angle_deg))
    )
    chi = np.pi * lam * defocus * k2 - 0.5 * np.pi * cs_A * lam**3 * k2 * k2
    return -(np.sqrt(1.0 - amp_contrast**2) * np.sin(chi) + amp_contrast * np.cos(chi))


# ---------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------


@dataclass
class _Carbon:
    """A carbon strip: points with ``(r − origin) · normal < 0`` are on carbon."""

    origin: np.ndarray
    normal: np.ndarray

    def signed_distance(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, dtype=np.float64) - self.origin) @ self.normal


def _make_carbon(nx: int, ny: int, diameter_px: float, rng: np.random.Generator) -> _Carbon:
    side = int(rng.integers(4))  # 0 left, 1 right, 2 top (low y), 3 bottom
    base = (0.0, np.pi, 0.5 * np.pi, -0.5 * np.pi)[side]
    angle = base + rng.uniform(-0.15, 0.15)
    normal = np.array([np.cos(angle), np.sin(angle)])
    extent = (nx, nx, ny, ny)[side]
    width = max(rng.uniform(0.12, 0.2) * extent, 0.6 * diameter_px)
    centre = np.array([nx / 2.0, ny / 2.0])
    origin = centre - normal * (extent / 2.0 - width)
    return _Carbon(origin=origin, normal=normal)


def _place(
    n: int, radius: float, taken: list[tuple[np.ndarray, float]], nx: int, ny: int,
    margin: float, rng: np.random.Generator, carbon: _Carbon | None, attempts: int = 400,
) -> list[np.ndarray]:
    """Up to n centres with disc ``radius`` that overlap no disc in ``taken`` (appended to),
    stay ``margin`` px inside the image and keep their disc off the carbon."""
    placed: list[np.ndarray] = []
    for _ in range(n):
        for _ in range(attempts):
            c = rng.uniform([margin, margin], [nx - 1 - margin, ny - 1 - margin])
            if carbon is not None and carbon.signed_distance(c) < radius:
                continue
            if all(np.hypot(*(c - t)) >= radius + r for t, r in taken):
                taken.append((c, radius))
                placed.append(c)
                break
    return placed


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _window(x: float, y: float, radius: float, ny: int, nx: int):
    """Slice of the image around (x, y) reaching ``radius`` px, and each pixel's distance
    from (x, y) inside it."""
    x0, x1 = max(int(np.floor(x - radius)), 0), min(int(np.ceil(x + radius)) + 1, nx)
    y0, y1 = max(int(np.floor(y - radius)), 0), min(int(np.ceil(y + radius)) + 1, ny)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return (slice(y0, y1), slice(x0, x1)), np.hypot(xx - x, yy - y)


def _splat(ny: int, nx: int, xy: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Bilinear deposit of point weights at subpixel positions (keeps their centre of mass)."""
    x, y = xy[:, 0], xy[:, 1]
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    out = np.zeros(ny * nx)
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)
    ):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
        out += np.bincount(yi[ok] * nx + xi[ok], weights=(weights * w)[ok], minlength=ny * nx)
    return out.reshape(ny, nx)


def _blob_image(
    centres_px: np.ndarray, density: Density, rotations: np.ndarray, pixel_size: float,
    ny: int, nx: int, transfer: np.ndarray,
) -> np.ndarray:
    """Projections of the density at ``centres_px`` (n, 2) with ``rotations`` (n, 3, 3), blurred
    by the blob Gaussian and multiplied by ``transfer`` (the CTF) in Fourier space."""
    if len(centres_px) == 0:
        return np.zeros((ny, nx))
    blobs = projected_blobs(density, rotations) / pixel_size + centres_px[:, None, :]
    weights = np.broadcast_to(density.amplitudes, blobs.shape[:2]).reshape(-1)
    deposit = _splat(ny, nx, blobs.reshape(-1, 2), weights)
    kx = np.fft.rfftfreq(nx)[None, :]
    ky = np.fft.fftfreq(ny)[:, None]
    sigma_px = density.sigma_A / pixel_size
    gauss = np.exp(-2.0 * np.pi**2 * sigma_px**2 * (kx * kx + ky * ky))
    return np.fft.irfft2(np.fft.rfft2(deposit) * gauss * transfer, s=(ny, nx))


def simulate_micrograph(
    config: FacilityConfig,
    rng: np.random.Generator,
    key: str = "mic_0001",
    density: Density | None = None,
    with_carbon: bool = False,
) -> tuple[np.ndarray, SimMicrograph]:
    """One micrograph image (float32, shape (ny, nx)) and its ground truth.

    ``density`` defaults to a new random density of ``config.shape`` drawn from ``rng``; a
    facility shares one density between its micrographs. ``with_carbon`` adds a carbon strip.
    See the module docstring for what is simulated and how SNR is defined.
    """
    config.validate()
    nx, ny, px = config.nx, config.ny, float(config.pixel_size)
    d = config.diameter_px
    if density is None:
        density = make_density(config.shape, config.diameter_A, rng)

    defocus_u = rng.uniform(10000.0, 25000.0)
    defocus_v = defocus_u - rng.uniform(100.0, 800.0)
    defocus_angle = rng.uniform(-90.0, 90.0)
    ctf_max_res = max(rng.uniform(3.0, 6.0), 2.2 * px)
    ctf_fom = rng.uniform(0.08, 0.3)
    total_motion = rng.uniform(8.0, 40.0)

    carbon = _make_carbon(nx, ny, d, rng) if with_carbon else None
    taken: list[tuple[np.ndarray, float]] = []
    junk: list[np.ndarray] = []
    kinds: list[str] = []
    if carbon is not None:
        along = np.array([-carbon.normal[1], carbon.normal[0]])
        extent = min(nx, ny)
        for u in (-0.3, 0.0, 0.3):
            p = carbon.origin + along * u * extent
            if d / 2 <= p[0] <= nx - 1 - d / 2 and d / 2 <= p[1] <= ny - 1 - d / 2:
                taken.append((p, d / 2))
                junk.append(p)
                kinds.append("carbon_edge")
    ice_radius: list[float] = []
    for kind in rng.choice(["ice", "aggregate"], size=config.junk_per_micrograph):
        radius = rng.uniform(0.6, 1.0) * d if kind == "ice" else 0.9 * d
        got = _place(1, radius, taken, nx, ny, max(radius, d / 2), rng, carbon)
        if got:
            junk.append(got[0])
            kinds.append(str(kind))
            if kind == "ice":
                ice_radius.append(radius)
    particles = _place(config.particles_per_micrograph, d / 2, taken, nx, ny, d / 2, rng, carbon)
    particles_xy = np.asarray(particles, dtype=np.float64).reshape(-1, 2)
    junk_xy = np.asarray(junk, dtype=np.float64).reshape(-1, 2)

    transfer = ctf_2d(ny, nx, px, defocus_u, defocus_v, defocus_angle)
    signal = _blob_image(
        particles_xy, density, random_rotations(len(particles_xy), rng), px, ny, nx, transfer
    )
    # Aggregates: 4-6 particles clumped around each aggregate centre.
    agg_centres = [c for c, k in zip(junk_xy, kinds) if k == "aggregate"]
    clump: list[np.ndarray] = []
    for c in agg_centres:
        m = int(rng.integers(4, 7))
        clump.extend(c + rng.normal(scale=0.3 * d, size=(m, 2)))
    clump_xy = np.asarray(clump, dtype=np.float64).reshape(-1, 2)
    aggregates = _blob_image(
        clump_xy, density, random_rotations(len(clump_xy), rng), px, ny, nx, transfer
    )

    particle_pixels = np.zeros((ny, nx), dtype=bool)
    for x, y in particles_xy:
        window, r = _window(x, y, d / 2, ny, nx)
        particle_pixels[window] |= r <= d / 2
    signal_var = float(signal[particle_pixels].var()) if particle_pixels.any() else 1.0
    signal_std = np.sqrt(signal_var) if signal_var > 0 else 1.0

    background = np.zeros((ny, nx))
    for (x, y), radius in zip([c for c, k in zip(junk_xy, kinds) if k == "ice"], ice_radius):
        window, r = _window(x, y, radius + 20.0, ny, nx)  # the soft edge is ~2 px wide
        background[window] -= 3.0 * signal_std / (1.0 + np.exp((r - radius) / 2.0))
    if carbon is not None:
        yy, xx = np.mgrid[0:ny, 0:nx]
        s = ((xx - carbon.origin[0]) * carbon.normal[0]
             + (yy - carbon.origin[1]) * carbon.normal[1])
        background -= 1.5 * signal_std / (1.0 + np.exp(np.clip(s / 1.5, -50, 50)))

    # Scaled so that the particle signal has unit variance over the particle pixels.
    noise = rng.normal(scale=np.sqrt(signal_var / config.snr), size=(ny, nx))
    image = ((signal + aggregates + background + noise) / signal_std).astype(np.float32)
    truth = SimMicrograph(
        key=key, nx=nx, ny=ny, pixel_size=px,
        defocus_u=float(defocus_u), defocus_v=float(defocus_v),
        defocus_angle=float(defocus_angle), ctf_max_res=float(ctf_max_res),
        ctf_fom=float(ctf_fom), total_motion=float(total_motion), diameter_px=float(d),
        particles=particles_xy, junk=junk_xy, junk_kinds=kinds,
    )
    return image, truth


def write_mrc(path: Path, image: np.ndarray, pixel_size: float, stack: bool = False) -> None:
    """Write a float32 MRC with the voxel size set (Å). A 3D array is a volume, or an image
    stack (ispg 0, as particle stacks are) with ``stack=True``."""
    import mrcfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(image, dtype=np.float32))
        if stack:
            mrc.set_image_stack()
        mrc.voxel_size = pixel_size
        # A fixed label instead of mrcfile's timestamped one keeps files reproducible.
        mrc.header.label[0] = b"cryoglean demo-data: simulated image"
        mrc.header.nlabl = 1
