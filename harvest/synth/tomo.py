"""A RELION 5 tomography project (``relion50_tomo``, written only when requested).

Layout (``DIR/relion50_tomo/``), ``TS_01`` … one per ``FacilityConfig.tomograms``::

    default_pipeline.star               5.0 style (# version 50001, labels, label depth)
    ImportTomo/job001/tilt_series.star  + tilt_series/TS_NN.star (nominal tilts, ±tilt_range)
    Tomograms/job002/tomograms.star     rlnTomoName, rlnTomoTiltSeriesPixelSize,
                                        rlnTomoSizeX/Y/Z (unbinned px), rlnTomoTomogramBinning,
                                        rlnTomoReconstructedTomogram
    Tomograms/job002/tomograms/rec_TS_NN.mrc   the tomograms (:mod:`harvest.synth.tomo_volume`)
    Picks/job003/  size class 0 (the larger particles)  ┐ annotations/TS_NN_particles.star,
    Picks/job004/  size class 1 (the smaller ones)      ┘ particles.star, optimisation_set.star

One Picks job per particle species, as a RELION 5 user picks them. Gold beads and membranes are
in the tomograms and in the truth, never picked.

How the Picks files are written follows RELION 5's picking program ([relion]
``tomography_python_programs/get_particle_poses/particles.py``): the annotations hold
``rlnCoordinateX/Y/Z`` in voxels of the binned tomogram (where the user clicked: truth + an
error of 0.3–0.6 voxel per axis, random sign), and particles.star (``data_particles``, written
by the ``starfile`` package: no ``# version`` line) holds ``rlnTomoName`` and
``rlnCenteredCoordinateX/Y/ZAngst = voxel × tilt-series px × binning − (rlnTomoSize / 2 − 1) ×
tilt-series px``; optimisation_set.star is a one-row loop (``data_optimisation_set``).

Frame: truth positions (x, y, z) are voxels of the tomogram file (x = column, y = row,
z = section of the ``mrcfile`` array, origin at the first voxel). RELION's C++ code (and the
harvester, formats.md §5.3) reads the centred coordinates back as ``(Å / tilt-series px +
rlnTomoSize / 2) / binning``, which is the clicked voxel + 1/binning (the "− 1" of the Python
writer; 3dem/relion issues #1137, #1280). ``SimTomogram.picks`` are those harvested positions,
within 0.3–0.6 + 1/binning voxel of the truth per axis.
Process and node type labels for tomography jobs are not verified against a real RELION 5
pipeline (formats.md gives only their prefixes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harvest.starwrite import round6, star_text, write_star
from harvest.synth.config import FacilityConfig
from harvest.synth.density import make_density
from harvest.synth.micrographs import AMP_CONTRAST, CS_MM, VOLTAGE_KV, write_mrc
from harvest.synth.tomo_volume import simulate_tomogram, voxel_size

STAR_VERSION = 50001
PICKS_JOBS = ("Picks/job003", "Picks/job004")  # size class 0, 1
PICKS_JOB = PICKS_JOBS[0]
TILT_STEP = 3.0  # degrees, dose-symmetric schemes' usual increment

# (job, set name, stage, selection, class_id, recentred), as in the other writers.
EXPECTED_SETS: tuple[tuple[str, str, str, str, int | None, bool], ...] = tuple(
    (job, "particles", "picked", f"tomo_picks_{c}", None, False)
    for c, job in enumerate(PICKS_JOBS)
)


def tomo_name(i: int) -> str:
    return f"TS_{i + 1:02d}"


@dataclass
class SimTomogram:
    """Ground truth of one simulated tomogram: ``particles`` (n, 3) true (x, y, z) in voxels of
    the tomogram file, ``classes`` (n,) their size class (0 = larger, Picks/job003; 1 =
    Picks/job004), ``diameters_px`` per class; ``picks`` (n, 3) the positions the harvester
    reads from the Picks jobs (module docstring), row for row; ``junk`` (m, 3) centres of the
    unlabelled ``junk_kinds`` (``gold``, ``membrane``: a vesicle centre, maybe outside the
    volume) with ``junk_radius`` in voxels; ``pixel_size`` the voxel size in Å (tilt-series
    pixel size × ``binning``); ``snr`` and ``tilt_range`` as generated. ``diameter_px`` is the
    larger class's diameter."""

    key: str
    path: Path
    nx: int
    ny: int
    nz: int
    pixel_size: float
    binning: int
    diameter_px: float
    particles: np.ndarray
    picks: np.ndarray
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    diameters_px: list = field(default_factory=list)
    junk: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    junk_kinds: list = field(default_factory=list)
    junk_radius: np.ndarray = field(default_factory=lambda: np.zeros(0))
    defocus: float = float("nan")
    snr: float = float("nan")
    tilt_range: float = float("nan")

    def to_dict(self, root: Path) -> dict:
        return {"key": self.key, "path": str(self.path.relative_to(root)), "nx": self.nx,
                "ny": self.ny, "nz": self.nz, "pixel_size": self.pixel_size,
                "binning": self.binning, "diameter_px": self.diameter_px,
                "particles": self.particles.tolist(), "picks": self.picks.tolist(),
                "classes": self.classes.tolist(), "diameters_px": list(self.diameters_px),
                "junk": self.junk.tolist(), "junk_kinds": list(self.junk_kinds),
                "junk_radius": self.junk_radius.tolist(), "defocus": self.defocus,
                "snr": self.snr, "tilt_range": self.tilt_range}

    @classmethod
    def from_dict(cls, d: dict, root: Path) -> SimTomogram:
        particles = np.asarray(d["particles"], dtype=np.float64).reshape(-1, 3)
        return cls(key=d["key"], path=root / d["path"], nx=int(d["nx"]), ny=int(d["ny"]),
                   nz=int(d["nz"]), pixel_size=float(d["pixel_size"]),
                   binning=int(d["binning"]), diameter_px=float(d["diameter_px"]),
                   particles=particles,
                   picks=np.asarray(d["picks"], dtype=np.float64).reshape(-1, 3),
                   classes=np.asarray(d.get("classes", [0] * len(particles)), dtype=np.int64),
                   diameters_px=[float(v) for v in d.get("diameters_px", [d["diameter_px"]])],
                   junk=np.asarray(d.get("junk", []), dtype=np.float64).reshape(-1, 3),
                   junk_kinds=list(d.get("junk_kinds", [])),
                   junk_radius=np.asarray(d.get("junk_radius", []), dtype=np.float64),
                   defocus=float(d.get("defocus", np.nan)), snr=float(d.get("snr", np.nan)),
                   tilt_range=float(d.get("tilt_range", np.nan)))


