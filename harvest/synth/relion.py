"""Generated RELION projects in the flavours of RELION 3.0, 3.1, 4.0 and 5.0.

Long module: the job chain below, one writer step per job on shared ``_Project`` helpers (the
per-micrograph motion metadata lives in :mod:`harvest.synth.motion`).

Jobs (the same in every flavour; ``DIR/relion30/`` etc.)::

    Import/job001      movies.star (Movies/<key>.mrc, links to DIR/micrographs)
    MotionCorr/job002  corrected_micrographs.star (rlnAccumMotionTotal/Early/Late);
                       Movies/<key>.mrc -> ../../../../micrographs/<key>.mrc;
                       Movies/<key>.star motion metadata (harvest.synth.motion)
    CtfFind/job003     micrographs_ctf.star (defocus U/V/angle, rlnCtfMaxResolution)
    ManualPick/job004  Movies/<key>_manualpick.star; 3.x coords_suffix_manualpick.star,
                       4/5 manualpick.star (data_coordinate_files); micrographs_selected.star
    AutoPick/job005    Movies/<key>_autopick.star (rlnAutopickFigureOfMerit);
                       3.x coords_suffix_autopick.star, 4/5 autopick.star
    Extract/job006     particles.star + Movies/<key>.mrcs (binned by 2)
    Class2D/job007     run_it000/_it020/_it025_data.star (rlnClassNumber 1-based, origins)
    Select/job008      particles.star (selected classes only), backup_selection.star
    Class3D/job009     run_it025_data.star (2 classes, origins)
    Refine3D/job010    run_data.star (origins)
    Class2D/job011     failed: no outputs; RELION_JOB_EXIT_FAILURE (3.1+), status Failed (3.1+)
                       or running (3.0, which has no failed status)

Flavours (formats.md §4-5): 3.0 has no ``# version`` line, integer process/node types, single
``data_images`` particle tables with ``rlnMagnification``/``rlnDetectorPixelSize`` and origins
``rlnOriginX/Y`` in particle pixels, ``run.job`` and no exit files. 3.1 adds ``# version 30001``,
``data_optics`` + ``data_particles`` with ``rlnImagePixelSize`` and ``rlnOriginXAngst/YAngst``,
``job.star``, ``RELION_JOB_EXIT_SUCCESS``. 4.0 uses process/status/node labels and
``manualpick.star``/``autopick.star`` coordinate-file lists. 5.0 writes ``# version 50001`` and
``_rlnPipeLineNodeTypeLabelDepth``. The micrograph pixel size is in the optics table of the
micrograph STAR files (``rlnMicrographPixelSize``, 3.1+) or ``rlnDetectorPixelSize × 1e4 /
rlnMagnification`` (3.0); particle optics carry ``rlnImagePixelSize`` and
``rlnMicrographOriginalPixelSize`` (equal to the micrograph pixel size here: no motion-correction
binning).

Coordinates ``rlnCoordinateX/Y`` are micrograph pixels (DESIGN.md frame), 6 decimals; origins are
set so that ``X − rlnOriginXAngst / micrograph_px`` (3.1+) or ``X − rlnOriginX × particle_px /
micrograph_px`` (3.0) is the true centre (< 0.01 px) in the final iteration of every job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harvest.starwrite import round6, write_star
from harvest.synth.config import FacilityConfig
from harvest.synth.micrographs import AMP_CONTRAST, CS_MM, VOLTAGE_KV, SimMicrograph, write_mrc
from harvest.synth.motion import motion_metadata
from harvest.synth.scenario import N_CLASSES_2D, Scenario
from harvest.synth.stacks import EXTRACT_BINNING, extract_stack

# (job, set name, stage, selection in the scenario, class_id, recentred); see harvest.synth.
EXPECTED_SETS: tuple[tuple[str, str, str, str, int | None, bool], ...] = (
    ("ManualPick/job004", "coords", "picked", "manual", None, False),
    ("AutoPick/job005", "coords", "picked", "auto", None, False),
    ("Extract/job006", "particles", "extracted", "extracted", None, False),
    ("Class2D/job007", "run_it025_data", "classified2d", "extracted", None, True),
    ("Select/job008", "particles", "selected2d", "selected", None, True),
    ("Select/job008", "rejected", "rejected2d", "rejected", None, True),
    # class_id as RELION numbers it (rlnClassNumber, 1-based)
    ("Class3D/job009", "class_1", "classified3d", "class3d_0", 1, True),
    ("Class3D/job009", "class_2", "classified3d", "class3d_1", 2, True),
    ("Refine3D/job010", "run_data", "refined", "selected", None, True),
)

DETECTOR_PIXEL_UM = 5.0  # RELION 3.0: pixel size = rlnDetectorPixelSize × 1e4 / rlnMagnification


@dataclass(frozen=True)
class Flavour:
    """What differs between RELION versions (data, not branches in the writers)."""

    name: str
    star_version: int | None  # "# version N" line; None: none (3.0)
    optics: bool  # data_optics + data_particles/micrographs (3.1+) vs one table (3.0)
    labels: bool  # 4.0+: process/status/node type labels instead of integers
    node_depth: bool  # 5.0: _rlnPipeLineNodeTypeLabelDepth
    exit_files: bool  # 3.1+: RELION_JOB_EXIT_SUCCESS / _FAILURE
    coordinate_lists: bool  # 4.0+: manualpick.star / autopick.star instead of coords_suffix_*
    failed_status: int  # status code of the failed job (3.0 has no failed state: 0 running)
    node_labels: dict[str, str]  # node kind -> 4.0/5.0 label


_NODE_LABELS_40 = {
    "movies": "MicrographMoviesData.star.relion",
    "micrographs_motion": "MicrographsData.star.relion.motioncorr",
    "micrographs_ctf": "MicrographsData.star.relion.ctf",
    "micrographs": "MicrographsData.star.relion",
    "coords_manual": "MicrographsCoords.star.relion.manualpick",
    "coords_auto": "MicrographsCoords.star.relion.autopick",
    "particles": "ParticlesData.star.relion",
    "particles_class2d": "ParticlesData.star.relion.class2d",
    "particles_class3d": "ParticlesData.star.relion.class3d",
    "particles_refine3d": "ParticlesData.star.relion.refine3d",
}
_NODE_LABELS_50 = {
    "movies": "MicrographMovieGroupMetadata.star.relion",
    "micrographs_motion": "MicrographGroupMetadata.star.relion.motioncorr",
    "micrographs_ctf": "MicrographGroupMetadata.star.relion.ctf",
    "micrographs": "MicrographGroupMetadata.star.relion",
    "coords_manual": "MicrographCoordsGroup.star.relion.manualpick",
    "coords_auto": "MicrographCoordsGroup.star.relion.autopick",
    "particles": "ParticleGroupMetadata.star.relion",
    "particles_class2d": "ParticleGroupMetadata.star.relion.class2d",
    "particles_class3d": "ParticleGroupMetadata.star.relion.class3d",
    "particles_refine3d": "ParticleGroupMetadata.star.relion.refine3d",
}
FLAVOURS: dict[str, Flavour] = {
    "relion30": Flavour("relion30", None, False, False, False, False, False, 0, {}),
    "relion31": Flavour("relion31", 30001, True, False, False, True, False, 3, {}),
    "relion40": Flavour("relion40", 30001, True, True, False, True, True, 3, _NODE_LABELS_40),
    "relion50": Flavour("relion50", 50001, True, True, True, True, True, 3, _NODE_LABELS_50),
}

# 3.x integer node types (pipeline_jobs.h): node kind -> code
NODE_TYPES_3X = {
    "movies": 0, "micrographs_motion": 1, "micrographs_ctf": 1, "micrographs": 1,
    "coords_manual": 2, "coords_auto": 2, "particles": 3, "particles_class2d": 3,
    "particles_class3d": 3, "particles_refine3d": 3,
}
# job directory -> (3.x process type code, 4.0+ process type label)
PROCESS_TYPES = {
    "Import": (0, "relion.import.movies"),
    "MotionCorr": (1, "relion.motioncorr.own"),
    "CtfFind": (2, "relion.ctffind.ctffind4"),
    "ManualPick": (3, "relion.manualpick"),
    "AutoPick": (4, "relion.autopick.log"),
    "Extract": (5, "relion.extract"),
    "Select": (7, "relion.select.interactive"),
    "Class2D": (8, "relion.class2d"),
    "Class3D": (9, "relion.class3d"),
    "Refine3D": (10, "relion.refine3d"),
}
STATUS_LABELS = {0: "Running", 1: "Scheduled", 2: "Succeeded", 3: "Failed", 4: "Aborted"}
SUCCEEDED = 2
FAILED = 3
# 3.1+: the file a finished job leaves in its directory (pipeline_control.h)
EXIT_FILES = {SUCCEEDED: "RELION_JOB_EXIT_SUCCESS", FAILED: "RELION_JOB_EXIT_FAILURE",
              4: "RELION_JOB_EXIT_ABORTED"}


@dataclass
class _Job:
    name: str  # "Extract/job006"
    status: int
    inputs: list[tuple[str, str]]  # (node file, node kind)
    outputs: list[tuple[str, str]]


class _Project:
    def __init__(self, root: Path, flavour: Flavour, config: FacilityConfig,
                 micrographs: list[SimMicrograph], scenario: Scenario,
                 rng: np.random.Generator):
        self.root = root
        self.fl = flavour
        self.config = config
        self.mics = {m.key: m for m in micrographs}
        self.scenario = scenario
        self.rng = rng
        self.jobs: list[_Job] = []
        self.mic_px = float(config.pixel_size)
        self.particle_px = float(config.pixel_size * EXTRACT_BINNING)
        self.box = scenario.box_px // EXTRACT_BINNING

    # -- files ---------------------------------------------------------------------------------

    def star(self, rel: str, blocks) -> None:
        write_star(self.root / rel, blocks, self.fl.star_version)

    def add_job(self, name: str, inputs, outputs, status: int = SUCCEEDED,
                options: dict | None = None, command: str = "") -> None:
        self.jobs.append(_Job(name, status, list(inputs), list(outputs)))
        job_dir = self.root / name
        job_dir.mkdir(parents=True, exist_ok=True)
        kind = name.split("/")[0]
        code, label = PROCESS_TYPES[kind]
        opts = {"do_queue": "No", "min_dedicated": 1, **(options or {})}
        if self.fl.star_version is None:
            text = [f"job_type == {code}", "is_continue == false"]
            text += [f"{k} == {v}" for k, v in opts.items()]
            (job_dir / "run.job").write_text("\n".join(text) + "\n")
        else:
            job = ({"rlnJobTypeLabel": label, "rlnJobIsContinue": 0, "rlnJobIsTomo": 0}
                   if self.fl.labels else {"rlnJobType": code, "rlnJobIsContinue": 0})
            values = pd.DataFrame({"rlnJobOptionVariable": list(opts),
                                   "rlnJobOptionValue": [str(v) for v in opts.values()]})
            self.star(f"{name}/job.star", [("job", job), ("joboptions_values", values)])
        note = (f" ++++ Executing new job on Thu Jan  1 00:00:00 2026\n"
                f" ++++ with the following command(s): \n{command or 'relion_' + kind.lower()}"
                f" --o {name}/\n ++++ \n")
        (job_dir / "note.txt").write_text(note)
        marker = EXIT_FILES.get(status)
        if self.fl.exit_files and marker:
            (job_dir / marker).write_text("")

    def write_pipeline(self) -> None:
        fl = self.fl
        processes = pd.DataFrame({
            "rlnPipeLineProcessName": [f"{j.name}/" for j in self.jobs],
            "rlnPipeLineProcessAlias": ["None"] * len(self.jobs),
        })
        if fl.labels:
            processes["rlnPipeLineProcessTypeLabel"] = [
                PROCESS_TYPES[j.name.split("/")[0]][1] for j in self.jobs]
            processes["rlnPipeLineProcessStatusLabel"] = [STATUS_LABELS[j.status]
                                                          for j in self.jobs]
        else:
            processes["rlnPipeLineProcessType"] = [PROCESS_TYPES[j.name.split("/")[0]][0]
                                                   for j in self.jobs]
            processes["rlnPipeLineProcessStatus"] = [j.status for j in self.jobs]
        node_rows: dict[str, str] = {}
        for j in self.jobs:
            for node, kind in j.outputs:
                node_rows[node] = kind
        nodes = pd.DataFrame({"rlnPipeLineNodeName": list(node_rows)})
        if fl.labels:
            nodes["rlnPipeLineNodeTypeLabel"] = [fl.node_labels[k] for k in node_rows.values()]
            if fl.node_depth:
                nodes["rlnPipeLineNodeTypeLabelDepth"] = 1
        else:
            nodes["rlnPipeLineNodeType"] = [NODE_TYPES_3X[k] for k in node_rows.values()]
        inputs = pd.DataFrame(
            [(node, f"{j.name}/") for j in self.jobs for node, _ in j.inputs],
            columns=["rlnPipeLineEdgeFromNode", "rlnPipeLineEdgeProcess"])
        outputs = pd.DataFrame(
            [(f"{j.name}/", node) for j in self.jobs for node, _ in j.outputs],
            columns=["rlnPipeLineEdgeProcess", "rlnPipeLineEdgeToNode"])
        self.star("default_pipeline.star", [
            ("pipeline_general", {"rlnPipeLineJobCounter": len(self.jobs) + 1}),
            ("pipeline_processes", processes),
            ("pipeline_nodes", nodes),
            ("pipeline_input_edges", inputs),
            ("pipeline_output_edges", outputs),
        ])

    # -- tables --------------------------------------------------------------------------------

    def mic_name(self, key: str) -> str:
        return f"MotionCorr/job002/Movies/{key}.mrc"

    def optics_micrographs(self) -> pd.DataFrame:
        return pd.DataFrame({
            "rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
            "rlnMicrographOriginalPixelSize": [self.mic_px], "rlnVoltage": [VOLTAGE_KV],
            "rlnSphericalAberration": [CS_MM], "rlnAmplitudeContrast": [AMP_CONTRAST],
            "rlnMicrographPixelSize": [self.mic_px],
        })

    def optics_particles(self) -> pd.DataFrame:
        optics = pd.DataFrame({
            "rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
            "rlnMicrographOriginalPixelSize": [self.mic_px], "rlnVoltage": [VOLTAGE_KV],
            "rlnSphericalAberration": [CS_MM], "rlnAmplitudeContrast": [AMP_CONTRAST],
            "rlnImagePixelSize": [self.particle_px], "rlnImageSize": [self.box],
            "rlnImageDimensionality": [2],
        })
        if self.fl.labels:
            optics["rlnCtfDataAreCtfPremultiplied"] = 0
        return optics

    def micrograph_table(self, with_ctf: bool) -> pd.DataFrame:
        mics = list(self.mics.values())
        t: dict = {"rlnMicrographName": [self.mic_name(m.key) for m in mics]}
        t["rlnMicrographMetadata"] = [f"MotionCorr/job002/Movies/{m.key}.star" for m in mics]
        if self.fl.optics:
            t["rlnOpticsGroup"] = 1
        t["rlnAccumMotionTotal"] = [m.total_motion for m in mics]
        t["rlnAccumMotionEarly"] = [0.3 * m.total_motion for m in mics]
        t["rlnAccumMotionLate"] = [0.7 * m.total_motion for m in mics]
        if with_ctf:
            t["rlnCtfImage"] = [f"CtfFind/job003/Movies/{m.key}.ctf:mrc" for m in mics]
            t["rlnDefocusU"] = [m.defocus_u for m in mics]
            t["rlnDefocusV"] = [m.defocus_v for m in mics]
            t["rlnCtfAstigmatism"] = [m.defocus_u - m.defocus_v for m in mics]
            t["rlnDefocusAngle"] = [m.defocus_angle for m in mics]
            if not self.fl.optics:
                t["rlnVoltage"] = VOLTAGE_KV
                t["rlnSphericalAberration"] = CS_MM
                t["rlnAmplitudeContrast"] = AMP_CONTRAST
                t["rlnMagnification"] = DETECTOR_PIXEL_UM * 1e4 / self.mic_px
                t["rlnDetectorPixelSize"] = DETECTOR_PIXEL_UM
            t["rlnCtfFigureOfMerit"] = [m.ctf_fom for m in mics]
            t["rlnCtfMaxResolution"] = [m.ctf_max_res for m in mics]
        return pd.DataFrame(t, index=pd.RangeIndex(len(mics)))

    def micrograph_blocks(self, table: pd.DataFrame) -> list:
        if self.fl.optics:
            return [("optics", self.optics_micrographs()), ("micrographs", table)]
        return [("", table)]

    def particle_table(self, rows: pd.DataFrame, refined: str | None, class_col=None,
                       exact: bool = True) -> pd.DataFrame:
        """Particle rows in RELION's columns. ``refined``: None (extraction), "2d" or "3d"
        adds angles and origins; ``class_col`` a scenario column for rlnClassNumber (0-based
        there, 1-based here). Origins are exact unless ``exact`` is False (early iterations).
        """
        fl = self.fl
        mics = [self.mics[k] for k in rows["micrograph"]]
        n = len(rows)
        x = round6(rows["auto_x"])
        y = round6(rows["auto_y"])
        t: dict = {"rlnCoordinateX": x, "rlnCoordinateY": y}
        t["rlnAutopickFigureOfMerit"] = rows["auto_score"].to_numpy()
        if class_col is not None:
            t["rlnClassNumber"] = rows[class_col].to_numpy() + 1
        t["rlnAnglePsi"] = self.rng.uniform(-180, 180, size=n) if refined else -999.0
        t["rlnImageName"] = [f"{i + 1:06d}@Extract/job006/Movies/{k}.mrcs"
                             for i, k in zip(rows["stack_idx"], rows["micrograph"])]
        t["rlnMicrographName"] = [self.mic_name(m.key) for m in mics]
        if fl.optics:
            t["rlnOpticsGroup"] = 1
        else:
            t["rlnVoltage"] = VOLTAGE_KV
        t["rlnCtfMaxResolution"] = [m.ctf_max_res for m in mics]
        t["rlnCtfFigureOfMerit"] = [m.ctf_fom for m in mics]
        t["rlnDefocusU"] = [m.defocus_u for m in mics]
        t["rlnDefocusV"] = [m.defocus_v for m in mics]
        t["rlnDefocusAngle"] = [m.defocus_angle for m in mics]
        t["rlnCtfBfactor"] = 0.0
        t["rlnCtfScalefactor"] = 1.0
        t["rlnPhaseShift"] = 0.0
        if not fl.optics:
            t["rlnSphericalAberration"] = CS_MM
            t["rlnAmplitudeContrast"] = AMP_CONTRAST
            t["rlnMagnification"] = DETECTOR_PIXEL_UM * 1e4 / self.particle_px
            t["rlnDetectorPixelSize"] = DETECTOR_PIXEL_UM
        if refined:
            t["rlnGroupNumber"] = 1
            t["rlnAngleRot"] = self.rng.uniform(-180, 180, size=n) if refined == "3d" else 0.0
            t["rlnAngleTilt"] = self.rng.uniform(0, 180, size=n) if refined == "3d" else 0.0
            # Offsets in micrograph pixels from the truth, from the values as written.
            dx = x - rows["x"].to_numpy()
            dy = y - rows["y"].to_numpy()
            if not exact:
                dx = dx + self.rng.normal(scale=0.4, size=n)
                dy = dy + self.rng.normal(scale=0.4, size=n)
            if fl.optics:
                t["rlnOriginXAngst"] = dx * self.mic_px
                t["rlnOriginYAngst"] = dy * self.mic_px
            else:
                t["rlnOriginX"] = dx * self.mic_px / self.particle_px
                t["rlnOriginY"] = dy * self.mic_px / self.particle_px
            t["rlnNormCorrection"] = 1.0
            t["rlnLogLikeliContribution"] = self.rng.uniform(1e4, 2e4, size=n)
            t["rlnMaxValueProbDistribution"] = self.rng.uniform(0.2, 1.0, size=n)
            t["rlnNrOfSignificantSamples"] = self.rng.integers(1, 20, size=n)
            if refined == "3d":
                t["rlnRandomSubset"] = self.rng.integers(1, 3, size=n)
        return pd.DataFrame(t, index=pd.RangeIndex(n))

    def particle_blocks(self, table: pd.DataFrame) -> list:
        if self.fl.optics:
            return [("optics", self.optics_particles()), ("particles", table)]
        return [("images", table)]


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(target, link.parent), link)


def _coordinate_file(p: _Project, rows: pd.DataFrame, manual: bool) -> pd.DataFrame:
    """One micrograph's picks as RELION's per-micrograph coordinate STAR writes them."""
    xs, ys = ("manual_x", "manual_y") if manual else ("auto_x", "auto_y")
    t = pd.DataFrame({"rlnCoordinateX": round6(rows[xs]), "rlnCoordinateY": round6(rows[ys])})
    if manual:
        # 3.x stores the selection type in rlnClassNumber, 4.0+ in rlnParticleSelectionType.
        t["rlnParticleSelectionType" if p.fl.labels else "rlnClassNumber"] = 2
        t["rlnAnglePsi"] = -999.0
        t["rlnAutopickFigureOfMerit"] = -999.0
    else:
        t["rlnClassNumber"] = 0
        t["rlnAutopickFigureOfMerit"] = rows["auto_score"].to_numpy()
        t["rlnAnglePsi"] = -999.0
    return t


def _picks_job(p: _Project, job: str, kind: str, selection: pd.DataFrame, manual: bool):
    """ManualPick / AutoPick: per-micrograph coordinate files plus the list node."""
    suffix = "manualpick" if manual else "autopick"
    listed = []
    for key in p.mics:
        rows = selection[selection["micrograph"] == key]
        rel = f"{job}/Movies/{key}_{suffix}.star"
        p.star(rel, [("", _coordinate_file(p, rows, manual))])
        listed.append((p.mic_name(key), rel))
    outputs = []
    if p.fl.coordinate_lists:
        node = f"{job}/{suffix}.star"
        p.star(node, [("coordinate_files", pd.DataFrame(
            listed, columns=["rlnMicrographName", "rlnMicrographCoordinates"]))])
    else:
        # RELION 3.x: the suffix file holds the path of the input micrographs STAR.
        node = f"{job}/coords_suffix_{suffix}.star"
        (p.root / node).write_text("CtfFind/job003/micrographs_ctf.star\n")
    outputs.append((node, "coords_manual" if manual else "coords_auto"))
    if manual:
        sel = f"{job}/micrographs_selected.star"
        p.star(sel, p.micrograph_blocks(p.micrograph_table(with_ctf=True)))
        outputs.append((sel, "micrographs"))
    p.add_job(job, [("CtfFind/job003/micrographs_ctf.star", "micrographs_ctf")], outputs,
              options={"diameter": p.config.diameter_A}, command=f"relion_{kind}")


def write_relion_project(
    root: Path, version: str, config: FacilityConfig, micrographs: list[SimMicrograph],
    scenario: Scenario, images: dict[str, np.ndarray], rng: np.random.Generator,
) -> Path:
    """Write one RELION project (``version`` one of :data:`FLAVOURS`) under ``root``."""
    if version not in FLAVOURS:
        raise ValueError(f"unknown RELION flavour {version!r}; known: {', '.join(FLAVOURS)}")
    p = _Project(root, FLAVOURS[version], config, micrographs, scenario, rng)
    root.mkdir(parents=True, exist_ok=True)
    fl = p.fl

    # Import/job001: movies (links to the shared micrographs stand in for movies)
    for m in micrographs:
        _link(root / "Movies" / f"{m.key}.mrc", m.path)
        _link(root / "MotionCorr/job002/Movies" / f"{m.key}.mrc", m.path)
    movies = pd.DataFrame({"rlnMicrographMovieName": [f"Movies/{m.key}.mrc" for m in micrographs]})
    if fl.optics:
        movies["rlnOpticsGroup"] = 1
        optics = p.optics_micrographs().drop(columns=["rlnMicrographPixelSize"])
        optics["rlnMicrographOriginalPixelSize"] = p.mic_px
        p.star("Import/job001/movies.star", [("optics", optics), ("movies", movies)])
    else:
        p.star("Import/job001/movies.star", [("", movies)])
    p.add_job("Import/job001", [], [("Import/job001/movies.star", "movies")],
              options={"fn_in_raw": "Movies/*.mrc", "angpix": p.mic_px})

    # MotionCorr/job002 and CtfFind/job003 (+ RELION's per-micrograph motion metadata)
    for m in micrographs:
        p.star(f"MotionCorr/job002/Movies/{m.key}.star", motion_metadata(m, p.mic_px))
    p.star("MotionCorr/job002/corrected_micrographs.star",
           p.micrograph_blocks(p.micrograph_table(with_ctf=False)))
    p.add_job("MotionCorr/job002", [("Import/job001/movies.star", "movies")],
              [("MotionCorr/job002/corrected_micrographs.star", "micrographs_motion")])
    p.star("CtfFind/job003/micrographs_ctf.star",
           p.micrograph_blocks(p.micrograph_table(with_ctf=True)))
    p.add_job("CtfFind/job003",
              [("MotionCorr/job002/corrected_micrographs.star", "micrographs_motion")],
              [("CtfFind/job003/micrographs_ctf.star", "micrographs_ctf")])

    # ManualPick/job004, AutoPick/job005
    _picks_job(p, "ManualPick/job004", "manualpick", scenario.select("manual"), manual=True)
    _picks_job(p, "AutoPick/job005", "autopick", scenario.select("auto"), manual=False)

    # Extract/job006 (binned by 2) with real stacks
    extracted = scenario.select("extracted").copy()
    extracted["stack_idx"] = extracted.groupby("micrograph").cumcount().to_numpy()
    for key, rows in extracted.groupby("micrograph"):
        stack = extract_stack(images[key], rows[["auto_x", "auto_y"]].to_numpy(), scenario.box_px)
        write_mrc(root / f"Extract/job006/Movies/{key}.mrcs", stack, p.particle_px, stack=True)
    p.star("Extract/job006/particles.star", p.particle_blocks(p.particle_table(extracted, None)))
    coords_node = ("AutoPick/job005/autopick.star" if fl.coordinate_lists
                   else "AutoPick/job005/coords_suffix_autopick.star")
    p.add_job("Extract/job006", [("CtfFind/job003/micrographs_ctf.star", "micrographs_ctf"),
                                 (coords_node, "coords_auto")],
              [("Extract/job006/particles.star", "particles")],
              options={"extract_size": p.scenario.box_px, "do_rescale": "Yes",
                       "rescale": p.box})

    # Class2D/job007: iterations 0, 20, 25; only the last has exact origins
    for it in (0, 20, 25):
        table = p.particle_table(extracted, "2d", "class2d", exact=(it == 25))
        p.star(f"Class2D/job007/run_it{it:03d}_data.star", p.particle_blocks(table))
    p.add_job("Class2D/job007", [("Extract/job006/particles.star", "particles")],
              [("Class2D/job007/run_it025_data.star", "particles_class2d")],
              options={"nr_classes": N_CLASSES_2D, "nr_iter": 25})

    # Select/job008: the particle classes
    selected = extracted[extracted["selected"]]
    p.star("Select/job008/particles.star",
           p.particle_blocks(p.particle_table(selected, "2d", "class2d")))
    kept = set(selected["class2d"])
    p.star("Select/job008/backup_selection.star", [("", pd.DataFrame(
        {"rlnSelected": [int(c in kept) for c in range(N_CLASSES_2D)]}))])
    p.add_job("Select/job008", [("Class2D/job007/run_it025_data.star", "particles_class2d")],
              [("Select/job008/particles.star", "particles")])

    # Class3D/job009 (2 classes) and Refine3D/job010
    p.star("Class3D/job009/run_it025_data.star",
           p.particle_blocks(p.particle_table(selected, "3d", "class3d")))
    p.add_job("Class3D/job009", [("Select/job008/particles.star", "particles")],
              [("Class3D/job009/run_it025_data.star", "particles_class3d")],
              options={"nr_classes": 2, "nr_iter": 25})
    refined = selected.assign(refine_class=0)
    p.star("Refine3D/job010/run_data.star",
           p.particle_blocks(p.particle_table(refined, "3d", "refine_class")))
    p.add_job("Refine3D/job010", [("Select/job008/particles.star", "particles")],
              [("Refine3D/job010/run_data.star", "particles_refine3d")])

    # Class2D/job011: failed (its output node is listed but was never written)
    p.add_job("Class2D/job011", [("Extract/job006/particles.star", "particles")],
              [("Class2D/job011/run_it025_data.star", "particles_class2d")],
              status=fl.failed_status, options={"nr_classes": N_CLASSES_2D})

    p.write_pipeline()
    return root
