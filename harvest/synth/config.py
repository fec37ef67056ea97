"""Configuration of a generated facility (what ``cryoglean demo-data`` writes).

All lengths follow DESIGN.md: Å where physical (pixel size, particle diameter), pixels for image
sizes and coordinates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real

# Projects a facility can hold, in the order they are written.
VERSIONS: tuple[str, ...] = ("cryosparc", "relion30", "relion31", "relion40", "relion50")
# Written only when asked for (not part of the default set).
OPTIONAL_VERSIONS: tuple[str, ...] = ("relion50_tomo",)
ALL_VERSIONS: tuple[str, ...] = VERSIONS + OPTIONAL_VERSIONS

# Density shapes of the simulated particle (see harvest.synth.density).
SHAPES: tuple[str, ...] = ("globular", "elongated", "ring")


@dataclass(frozen=True)
class FacilityConfig:
    """What to generate.

    ``nx``, ``ny``: micrograph size in pixels; ``pixel_size``: micrograph pixel size in Å;
    ``diameter_A``: particle diameter in Å; ``particles_per_micrograph``: true particles placed
    on each micrograph (fewer if they do not fit without overlap); ``junk_per_micrograph``:
    ice blobs and aggregates per micrograph (a carbon edge comes on top on every third
    micrograph); ``snr``: variance of the CTF-modulated particle signal over the particle pixels
    divided by the noise variance (see :func:`harvest.synth.micrographs.simulate_micrograph`);
    ``shape``: density shape, one of :data:`SHAPES`; ``versions``: projects to write, from
    :data:`ALL_VERSIONS`.

    Tomograms (``relion50_tomo`` only; :mod:`harvest.synth.tomo_volume`): ``tomograms`` how
    many; ``tomo_size`` (nx, ny, nz) voxels (default small; e.g. 256×256×96 for experiments);
    ``tomo_binning`` tomogram voxel / tilt-series pixel (voxel = ``pixel_size`` × binning Å);
    ``tomo_particles`` particles per tomogram of each size class and ``tomo_diameters_A`` their
    diameters (two classes, one RELION Picks job each); ``tomo_gold`` gold beads and
    ``tomo_membranes`` membrane vesicles per tomogram (unlabelled junk); ``tomo_snr`` particle
    signal variance / noise variance over the particle voxels; ``tilt_range`` ± degrees
    (missing wedge beyond it).
    """

    n_micrographs: int = 6
    # Not square on purpose: a swapped [ny, nx] (CryoSPARC's micrograph_shape) must show.
    nx: int = 576
    ny: int = 448
    pixel_size: float = 1.5
    diameter_A: float = 80.0
    particles_per_micrograph: int = 20
    junk_per_micrograph: int = 4
    snr: float = 1.0
    seed: int = 0
    shape: str = "globular"
    versions: tuple[str, ...] = VERSIONS
    tomograms: int = 1
    tomo_size: tuple[int, int, int] = (128, 128, 48)
    tomo_binning: int = 8
    tomo_particles: tuple[int, int] = (10, 6)
    tomo_diameters_A: tuple[float, float] = (200.0, 120.0)
    tomo_gold: int = 3
    tomo_membranes: int = 1
    tomo_snr: float = 0.1
    tilt_range: float = 60.0

    def __post_init__(self) -> None:
        # A list from JSON or the CLI becomes the hashable tuple the dataclass promises;
        # numpy scalars become Python numbers (facility.json is plain JSON).
        object.__setattr__(self, "versions", tuple(self.versions))
        for name, kind in (("tomo_size", int), ("tomo_particles", int),
                           ("tomo_diameters_A", float)):
            values = tuple(getattr(self, name))
            if all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
                values = tuple(kind(v) if kind is float or float(v).is_integer() else v
                               for v in values)
            object.__setattr__(self, name, values)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Integral) and not isinstance(value, bool):
                object.__setattr__(self, f.name, int(value))
            elif isinstance(value, Real) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value) if f.type == "float" else value)

    @property
    def diameter_px(self) -> float:
        """Particle diameter in micrograph pixels."""
        return self.diameter_A / self.pixel_size

    @property
    def box_px(self) -> int:
        """Extraction box in micrograph pixels: even, about 1.5 × the diameter, divisible by 4
        so the box binned by 2 stays even."""
        return max(8, int(round(1.5 * self.diameter_px / 4.0)) * 4)

    def validate(self) -> FacilityConfig:
        """Raise ValueError (one line naming the field) for values that cannot be generated."""
        positive_ints = ("n_micrographs", "nx", "ny", "particles_per_micrograph")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"FacilityConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.junk_per_micrograph, Integral) or self.junk_per_micrograph < 0:
            raise ValueError(
                f"FacilityConfig.junk_per_micrograph must be an integer >= 0, "
                f"got {self.junk_per_micrograph!r}"
            )
        for name in ("pixel_size", "diameter_A", "snr"):
            value = getattr(self, name)
            if not isinstance(value, Real) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"FacilityConfig.{name} must be a positive number, got {value!r}")
        if self.shape not in SHAPES:
            raise ValueError(
                f"FacilityConfig.shape {self.shape!r} unknown; known: {', '.join(SHAPES)}"
            )
        if not self.versions:
            raise ValueError(
                f"FacilityConfig.versions is empty; choose from {', '.join(ALL_VERSIONS)}"
            )
        for v in self.versions:
            if v not in ALL_VERSIONS:
                raise ValueError(
                    f"FacilityConfig.versions: unknown version {v!r}; "
                    f"known: {', '.join(ALL_VERSIONS)}"
                )
        if len(set(self.versions)) != len(self.versions):
            raise ValueError(f"FacilityConfig.versions lists a version twice: {self.versions!r}")
        if self.diameter_px < 8:
            raise ValueError(
                f"FacilityConfig.diameter_A {self.diameter_A} Å is only {self.diameter_px:.1f} px "
                f"at {self.pixel_size} Å/px; use at least 8 px"
            )
        if 2 * self.diameter_px >= min(self.nx, self.ny):
            raise ValueError(
                f"FacilityConfig: a {self.diameter_px:.0f} px particle does not fit a "
                f"{self.nx}x{self.ny} micrograph with margins; raise nx/ny or lower diameter_A"
            )
        self._validate_tomo()
        return self

    def _validate_tomo(self) -> None:
        """The tomogram fields (checked whatever the versions, so a saved config stays valid)."""
        counts = (*self.tomo_size, *self.tomo_particles, self.tomograms, self.tomo_binning)
        if (len(self.tomo_size) != 3 or len(self.tomo_particles) != 2
                or len(self.tomo_diameters_A) != 2
                or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in counts)):
            raise ValueError(
                "FacilityConfig: tomo_size needs 3 integers (nx, ny, nz), tomo_particles and "
                f"tomo_diameters_A 2 values each; got {self.tomo_size!r}, "
                f"{self.tomo_particles!r}, {self.tomo_diameters_A!r}")
        if min(self.tomo_size) < 16 or self.tomograms < 1 or self.tomo_binning < 1 or min(
                self.tomo_particles) < 1 or self.tomo_gold < 0 or self.tomo_membranes < 0:
            raise ValueError(
                "FacilityConfig: tomograms, tomo_binning and tomo_particles must be >= 1, "
                "tomo_gold/tomo_membranes >= 0 and every tomo_size >= 16 voxels")
        if not 0 < self.tilt_range < 90 or not self.tomo_snr > 0:
            raise ValueError(
                f"FacilityConfig: tilt_range must be in (0, 90) degrees and tomo_snr > 0, got "
                f"{self.tilt_range!r}, {self.tomo_snr!r}")
        voxel = self.pixel_size * self.tomo_binning
        big = max(self.tomo_diameters_A) / voxel
        if min(self.tomo_diameters_A) / voxel < 4 or 2 * big >= min(self.tomo_size):
            raise ValueError(
                f"FacilityConfig: tomo_diameters_A {self.tomo_diameters_A} are "
                f"{', '.join(f'{d / voxel:.1f}' for d in self.tomo_diameters_A)} voxels at "
                f"{voxel:g} Å; each must be >= 4 voxels and fit twice in the smallest "
                f"tomo_size {min(self.tomo_size)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["versions"] = list(self.versions)
        for name in ("tomo_size", "tomo_particles", "tomo_diameters_A"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FacilityConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