def _starfile_text(blocks) -> str:
    """STAR text as the ``starfile`` package writes it (RELION 5's Python programs): a comment
    line, no ``# version`` line."""
    return "# Created by the starfile Python package (cryoglean demo-data)\n\n" + star_text(
        blocks, None)


def write_tomo_project(root: Path, config: FacilityConfig, rng: np.random.Generator):
    """Write the project under ``root``; returns (project dir, [SimTomogram])."""
    nx, ny, nz = config.tomo_size
    binning = config.tomo_binning
    ts_px = float(config.pixel_size)
    voxel = voxel_size(config)
    size = np.array([nx, ny, nz]) * binning  # unbinned tilt-series pixels
    densities = [make_density(config.shape, d, rng) for d in config.tomo_diameters_A]
    names = [tomo_name(i) for i in range(config.tomograms)]
    recs = [f"Tomograms/job002/tomograms/rec_{n}.mrc" for n in names]

    def star(rel, blocks, version=STAR_VERSION):
        write_star(root / rel, blocks, version)

    tilts = np.arange(-config.tilt_range, config.tilt_range + 1e-6, TILT_STEP)
    tomos: list[SimTomogram] = []
    for name, rec in zip(names, recs):
        volume, truth = simulate_tomogram(config, rng, densities)
        write_mrc(root / rec, volume, voxel)
        clicked = truth.particles + rng.uniform(0.3, 0.6, size=truth.particles.shape) * \
            rng.choice([-1.0, 1.0], size=truth.particles.shape)
        tomos.append(SimTomogram(
            key=name, path=root / rec, nx=nx, ny=ny, nz=nz, pixel_size=voxel, binning=binning,
            diameter_px=float(truth.diameters_px[0]), particles=truth.particles,
            picks=clicked + 1.0 / binning, classes=truth.classes,
            diameters_px=[float(v) for v in truth.diameters_px], junk=truth.junk,
            junk_kinds=truth.junk_kinds, junk_radius=truth.junk_radius,
            defocus=truth.defocus, snr=float(config.tomo_snr),
            tilt_range=float(config.tilt_range)))
        star(f"ImportTomo/job001/tilt_series/{name}.star", [(name, pd.DataFrame({
            "rlnMicrographMovieName": [f"frames/{name}_{t:+05.1f}.tiff" for t in tilts],
            "rlnTomoNominalStageTiltAngle": tilts.astype(float),
            "rlnTomoNominalTiltAxisAngle": 85.0,
            "rlnMicrographPreExposure": 3.0 * np.argsort(np.argsort(np.abs(tilts))).astype(
                float),
            "rlnTomoNominalDefocus": -round(truth.defocus / 1e4, 2)}))])
        # annotations: clicked voxels, one file per tomogram and species
        for c, job in enumerate(PICKS_JOBS):
            rows = clicked[truth.classes == c]
            (root / job / "annotations").mkdir(parents=True, exist_ok=True)
            (root / job / "annotations" / f"{name}_particles.star").write_text(
                _starfile_text([("", pd.DataFrame({
                    "rlnTomoName": [name] * len(rows),
                    "rlnCoordinateX": round6(rows[:, 0]), "rlnCoordinateY": round6(rows[:, 1]),
                    "rlnCoordinateZ": round6(rows[:, 2])}))]))

    common = {"rlnTomoName": names, "rlnVoltage": VOLTAGE_KV,
              "rlnSphericalAberration": CS_MM, "rlnAmplitudeContrast": AMP_CONTRAST,
              "rlnMicrographOriginalPixelSize": ts_px, "rlnTomoHand": -1,
              "rlnTomoTiltSeriesPixelSize": ts_px,
              "rlnTomoTiltSeriesStarFile": [f"ImportTomo/job001/tilt_series/{n}.star"
                                            for n in names]}
    star("ImportTomo/job001/tilt_series.star", [("global", pd.DataFrame(common))])
    star("Tomograms/job002/tomograms.star", [("global", pd.DataFrame({
        **common, "rlnTomoTomogramBinning": float(binning),
        "rlnTomoSizeX": int(size[0]), "rlnTomoSizeY": int(size[1]),
        "rlnTomoSizeZ": int(size[2]), "rlnTomoReconstructedTomogram": recs}))])
    for c, job in enumerate(PICKS_JOBS):
        frames = []
        for t in tomos:
            clicked = (t.picks - 1.0 / binning)[t.classes == c]
            # particles.py: voxel × (px × binning) − (size / 2 − 1) × px
            centred = clicked * (ts_px * binning) - (size / 2.0 - 1.0) * ts_px
            frames.append(pd.DataFrame({
                "rlnTomoName": [t.key] * len(centred),
                "rlnCenteredCoordinateXAngst": round6(centred[:, 0]),
                "rlnCenteredCoordinateYAngst": round6(centred[:, 1]),
                "rlnCenteredCoordinateZAngst": round6(centred[:, 2])}))
        (root / job / "particles.star").write_text(
            _starfile_text([("particles", pd.concat(frames, ignore_index=True))]))
        (root / job / "optimisation_set.star").write_text(_starfile_text([(
            "optimisation_set", pd.DataFrame({
                "rlnTomoParticlesFile": [f"{job}/particles.star"],
                "rlnTomoTomogramsFile": ["Tomograms/job002/tomograms.star"]}))]))
    _write_pipeline(root, ts_px * binning, star)
    return root, tomos


