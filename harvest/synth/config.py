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

    def __post_init__(self) -> None:
        # A list from JSON or the CLI becomes the hashable tuple the dataclass promises;
        # numpy scalars become Python numbers (facility.json is plain JSON).
        object.__setattr__(self, "versions", tuple(self.versions))
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
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["versions"] = list(self.versions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FacilityConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
