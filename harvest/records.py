"""Plain records that parsers hand to the catalog (and nothing else).

A parser (``harvest.cryosparc``, ``harvest.relion``) works in two steps so that a nightly crawl
re-reads only what changed:

1. ``scan_project(root) -> ProjectScan``: cheap. Reads the project's own bookkeeping
   (``project.json``/``job.json`` files, or ``default_pipeline.star``) and lists every job with
   its status, parents, and the files parsing it would read (``FileStamp`` with size and mtime).
2. ``parse_job(scan, job_key) -> JobRecord``: reads one job's outputs into particle sets and
   micrograph metadata.

The crawler compares each job's ``FileStamp`` list with the catalog's ``files`` table and calls
``parse_job`` only for jobs that are new, changed, or finished since the last crawl. Parsers
never write anything; they raise ``ValueError``/``OSError`` subclasses with a message that names
the file, or record a ``Problem`` and carry on where the rest of the job is still usable.

Coordinates in ``ParticleSetRecord.particles`` follow DESIGN.md: pixels of the referenced
micrograph file, x = column, y = row, no flip. ``x, y`` are the best centre known (recentred
where the job refined shifts); ``raw_x, raw_y`` the position as picked/stored in the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

# Columns of ParticleSetRecord.particles. ``micrograph`` is the micrograph path as written in the
# file; it must equal the ``path`` of one MicrographRecord of the same job or of the project.
PARTICLE_COLUMNS: tuple[str, ...] = (
    "micrograph",  # str (or a pandas Categorical of str, whose codes the catalog uses): path as written
    "x",  # float64 px, recentred centre (== raw_x where no shifts)
    "y",
    "raw_x",  # float64 px, as stored in the source file (after frac->px for CryoSPARC)
    "raw_y",
    "score",  # float64 or NaN: pick score / figure of merit
    "class_id",  # int or -1: 2D/3D class as the package numbers it (CryoSPARC 0-based, RELION 1-based)
    "uid",  # int64: CryoSPARC uid (uint64 viewed as int64) or row number in the source file
)
# Optional 3D columns (tomograms): "z", "raw_z".

# Normalised job kinds (raw job types map to these; data, not branches: see the parsers' tables).
JOB_KINDS: tuple[str, ...] = (
    "import_movies", "import_micrographs", "import_particles", "motion", "ctf", "curate",
    "manual_pick", "auto_pick", "extract", "class2d", "select2d", "select3d",
    "select_micrographs", "select_particles", "remove_duplicates", "split", "class3d", "refine3d",
    "abinitio", "hetero_refine", "postprocess", "tomo_pick", "other",
)


@dataclass(frozen=True)
class FileStamp:
    """A file a job's parse depends on: absolute path, size in bytes, mtime in ns."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> FileStamp:
        st = os.stat(path)
        return cls(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@dataclass
class Problem:
    """Something that could not be read: one row in the catalog's ``problems`` table."""

    path: str
    error: str

    def __str__(self) -> str:
        return f"{self.path}: {self.error}"


@dataclass
class MicrographRecord:
    """A micrograph (or tomogram, with ``nz``) as a job knows it.

    ``path`` is as written in the project's files; ``abs_path`` resolved against the project
    root; ``key`` from :func:`harvest.conventions.micrograph_key`. Pixel size in Å, defocus in Å,
    defocus angle in degrees, CTF max resolution in Å, total motion in **Å** (RELION's
    rlnAccumMotionTotal is in Å; CryoSPARC's trajectories in pixels are multiplied by the
    micrograph pixel size). Filters that think in pixels (PartiNet's < 100 px) divide by
    ``pixel_size``. Unknown values stay None; later jobs of the same project fill them in (the
    catalog merges non-None values by path).
    """

    path: str
    abs_path: str
    key: str
    nx: int | None = None
    ny: int | None = None
    nz: int | None = None
    pixel_size: float | None = None
    defocus_u: float | None = None
    defocus_v: float | None = None
    defocus_angle: float | None = None
    ctf_max_res: float | None = None
    ctf_fom: float | None = None
    total_motion: float | None = None
    exposure_uid: str | None = None
    size_source: str | None = None  # where nx/ny/nz came from: "header" | "metadata"


@dataclass
class ParticleSetRecord:
    """One output particle set of a job, at one curation stage.

    ``name`` is unique within the job (``particles_selected``, ``particles_class_2``,
    ``run_it025_data``, ``coords``). ``stage`` one of :data:`harvest.conventions.STAGES`.
    ``class_id`` is set for per-class sets (heterogeneous refinement, 3D classification).
    ``box_size`` in pixels of the particle images, ``image_pixel_size`` in Å (of the particle
    images, which may be binned relative to the micrographs), voltage kV, Cs mm.
    ``sparse`` is True when the set is known to cover only some particles of its micrographs
    (manual picks); the catalog also derives sparseness per micrograph from stage counts.
    """

    name: str
    stage: str
    particles: pd.DataFrame
    source_file: str
    fingerprint: str = ""
    class_id: int | None = None
    box_size: int | None = None
    image_pixel_size: float | None = None
    voltage: float | None = None
    cs: float | None = None
    amp_contrast: float | None = None
    is_3d: bool = False
    sparse: bool = False


@dataclass
class JobRecord:
    """One parsed job. ``key`` is ``J24`` (CryoSPARC) or ``Refine3D/job025`` (RELION)."""

    key: str
    raw_type: str
    kind: str
    status: str  # completed | failed | running | queued | killed | aborted | unknown
    parents: list[str] = field(default_factory=list)
    title: str = ""
    created_at: str | None = None  # ISO 8601 UTC
    completed_at: str | None = None
    particle_sets: list[ParticleSetRecord] = field(default_factory=list)
    micrographs: list[MicrographRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[FileStamp] = field(default_factory=list)


@dataclass
class JobScan:
    """What ``scan_project`` knows of a job without reading its outputs."""

    key: str
    raw_type: str
    kind: str
    status: str
    parents: list[str] = field(default_factory=list)
    title: str = ""
    created_at: str | None = None
    completed_at: str | None = None
    files: list[FileStamp] = field(default_factory=list)  # what parse_job would read

    @property
    def harvestable(self) -> bool:
        """Only completed jobs are parsed for particles."""
        return self.status == "completed"


@dataclass
class ProjectScan:
    """A project's bookkeeping: root (absolute), software ``cryosparc``/``relion``, version."""

    root: str
    software: str
    version: str
    title: str = ""
    uid: str = ""
    jobs: list[JobScan] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[FileStamp] = field(default_factory=list)  # project-level files (job.json, pipeline)
    extra: dict = field(default_factory=dict)  # parser-private state shared with parse_job


def empty_particles(is_3d: bool = False) -> pd.DataFrame:
    """An empty particles frame with the right columns and dtypes."""
    cols = {
        "micrograph": pd.Series(dtype=object),
        "x": pd.Series(dtype="float64"),
        "y": pd.Series(dtype="float64"),
        "raw_x": pd.Series(dtype="float64"),
        "raw_y": pd.Series(dtype="float64"),
        "score": pd.Series(dtype="float64"),
        "class_id": pd.Series(dtype="int64"),
        "uid": pd.Series(dtype="int64"),
    }
    if is_3d:
        cols["z"] = pd.Series(dtype="float64")
        cols["raw_z"] = pd.Series(dtype="float64")
    return pd.DataFrame(cols)