def _write_pipeline(root: Path, binned_px: float, star) -> None:
    jobs = [("ImportTomo/job001/", "relion.importtomo"),
            ("Tomograms/job002/", "relion.reconstructtomograms"),
            *[(f"{j}/", "relion.picktomo") for j in PICKS_JOBS]]
    nodes = [("ImportTomo/job001/tilt_series.star",
              "TomogramGroupMetadata.star.relion.tomo.import"),
             ("Tomograms/job002/tomograms.star",
              "TomogramGroupMetadata.star.relion.tomo.reconstructtomograms")]
    outputs = [(jobs[0][0], nodes[0][0]), (jobs[1][0], nodes[1][0])]
    inputs = [(nodes[0][0], jobs[1][0])]
    for j in PICKS_JOBS:
        nodes += [(f"{j}/particles.star",
                   "ParticleGroupMetadata.star.relion.tomo.manualpick.particles"),
                  (f"{j}/optimisation_set.star", "OptimisationSet.star.relion.tomo.picktomo")]
        outputs += [(f"{j}/", f"{j}/particles.star"), (f"{j}/", f"{j}/optimisation_set.star")]
        inputs.append((nodes[1][0], f"{j}/"))
    star("default_pipeline.star", [
        ("pipeline_general", {"rlnPipeLineJobCounter": len(jobs) + 1}),
        ("pipeline_processes", pd.DataFrame({
            "rlnPipeLineProcessName": [j for j, _ in jobs],
            "rlnPipeLineProcessAlias": ["None"] * len(jobs),
            "rlnPipeLineProcessTypeLabel": [t for _, t in jobs],
            "rlnPipeLineProcessStatusLabel": ["Succeeded"] * len(jobs)})),
        ("pipeline_nodes", pd.DataFrame({
            "rlnPipeLineNodeName": [n for n, _ in nodes],
            "rlnPipeLineNodeTypeLabel": [t for _, t in nodes],
            "rlnPipeLineNodeTypeLabelDepth": 1})),
        ("pipeline_input_edges", pd.DataFrame({
            "rlnPipeLineEdgeFromNode": [n for n, _ in inputs],
            "rlnPipeLineEdgeProcess": [p for _, p in inputs]})),
        ("pipeline_output_edges", pd.DataFrame({
            "rlnPipeLineEdgeProcess": [p for p, _ in outputs],
            "rlnPipeLineEdgeToNode": [n for _, n in outputs]})),
    ])
    for job, label in jobs:
        star(f"{job}job.star", [("job", {"rlnJobTypeLabel": label, "rlnJobIsContinue": 0,
                                         "rlnJobIsTomo": 1}),
                                ("joboptions_values", pd.DataFrame({
                                    "rlnJobOptionVariable": ["binned_angpix"],
                                    "rlnJobOptionValue": [str(binned_px)]}))])
        (root / job / "note.txt").write_text(f" ++++ with the following command(s): \n{label}\n")
        (root / job / "RELION_JOB_EXIT_SUCCESS").write_text("")
