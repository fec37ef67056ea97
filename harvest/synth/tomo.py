"""A small RELION 5 tomography project (``relion50_tomo``, written only when requested).

Layout (``DIR/relion50_tomo/``)::

    default_pipeline.star               5.0 style (# version 50001, labels, label depth)
    ImportTomo/job001/tilt_series.star  + tilt_series/TS_01.star (nominal tilts)
    Tomograms/job002/tomograms.star     rlnTomoName, rlnTomoTiltSeriesPixelSize,
                                        rlnTomoSizeX/Y/Z (unbinned px), rlnTomoTomogramBinning,
                                        rlnTomoReconstructedTomogram
    Tomograms/job002/tomograms/rec_TS_01.mrc   the tomogram (128 × 128 × 48 voxels, a volume)
    Picks/job003/particles.star         rlnTomoName, rlnCenteredCoordinateX/Y/ZAngst
    Picks/job003/optimisation_set.star

Frame: truth positions (x, y, z) are voxels of the tomogram file (x = column, y = row,
z = section of the ``mrcfile`` array, origin at the first voxel). The tomogram is binned by
``BINNING`` relative to the tilt series, so (formats.md §5.3, RELION 5 ``particle_set.cpp``)
``x_voxel = (rlnCenteredCoordinateXAngst / rlnTomoTiltSeriesPixelSize + rlnTomoSizeX / 2) /
rlnTomoTomogramBinning``. Picks are the truth plus an error of 0.3–0.9 voxel per axis.
Process and node type labels for tomography jobs are not verified against a real RELION 5
pipeline (formats.md gives only their prefixes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harvest.starwrite import round6, write_star
from harvest.synth.config import FacilityConfig
from harvest.synth.density import make_density, random_rotations
from harvest.synth.micrographs import AMP_CONTRAST, CS_MM, VOLTAGE_KV, write_mrc

TOMO_SHAPE = (48, 128, 128)  # (nz, ny, nx) voxels
BINNING = 4
N_PARTICLES = 12
TOMO_NAME = "TS_01"
STAR_VERSION = 50001
PICKS_JOB = "Picks/job003"

# (job, set name, stage, selection, class_id, recentred), as in the other writers.
EXPECTED_SETS: tuple[tuple[str, str, str, str, int | None, bool], ...] = (
    (PICKS_JOB, "particles", "picked", "tomo_picks", None, False),
)


@dataclass
class SimTomogram:
    """Ground truth of the simulated tomogram: ``particles`` (n, 3) true (x, y, z) in voxels of
    the tomogram file; ``picks`` (n, 3) the stored picks in the same frame; ``pixel_size`` the
    voxel size in Å (tilt-series pixel size × ``binning``)."""

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

    def to_dict(self, root: Path) -> dict:
        return {"key": self.key, "path": str(self.path.relative_to(root)), "nx": self.nx,
                "ny": self.ny, "nz": self.nz, "pixel_size": self.pixel_size,
                "binning": self.binning, "diameter_px": self.diameter_px,
                "particles": self.particles.tolist(), "picks": self.picks.tolist()}

    @classmethod
    def from_dict(cls, d: dict, root: Path) -> SimTomogram:
        return cls(key=d["key"], path=root / d["path"], nx=int(d["nx"]), ny=int(d["ny"]),
                   nz=int(d["nz"]), pixel_size=float(d["pixel_size"]),
                   binning=int(d["binning"]), diameter_px=float(d["diameter_px"]),
                   particles=np.asarray(d["particles"], dtype=np.float64).reshape(-1, 3),
                   picks=np.asarray(d["picks"], dtype=np.float64).reshape(-1, 3))


def simulate_tomogram(config: FacilityConfig, rng: np.random.Generator):
    """A (nz, ny, nx) float32 volume with particles (3D blob densities at random orientations)
    and Gaussian noise (SNR as for micrographs, over the particle voxels), and its truth."""
    nz, ny, nx = TOMO_SHAPE
    voxel = config.pixel_size * BINNING
    d = config.diameter_A / voxel
    density = make_density(config.shape, config.diameter_A, rng)
    lo = np.array([d / 2, d / 2, d / 2])
    hi = np.array([nx - 1 - d / 2, ny - 1 - d / 2, nz - 1 - d / 2])
    centres: list[np.ndarray] = []
    for _ in range(N_PARTICLES * 200):
        if len(centres) == N_PARTICLES or (hi <= lo).any():
            break
        c = rng.uniform(lo, hi)
        if all(np.linalg.norm(c - o) >= d for o in centres):
            centres.append(c)
    xyz = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    # Nearest-voxel deposit of each blob, then a Gaussian of the blob width in Fourier space.
    blobs = np.einsum("nij,kj->nki", random_rotations(len(xyz), rng), density.centres_A)
    pos = (blobs / voxel + xyz[:, None, :]).reshape(-1, 3)
    idx = np.clip(np.rint(pos).astype(int), 0, [nx - 1, ny - 1, nz - 1])
    vol = np.zeros(TOMO_SHAPE)
    np.add.at(vol, (idx[:, 2], idx[:, 1], idx[:, 0]),
              np.tile(density.amplitudes, len(xyz)))
    kz = np.fft.fftfreq(nz)[:, None, None]
    ky = np.fft.fftfreq(ny)[None, :, None]
    kx = np.fft.rfftfreq(nx)[None, None, :]
    sigma = density.sigma_A / voxel
    gauss = np.exp(-2 * np.pi**2 * sigma**2 * (kx**2 + ky**2 + kz**2))
    signal = np.fft.irfftn(np.fft.rfftn(vol) * gauss, s=TOMO_SHAPE, axes=(0, 1, 2))
    zz, yy, xx = np.mgrid[0:nz, 0:ny, 0:nx]
    mask = np.zeros(TOMO_SHAPE, dtype=bool)
    for x, y, z in xyz:
        mask |= (xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2 <= (d / 2) ** 2
    std = float(signal[mask].std()) if mask.any() else 1.0
    noise = rng.normal(scale=std / np.sqrt(config.snr), size=TOMO_SHAPE)
    volume = ((signal + noise) / std).astype(np.float32)
    picks = xyz + rng.uniform(0.3, 0.9, size=xyz.shape) * rng.choice([-1.0, 1.0], size=xyz.shape)
    return volume, xyz, picks, float(d)


def write_tomo_project(root: Path, config: FacilityConfig, rng: np.random.Generator):
    """Write the project under ``root``; returns (project dir, [SimTomogram])."""
    nz, ny, nx = TOMO_SHAPE
    ts_px = float(config.pixel_size)
    volume, xyz, picks, d = simulate_tomogram(config, rng)
    rec = f"Tomograms/job002/tomograms/rec_{TOMO_NAME}.mrc"
    write_mrc(root / rec, volume, ts_px * BINNING)
    size = np.array([nx, ny, nz]) * BINNING  # unbinned tilt-series pixels

    def star(rel, blocks):
        write_star(root / rel, blocks, STAR_VERSION)

    tilts = np.arange(-50, 51, 10)
    star(f"ImportTomo/job001/tilt_series/{TOMO_NAME}.star", [(TOMO_NAME, pd.DataFrame({
        "rlnMicrographMovieName": [f"frames/{TOMO_NAME}_{t:+03d}.tiff" for t in tilts],
        "rlnTomoNominalStageTiltAngle": tilts.astype(float),
        "rlnTomoNominalTiltAxisAngle": 85.0, "rlnMicrographPreExposure": 3.0 * np.arange(
            len(tilts), dtype=float), "rlnTomoNominalDefocus": -4.0}))])
    common = {"rlnTomoName": [TOMO_NAME], "rlnVoltage": [VOLTAGE_KV],
              "rlnSphericalAberration": [CS_MM], "rlnAmplitudeContrast": [AMP_CONTRAST],
              "rlnMicrographOriginalPixelSize": [ts_px], "rlnTomoHand": [-1],
              "rlnTomoTiltSeriesPixelSize": [ts_px],
              "rlnTomoTiltSeriesStarFile": [f"ImportTomo/job001/tilt_series/{TOMO_NAME}.star"]}
    star("ImportTomo/job001/tilt_series.star", [("global", pd.DataFrame(common))])
    star("Tomograms/job002/tomograms.star", [("global", pd.DataFrame({
        **common, "rlnTomoTomogramBinning": [float(BINNING)],
        "rlnTomoSizeX": [int(size[0])], "rlnTomoSizeY": [int(size[1])],
        "rlnTomoSizeZ": [int(size[2])], "rlnTomoReconstructedTomogram": [rec]}))])
    # Centred Å from tomogram voxels: (voxel × binning − size/2) × tilt-series pixel size.
    centred = (picks * BINNING - size / 2.0) * ts_px
    star(f"{PICKS_JOB}/particles.star", [("particles", pd.DataFrame({
        "rlnTomoName": [TOMO_NAME] * len(picks),
        "rlnCenteredCoordinateXAngst": round6(centred[:, 0]),
        "rlnCenteredCoordinateYAngst": round6(centred[:, 1]),
        "rlnCenteredCoordinateZAngst": round6(centred[:, 2])}))])
    star(f"{PICKS_JOB}/optimisation_set.star", [("", {
        "rlnTomoParticlesFile": f"{PICKS_JOB}/particles.star",
        "rlnTomoTomogramsFile": "Tomograms/job002/tomograms.star"})])

    jobs = [("ImportTomo/job001/", "relion.importtomo"),
            ("Tomograms/job002/", "relion.reconstructtomograms"),
            (f"{PICKS_JOB}/", "relion.picktomo")]
    nodes = [("ImportTomo/job001/tilt_series.star",
              "TomogramGroupMetadata.star.relion.tomo.import"),
             ("Tomograms/job002/tomograms.star",
              "TomogramGroupMetadata.star.relion.tomo.reconstructtomograms"),
             (f"{PICKS_JOB}/particles.star",
              "ParticleGroupMetadata.star.relion.tomo.manualpick.particles"),
             (f"{PICKS_JOB}/optimisation_set.star", "OptimisationSet.star.relion.tomo.picktomo")]
    star("default_pipeline.star", [
        ("pipeline_general", {"rlnPipeLineJobCounter": 4}),
        ("pipeline_processes", pd.DataFrame({
            "rlnPipeLineProcessName": [j for j, _ in jobs],
            "rlnPipeLineProcessAlias": ["None"] * 3,
            "rlnPipeLineProcessTypeLabel": [t for _, t in jobs],
            "rlnPipeLineProcessStatusLabel": ["Succeeded"] * 3})),
        ("pipeline_nodes", pd.DataFrame({
            "rlnPipeLineNodeName": [n for n, _ in nodes],
            "rlnPipeLineNodeTypeLabel": [t for _, t in nodes],
            "rlnPipeLineNodeTypeLabelDepth": 1})),
        ("pipeline_input_edges", pd.DataFrame({
            "rlnPipeLineEdgeFromNode": [nodes[0][0], nodes[1][0]],
            "rlnPipeLineEdgeProcess": [jobs[1][0], jobs[2][0]]})),
        ("pipeline_output_edges", pd.DataFrame({
            "rlnPipeLineEdgeProcess": [jobs[0][0], jobs[1][0], jobs[2][0], jobs[2][0]],
            "rlnPipeLineEdgeToNode": [n for n, _ in nodes]})),
    ])
    for job, label in jobs:
        star(f"{job}job.star", [("job", {"rlnJobTypeLabel": label, "rlnJobIsContinue": 0,
                                         "rlnJobIsTomo": 1}),
                                ("joboptions_values", pd.DataFrame({
                                    "rlnJobOptionVariable": ["binned_angpix"],
                                    "rlnJobOptionValue": [str(ts_px * BINNING)]}))])
        (root / job / "note.txt").write_text(f" ++++ with the following command(s): \n{label}\n")
        (root / job / "RELION_JOB_EXIT_SUCCESS").write_text("")
    # The key is the tomogram's name (rlnTomoName), which the picks refer to.
    tomo = SimTomogram(key=TOMO_NAME, path=root / rec, nx=nx, ny=ny, nz=nz,
                       pixel_size=ts_px * BINNING, binning=BINNING, diameter_px=d,
                       particles=xyz, picks=picks)
    return root, [tomo]
