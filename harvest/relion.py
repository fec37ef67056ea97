"""RELION 3.0 / 3.1 / 4 / 5 projects → catalog records (see :mod:`harvest.records`).

``scan_project(root)`` reads ``default_pipeline.star`` (processes, nodes, edges), job status
(pipeline status overridden by ``RELION_JOB_EXIT_*`` markers) and lists the files each job's
parse would read. ``parse_job(scan, key)`` reads one job's outputs (reference/formats.md §4.2):

==============  ===========================================  =========================  =========
job             file(s)                                      set name(s)                stage
==============  ===========================================  =========================  =========
MotionCorr      corrected_micrographs.star                   (micrographs only)
CtfFind         micrographs_ctf.star                         (micrographs only)
ManualPick      per-micrograph ``*_manualpick.star``         coords (sparse)            picked
AutoPick        per-micrograph ``*_autopick.star``           coords                     picked
Extract         particles.star                               particles                  extracted
Class2D         last run_itNNN_data.star                     run_itNNN_data             classified2d
Select          particles.star (+ parent Class2D's last)     particles, rejected        selected2d,
                                                                                        rejected2d
Class3D         last run_itNNN_data.star                     class_<N> (class_id N−1)   classified3d
InitialModel    last run_itNNN_data.star                     class_<N>                  classified3d
Refine3D        run_data.star                                run_data                   refined
PickTomo        particles.star / optimisation_set.star       particles (3D)             picked
==============  ===========================================  =========================  =========

Coordinates (DESIGN.md): pixels of the micrograph named by ``rlnMicrographName``, x = column,
y = row, as RELION stores ``rlnCoordinateX/Y`` (no flip). ``raw_x/raw_y`` = the stored
coordinates; ``x/y`` = recentred centres for classified3d and refined sets only:
3.1+ ``x − rlnOriginXAngst / micrograph_px`` (:func:`harvest.conventions.recentre_relion31`),
3.0 ``x − rlnOriginX × particle_px / micrograph_px`` (:func:`~harvest.conventions.recentre_relion30`).

Micrograph pixel size, in this order of preference: ``rlnMicrographPixelSize`` of the particle
star's optics group (3.1+); the micrographs STAR of a CtfFind job upstream of the job (else of any
CtfFind job of the project), matched by micrograph key (3.1+: its optics group's
``rlnMicrographPixelSize``; 3.0: ``rlnDetectorPixelSize × 1e4 / rlnMagnification``);
``rlnMicrographOriginalPixelSize`` of the optics group (movie pixel size: right unless motion
correction binned); finally the particle image pixel size (right when extraction did not rescale).

Tomograms (RELION 4/5, WarpTools): particles with ``rlnTomoName`` become 3D sets (``z``,
``raw_z``); ``micrograph`` is the tomogram name. Positions start in unbinned tilt-series pixels
(RELION 4 ``rlnCoordinateX/Y/Z``; RELION 5 ``px = rlnCenteredCoordinateXAngst /
rlnTomoTiltSeriesPixelSize + rlnTomoSizeX / 2``, [relion] 5.0.1 ``particle_set.cpp``, which needs
tomograms.star). Where tomograms.star names the reconstructed tomogram
(``rlnTomoReconstructedTomogram``) they are divided by ``rlnTomoTomogramBinning``: voxels of that
file (DESIGN.md frame), whose header gives ``nx/ny/nz`` and which becomes the record's
``abs_path``; pixel size = tilt-series px × binning. Otherwise (e.g. WarpTools exports) they stay
in unbinned tilt-series pixels with ``nx/ny/nz = rlnTomoSizeX/Y/Z``.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import mrcfile
import numpy as np
import pandas as pd

from harvest.conventions import (
    micrograph_key,
    recentre_relion30,
    recentre_relion31,
    relion30_pixel_size,
)
from harvest.records import (
    FileStamp,
    JobRecord,
    JobScan,
    MicrographRecord,
    ParticleSetRecord,
    Problem,
    ProjectScan,
)
from harvest.starread import StarFormatError, read_star, star_version

PIPELINE = "default_pipeline.star"

# 3.x integer process types → job directory (formats.md §4.1, [relion] 3.0.8/3.1.4
# src/pipeline_jobs.h; 22/23 and 50–59 are 5.x integer codes).
PROCESS_TYPE_DIRS: dict[int, str] = {
    0: "Import", 1: "MotionCorr", 2: "CtfFind", 3: "ManualPick", 4: "AutoPick", 5: "Extract",
    6: "Sort", 7: "Select", 8: "Class2D", 9: "Class3D", 10: "Refine3D", 11: "Polish",
    12: "MaskCreate", 13: "JoinStar", 14: "Subtract", 15: "PostProcess", 16: "LocalRes",
    17: "MovieRefine", 18: "InitialModel", 19: "MultiBody", 20: "Polish", 21: "CtfRefine",
    22: "DynaMight", 23: "ModelAngelo", 99: "External",
    50: "ImportTomo", 51: "PseudoSubtomo", 52: "CtfRefineTomo", 53: "FrameAlignTomo",
    54: "ReconstructParticleTomo", 55: "AlignTiltSeries", 56: "ReconstructTomograms",
    57: "ExcludeTiltImages", 58: "DenoiseTomo", 59: "PickTomo",
}

# 4.x/5.x base process labels (the label up to its optional suffix) → job type (same names).
LABEL_DIRS: dict[str, str] = {
    "relion.import": "Import", "relion.motioncorr": "MotionCorr", "relion.ctffind": "CtfFind",
    "relion.manualpick": "ManualPick", "relion.autopick": "AutoPick",
    "relion.extract": "Extract", "relion.select": "Select", "relion.class2d": "Class2D",
    "relion.class3d": "Class3D", "relion.refine3d": "Refine3D",
    "relion.initialmodel": "InitialModel", "relion.joinstar": "JoinStar",
    "relion.maskcreate": "MaskCreate", "relion.subtract": "Subtract",
    "relion.postprocess": "PostProcess", "relion.localres": "LocalRes",
    "relion.multibody": "MultiBody", "relion.polish": "Polish", "relion.ctfrefine": "CtfRefine",
    "relion.external": "External", "relion.importtomo": "ImportTomo",
    "relion.excludetilts": "ExcludeTiltImages", "relion.aligntiltseries": "AlignTiltSeries",
    "relion.reconstructtomograms": "ReconstructTomograms", "relion.denoisetomo": "DenoiseTomo",
    "relion.picktomo": "PickTomo", "relion.pseudosubtomo": "PseudoSubtomo",
    "relion.reconstructparticletomo": "ReconstructParticleTomo",
    "relion.ctfrefinetomo": "CtfRefineTomo", "relion.framealigntomo": "FrameAlignTomo",
    "dynamight": "DynaMight", "modelangelo": "ModelAngelo",
}

# job type → normalised kind (harvest.records.JOB_KINDS). Import is refined by its outputs.
TYPE_KINDS: dict[str, str] = {
    "Import": "import_micrographs", "MotionCorr": "motion", "CtfFind": "ctf",
    "ManualPick": "manual_pick", "AutoPick": "auto_pick", "Extract": "extract",
    "Select": "select2d", "Class2D": "class2d", "Class3D": "class3d", "Refine3D": "refine3d",
    "InitialModel": "abinitio", "PostProcess": "postprocess", "PickTomo": "tomo_pick",
    "PseudoSubtomo": "extract",
}

# pipeline status → records status
STATUS_30 = {0: "running", 1: "queued", 2: "completed"}
STATUS_31 = {0: "running", 1: "queued", 2: "completed", 3: "failed", 4: "aborted"}
STATUS_LABELS = {
    "running": "running", "scheduled": "queued", "succeeded": "completed",
    "finished": "completed", "failed": "failed", "aborted": "aborted",
}
# exit markers (3.1+, [relion] src/pipeline_control.h) override the pipeline status
EXIT_MARKERS = (
    ("RELION_JOB_EXIT_SUCCESS", "completed"),
    ("RELION_JOB_EXIT_FAILURE", "failed"),
    ("RELION_JOB_EXIT_ABORTED", "aborted"),
)

# labels kept as text even when they look numeric (micrograph names like "0001")
STRING_LABELS = (
    "rlnMicrographName", "rlnImageName", "rlnTomoName", "rlnOpticsGroupName",
    "rlnMicrographCoordinates", "rlnTomoParticleName", "rlnTomoTiltSeriesName",
    "rlnTomoReconstructedTomogram", "rlnTomoParticlesFile", "rlnTomoTomogramsFile",
    "rlnPipeLineProcessName", "rlnPipeLineProcessAlias", "rlnPipeLineNodeName",
    "rlnPipeLineEdgeFromNode", "rlnPipeLineEdgeProcess", "rlnPipeLineEdgeToNode",
)
# the particle-star labels a particle set needs (read only these: the reader's fast path)
PARTICLE_LABELS = (
    "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ",
    "rlnOriginX", "rlnOriginY", "rlnOriginZ", "rlnOriginXAngst", "rlnOriginYAngst",
    "rlnOriginZAngst", "rlnOpticsGroup", "rlnClassNumber", "rlnAutopickFigureOfMerit",
    "rlnMagnification", "rlnDetectorPixelSize", "rlnVoltage",
    "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnTomoName",
    "rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst",
)
# Only these stages carry refined shifts that move the catalog's centre (x/y); 2D
# classification shifts are not applied (raw_x/raw_y always hold rlnCoordinateX/Y).
RECENTRED_STAGES = frozenset({"classified3d", "refined"})
SCORE_MISSING = -999.0  # RELION writes −999 for "no figure of merit" (manual picks)

_JOB_RE = re.compile(r"^(?:.*?/)?job\d+/(.*)$")
_ITER_RE = re.compile(r"run_it(\d+)_data\.star$")


class RelionProjectError(ValueError):
    """A RELION project whose pipeline cannot be read (the message names the file)."""


# ---------------------------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------------------------


@dataclass
class _Process:
    key: str  # "Refine3D/job025"
    name: str  # "Refine3D/job025/" as written
    alias: str
    jtype: str  # job type, e.g. "AutoPick"
    raw_type: str  # label (4/5) or job type (3.x)
    label: str  # full label for 4/5 ("relion.autopick.log"), "" for 3.x
    status: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    stamp = datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def _pipeline_version(path: str, data: dict) -> str:
    procs = data.get("pipeline_processes")
    nodes = data.get("pipeline_nodes")
    version = star_version(path)
    if isinstance(procs, pd.DataFrame) and "rlnPipeLineProcessTypeLabel" in procs.columns:
        if version == 50001 or (
            isinstance(nodes, pd.DataFrame) and "rlnPipeLineNodeTypeLabelDepth" in nodes.columns
        ):
            return "5.0"
        return "4.0"
    if version is not None and version >= 50001:
        return "5.0"
    return "3.1" if version is not None else "3.0"


def _job_type_from_label(label: str) -> str:
    parts = label.split(".")
    base = ".".join(parts[:2]) if parts[0] == "relion" else parts[0]
    return LABEL_DIRS.get(base, "")


def _read_pipeline(root: str) -> tuple[str, list[_Process], dict]:
    path = os.path.join(root, PIPELINE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no RELION {PIPELINE} here; is {root} a RELION project?")
    try:
        data = read_star(path, parse_as_string=STRING_LABELS)
    except StarFormatError as exc:
        raise RelionProjectError(f"{exc} (RELION pipeline)") from None
    procs = data.get("pipeline_processes")
    if not isinstance(procs, pd.DataFrame) or len(procs) == 0:
        raise RelionProjectError(
            f"{path}: pipeline without processes (no data_pipeline_processes rows); "
            "not a RELION project pipeline or an empty one"
        )
    version = _pipeline_version(path, data)
    if "rlnPipeLineProcessName" not in procs.columns:
        raise RelionProjectError(f"{path}: data_pipeline_processes has no rlnPipeLineProcessName")
    names = procs["rlnPipeLineProcessName"].astype(str).tolist()
    aliases = (
        procs["rlnPipeLineProcessAlias"].astype(str).tolist()
        if "rlnPipeLineProcessAlias" in procs.columns
        else ["None"] * len(names)
    )
    if "rlnPipeLineProcessTypeLabel" in procs.columns:
        labels = procs["rlnPipeLineProcessTypeLabel"].astype(str).tolist()
        jtypes = [_job_type_from_label(lab) for lab in labels]
        raw_types = labels
    elif "rlnPipeLineProcessType" in procs.columns:
        codes = pd.to_numeric(procs["rlnPipeLineProcessType"], errors="coerce")
        labels = [""] * len(names)
        jtypes = [PROCESS_TYPE_DIRS.get(int(c), "") if c == c else "" for c in codes]
        raw_types = [j or f"type {c}" for j, c in zip(jtypes, procs["rlnPipeLineProcessType"])]
    else:
        raise RelionProjectError(f"{path}: data_pipeline_processes has no process type column")
    if "rlnPipeLineProcessStatusLabel" in procs.columns:
        statuses = [
            STATUS_LABELS.get(str(s).strip().lower(), "unknown")
            for s in procs["rlnPipeLineProcessStatusLabel"]
        ]
    elif "rlnPipeLineProcessStatus" in procs.columns:
        table = STATUS_30 if version == "3.0" else STATUS_31
        codes = pd.to_numeric(procs["rlnPipeLineProcessStatus"], errors="coerce")
        statuses = [table.get(int(c), "unknown") if c == c else "unknown" for c in codes]
    else:
        statuses = ["unknown"] * len(names)

    processes: list[_Process] = []
    by_name: dict[str, _Process] = {}
    for name, alias, jtype, raw, label, status in zip(
        names, aliases, jtypes, raw_types, labels, statuses
    ):
        if not jtype:  # unknown label/code: fall back on the directory name
            jtype = name.split("/", 1)[0]
        alias = "" if alias in ("None", "nan", "") else alias.rstrip("/").split("/")[-1]
        p = _Process(name.rstrip("/"), name, alias, jtype, raw, label, status)
        processes.append(p)
        by_name[name] = p
        by_name[name.rstrip("/")] = p

    def edges(block: str, a: str, b: str) -> list[tuple[str, str]]:
        df = data.get(block)
        if not isinstance(df, pd.DataFrame) or len(df) == 0 or a not in df or b not in df:
            return []
        return list(zip(df[a].astype(str), df[b].astype(str)))

    producer: dict[str, _Process] = {}
    for proc, node in edges("pipeline_output_edges", "rlnPipeLineEdgeProcess",
                            "rlnPipeLineEdgeToNode"):
        p = by_name.get(proc)
        if p is not None:
            p.outputs.append(node)
            producer[node] = p
    for node, proc in edges("pipeline_input_edges", "rlnPipeLineEdgeFromNode",
                            "rlnPipeLineEdgeProcess"):
        p = by_name.get(proc)
        if p is not None:
            p.inputs.append(node)
    # nodes without an output edge: the producing job is the job directory in the node's path
    for p in processes:
        for node in p.inputs:
            if node not in producer:
                m = re.match(r"^([^/]+/job\d+)/", node)
                if m and m.group(1) in by_name:
                    producer[node] = by_name[m.group(1)]
    parents_of = {
        p.key: list(
            dict.fromkeys(
                producer[n].key for n in p.inputs if n in producer and producer[n] is not p
            )
        )
        for p in processes
    }
    return version, processes, {"parents": parents_of}


def _stat_ns(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _job_status(root: str, proc: _Process, version: str) -> tuple[str, str | None]:
    """Status (a marker overrides the pipeline) and completion time (marker mtime, ISO)."""
    jobdir = os.path.join(root, proc.key)
    for marker, status in EXIT_MARKERS:
        ns = _stat_ns(os.path.join(jobdir, marker))
        if ns is not None:
            return status, _iso(ns)
    if version == "3.0" and proc.status == "running" and proc.outputs:
        # 3.0 marks a running job finished once all its output nodes exist
        if all(os.path.exists(os.path.join(root, n)) for n in proc.outputs):
            return "completed", None
    return proc.status, None


def _last_iteration(jobdir: str) -> str | None:
    best, best_it = None, -1
    for p in glob.glob(os.path.join(glob.escape(jobdir), "run_it*_data.star")):
        m = _ITER_RE.search(os.path.basename(p))
        if m and int(m.group(1)) > best_it:
            best, best_it = p, int(m.group(1))
    return best


def _pick_index_files(jobdir: str) -> list[str]:
    """Index files of a pick job at the job-dir root (4/5 ``*pick.star``, 3.x suffix files)."""
    out = []
    for name in ("manualpick.star", "autopick.star"):
        if os.path.isfile(os.path.join(jobdir, name)):
            out.append(os.path.join(jobdir, name))
    out += sorted(glob.glob(os.path.join(glob.escape(jobdir), "coords_suffix_*.star")))
    return out


def _per_mic_coordinate_files(jobdir: str) -> list[str]:
    """Every STAR file below the job dir's subfolders (per-micrograph coordinate files)."""
    found = []
    for dirpath, _dirs, files in os.walk(jobdir):
        if os.path.samefile(dirpath, jobdir):
            continue
        found += [os.path.join(dirpath, f) for f in files if f.endswith(".star")]
    return sorted(found)


def _job_files(root: str, proc: _Process, kind: str, parents: list[_Process]) -> list[str]:
    """Absolute paths of the files parse_job reads for this job (existing ones)."""
    jobdir = os.path.join(root, proc.key)
    files: list[str] = []

    def add(*names: str) -> None:
        for n in names:
            p = os.path.join(jobdir, n)
            if os.path.isfile(p):
                files.append(p)

    if kind == "motion":
        add("corrected_micrographs.star")
    elif kind == "ctf":
        add("micrographs_ctf.star")
    elif kind in ("manual_pick", "auto_pick"):
        files += _pick_index_files(jobdir)
        files += _per_mic_coordinate_files(jobdir)
    elif kind == "extract":
        add("particles.star")
    elif kind in ("class2d", "class3d", "abinitio"):
        last = _last_iteration(jobdir)
        if last:
            files.append(last)
    elif kind == "select2d":
        add("particles.star")
        for parent in parents:
            if TYPE_KINDS.get(parent.jtype) == "class2d":
                last = _last_iteration(os.path.join(root, parent.key))
                if last:
                    files.append(last)
    elif kind == "refine3d":
        add("run_data.star")
    elif kind == "tomo_pick":
        add("particles.star", "optimisation_set.star")
    elif kind == "import_particles":
        add("particles.star")
    return files


def _import_kind(proc: _Process) -> str:
    outs = " ".join(proc.outputs).lower() + " " + proc.label.lower()
    if "particles" in outs or "coords" in outs:
        return "import_particles"
    if "movies" in outs:
        return "import_movies"
    return "import_micrographs"


def _kind(proc: _Process) -> str:
    if proc.jtype == "Import":
        return _import_kind(proc)
    return TYPE_KINDS.get(proc.jtype, "other")


def scan_project(root: str | os.PathLike) -> ProjectScan:
    """Read a RELION project's ``default_pipeline.star``: version, jobs, status, parents, files.

    Raises ``FileNotFoundError`` when there is no pipeline and :class:`RelionProjectError` (a
    ``ValueError`` naming the file) when it cannot be read or has no processes.
    """
    root = os.path.abspath(os.fspath(root))
    version, processes, extra = _read_pipeline(root)
    by_key = {p.key: p for p in processes}
    scan = ProjectScan(
        root=root,
        software="relion",
        version=version,
        title=os.path.basename(root),
        files=[FileStamp.of(os.path.join(root, PIPELINE))],
    )
    for proc in processes:
        kind = _kind(proc)
        status, completed = _job_status(root, proc, version)
        parents = extra["parents"].get(proc.key, [])
        parent_procs = [by_key[k] for k in parents if k in by_key]
        files = []
        for f in _job_files(root, proc, kind, parent_procs):
            try:
                files.append(FileStamp.of(f))
            except OSError:
                pass
        jobdir = os.path.join(root, proc.key)
        created = None
        for n in ("job.star", "run.job", "note.txt"):
            ns = _stat_ns(os.path.join(jobdir, n))
            if ns is not None:
                created = _iso(ns)
                break
        scan.jobs.append(
            JobScan(
                key=proc.key,
                raw_type=proc.raw_type,
                kind=kind,
                status=status,
                parents=parents,
                title=proc.alias,
                created_at=created,
                completed_at=completed,
                files=files,
            )
        )
    scan.extra["processes"] = {p.key: p for p in processes}
    scan.extra["parents"] = extra["parents"]
    return scan


# ---------------------------------------------------------------------------------------------
# shared helpers for parsing
# ---------------------------------------------------------------------------------------------


class _Context:
    """Per-parse state: project root, caches of MRC headers and micrograph pixel sizes."""

    def __init__(self, scan: ProjectScan | None, root: str):
        self.scan = scan
        self.root = root
        cache = scan.extra if scan is not None else {}
        self.mrc_cache: dict[str, tuple[int, int, int] | None] = cache.setdefault("mrc", {})
        self.ctf_cache: dict[str, dict[str, float]] = cache.setdefault("ctf_px", {})
        self.problems: list[Problem] = []
        self.files: list[str] = []
        self.mic_px: dict[str, float] | None = None  # key -> micrograph px (from CtfFind)

    def abs(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.root, path))

    def mrc_shape(self, abs_path: str) -> tuple[int, int, int] | None:
        if abs_path not in self.mrc_cache:
            shape = None
            if os.path.isfile(abs_path):
                try:
                    with mrcfile.open(abs_path, header_only=True, permissive=True) as mrc:
                        h = mrc.header
                        shape = (int(h.nx), int(h.ny), int(h.nz))
                except (OSError, ValueError):
                    shape = None
            self.mrc_cache[abs_path] = shape
        return self.mrc_cache[abs_path]


def _micrograph_records(
    ctx: _Context,
    paths: Iterable[str],
    job_key: str,
    pixel_size: dict[str, float] | None = None,
    extra: pd.DataFrame | None = None,
) -> list[MicrographRecord]:
    """One record per distinct path; nx/ny from the MRC header when the file exists; one Problem
    per job naming the missing ones. ``extra``: per-path columns (index = path) copied in."""
    records = []
    missing = []
    px_by_key = pixel_size or {}
    extra_rows = extra.to_dict("index") if extra is not None and len(extra) else {}
    for path in dict.fromkeys(paths):
        abs_path = ctx.abs(path)
        key = micrograph_key(path)
        rec = MicrographRecord(path=path, abs_path=abs_path, key=key)
        shape = ctx.mrc_shape(abs_path)
        if shape is None:
            missing.append(path)
        else:
            rec.nx, rec.ny = shape[0], shape[1]
        px = px_by_key.get(key)
        if px is not None and np.isfinite(px):
            rec.pixel_size = float(px)
        for k, v in extra_rows.get(path, {}).items():
            if v is not None and not (isinstance(v, float) and np.isnan(v)):
                setattr(rec, k, v.item() if hasattr(v, "item") else v)
        records.append(rec)
    if missing:
        ctx.problems.append(
            Problem(
                ctx.abs(missing[0]),
                f"{len(missing)} of {len(records)} micrographs referenced by {job_key} are "
                f"missing or unreadable (e.g. {missing[0]}); their size is unknown",
            )
        )
    return records


def _read_table(
    path: str, main: Iterable[str], need: str, labels: Iterable[str] | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The main loop (first of ``main`` present, else the one holding ``need``) and the optics
    loop of a STAR file, converting only ``labels`` of the main loop (all if None). One pass."""
    wanted = None if labels is None else list(labels)

    def columns(name: str, _labels: list[str]):
        return None if name == "optics" else wanted

    data = read_star(path, columns=columns, parse_as_string=STRING_LABELS)
    loops = {n: b for n, b in data.items() if isinstance(b, pd.DataFrame)}
    name = next((n for n in main if n in loops), None)
    if name is None:
        name = next((n for n, b in loops.items() if need in b.columns and n != "optics"), None)
    if name is None:
        raise StarFormatError(
            f"{path}: no {'/'.join('data_' + n for n in main)} table with _{need}; "
            f"tables: {', '.join('data_' + n for n in data) or 'none'}"
        )
    optics = loops.get("optics") if name != "optics" else None
    return loops[name], optics


class _OpticsLookup:
    """Per-row values of optics-group labels; the row → group indexer is computed once."""

    def __init__(self, table: pd.DataFrame, optics: pd.DataFrame | None):
        self.n = len(table)
        self.optics = optics
        self.idx = None
        if (optics is not None and "rlnOpticsGroup" in optics.columns
                and "rlnOpticsGroup" in table.columns):
            keys = pd.Index(pd.to_numeric(optics["rlnOpticsGroup"], errors="coerce"))
            first = ~keys.duplicated()
            self.rows = np.flatnonzero(first)
            groups = pd.to_numeric(table["rlnOpticsGroup"], errors="coerce")
            self.idx = keys[first].get_indexer(groups)  # -1 where the group is unknown

    def __call__(self, label: str) -> np.ndarray:
        if self.idx is None or label not in self.optics.columns:
            return np.full(self.n, np.nan)
        values = pd.to_numeric(self.optics[label], errors="coerce").to_numpy(dtype=np.float64)
        lut = np.append(values[self.rows], np.nan)  # index -1 → NaN
        return lut[self.idx]


def _optics_values(table: pd.DataFrame, optics: pd.DataFrame | None, label: str) -> np.ndarray:
    """Per-row value of an optics-group label (NaN where unknown)."""
    return _OpticsLookup(table, optics)(label)


def _col(table: pd.DataFrame, label: str, default: float = np.nan) -> np.ndarray:
    if label not in table.columns:
        return np.full(len(table), default, dtype=np.float64)
    # a writable copy (pandas copy-on-write hands out read-only views)
    return np.array(pd.to_numeric(table[label], errors="coerce"), dtype=np.float64)


def _first(values: np.ndarray) -> float | None:
    if values.size and np.isfinite(values[0]):
        return float(values[0])
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else None


def _micrograph_pixel_sizes_from_star(path: str) -> dict[str, float]:
    """micrograph key → pixel size (Å) from a micrographs STAR (CtfFind/MotionCorr output)."""
    table, optics = _read_table(
        path, ("micrographs", "images", ""), "rlnMicrographName",
        ("rlnMicrographName", "rlnOpticsGroup", "rlnMagnification", "rlnDetectorPixelSize",
         "rlnMicrographPixelSize"),
    )
    px = _optics_values(table, optics, "rlnMicrographPixelSize")
    if "rlnMicrographPixelSize" in table.columns:
        px = np.where(np.isfinite(px), px, _col(table, "rlnMicrographPixelSize"))
    if "rlnMagnification" in table.columns and "rlnDetectorPixelSize" in table.columns:
        p30 = relion30_pixel_size(_col(table, "rlnDetectorPixelSize"), _col(table, "rlnMagnification"))
        px = np.where(np.isfinite(px), px, p30)
    keys = [micrograph_key(m) for m in table["rlnMicrographName"].astype(str)]
    return {k: float(v) for k, v in zip(keys, px) if np.isfinite(v)}


def _ancestors(scan: ProjectScan, key: str) -> list[str]:
    parents = scan.extra.get("parents", {})
    seen: list[str] = []
    todo = list(parents.get(key, []))
    while todo:
        k = todo.pop(0)
        if k in seen:
            continue
        seen.append(k)
        todo += parents.get(k, [])
    return seen


def _ctf_pixel_sizes(ctx: _Context, job_key: str) -> dict[str, float]:
    """Micrograph key → pixel size from CtfFind jobs upstream of ``job_key`` (else any)."""
    if ctx.mic_px is not None:
        return ctx.mic_px
    scan = ctx.scan
    result: dict[str, float] = {}
    if scan is not None:
        ctf_jobs = [j.key for j in scan.jobs if j.kind == "ctf"]
        upstream = set(_ancestors(scan, job_key))
        ordered = [k for k in ctf_jobs if k in upstream] or ctf_jobs
        for k in ordered:
            path = os.path.join(scan.root, k, "micrographs_ctf.star")
            if path not in ctx.ctf_cache:
                try:
                    ctx.ctf_cache[path] = _micrograph_pixel_sizes_from_star(path)
                except (OSError, ValueError):
                    ctx.ctf_cache[path] = {}
            for mk, v in ctx.ctf_cache[path].items():
                result.setdefault(mk, v)
    ctx.mic_px = result
    return result


# ---------------------------------------------------------------------------------------------
# particle tables → particle sets
# ---------------------------------------------------------------------------------------------


@dataclass
class _Particles:
    """A particle table normalised (vectorised) to the records' columns plus set metadata."""

    frame: pd.DataFrame  # PARTICLE_COLUMNS (+ z, raw_z)
    class_number: np.ndarray  # RELION's 1-based class (0 where absent)
    image_name: np.ndarray | None
    mic_px_by_key: dict[str, float]
    meta: dict
    is_3d: bool = False
    tomograms: pd.DataFrame | None = None  # tomograms.star global table (tomo sets)
    mic_uniq: np.ndarray | None = None  # distinct micrograph paths, first-seen order


def _tomogram_table(path: str | None) -> pd.DataFrame | None:
    if not path or not os.path.isfile(path):
        return None
    table, _ = _read_table(path, ("global",), "rlnTomoName", None)
    return table


def _first_per_micrograph(uniq: np.ndarray, codes: np.ndarray, values: np.ndarray
                          ) -> dict[str, float]:
    """micrograph key → value of the first particle on it (finite values only)."""
    if not len(codes):
        return {}
    _, first_row = np.unique(codes, return_index=True)
    return {micrograph_key(m): float(v) for m, v in zip(uniq, values[first_row])
            if np.isfinite(v)}


def _load_particles(
    ctx: _Context,
    path: str,
    job_key: str,
    recentre: bool,
    tomograms_star: str | None = None,
    image_names: bool = False,
) -> _Particles:
    """Read a particles STAR into the normalised frame (coordinates in micrograph px).
    ``image_names``: also read rlnImageName (to match particles between jobs)."""
    labels = PARTICLE_LABELS + (("rlnImageName",) if image_names else ())
    table, optics = _read_table(path, ("particles", "images", ""), "rlnCoordinateX", labels)
    n = len(table)
    is_tomo = "rlnTomoName" in table.columns
    is_3d = is_tomo or "rlnCoordinateZ" in table.columns or "rlnCenteredCoordinateZAngst" in (
        table.columns
    )
    if "rlnCoordinateX" not in table.columns and "rlnCenteredCoordinateXAngst" not in table.columns:
        raise StarFormatError(f"{path}: particles without rlnCoordinateX/Y (nothing to place)")
    mic_col = "rlnTomoName" if is_tomo else "rlnMicrographName"
    if mic_col not in table.columns:
        raise StarFormatError(f"{path}: particles without {mic_col}; cannot tell their micrograph")
    mic_values = table[mic_col]
    if not pd.api.types.is_object_dtype(mic_values.dtype):
        mic_values = mic_values.astype(str).astype(object)
    mics = mic_values.to_numpy(dtype=object)
    # one factorisation serves every per-micrograph lookup below
    mic_codes, mic_uniq = pd.factorize(mics, sort=False)
    mic_uniq = np.asarray(mic_uniq, dtype=object)

    # pixel sizes: particle images and micrographs (see module docstring for the order)
    opt = _OpticsLookup(table, optics)
    image_px = opt("rlnImagePixelSize")
    if "rlnMagnification" in table.columns and "rlnDetectorPixelSize" in table.columns:
        p30 = relion30_pixel_size(_col(table, "rlnDetectorPixelSize"), _col(table, "rlnMagnification"))
        image_px = np.where(np.isfinite(image_px), image_px, p30)
    meta = {
        "image_pixel_size": _first(image_px),
        "box_size": _first(opt("rlnImageSize")),
        "voltage": _first(np.where(np.isfinite(v := opt("rlnVoltage")),
                                   v, _col(table, "rlnVoltage"))),
        "cs": _first(np.where(
            np.isfinite(v := opt("rlnSphericalAberration")),
            v, _col(table, "rlnSphericalAberration"))),
        "amp_contrast": _first(np.where(
            np.isfinite(v := opt("rlnAmplitudeContrast")),
            v, _col(table, "rlnAmplitudeContrast"))),
    }
    if meta["box_size"] is not None:
        meta["box_size"] = int(meta["box_size"])

    tomos = None
    if is_tomo:
        tomos = _tomogram_table(tomograms_star)
        x, y, z, mic_px = _tomo_coordinates(path, table, tomos, optics)
        raw_x, raw_y, raw_z = x, y, z
        origin = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
        if recentre and all(c in table.columns for c in origin):
            x = x - _col(table, origin[0]) / mic_px
            y = y - _col(table, origin[1]) / mic_px
            z = z - _col(table, origin[2]) / mic_px
        # pixel size of the frame the coordinates are in (tilt-series px × binning if binned)
        px_by_key = _first_per_micrograph(mic_uniq, mic_codes, mic_px)
    else:
        raw_x = _col(table, "rlnCoordinateX")
        raw_y = _col(table, "rlnCoordinateY")
        raw_z = _col(table, "rlnCoordinateZ") if is_3d else None
        mic_px = opt("rlnMicrographPixelSize")
        ctf_px = _ctf_pixel_sizes(ctx, job_key) if ctx.scan is not None else {}
        if ctf_px and not np.all(np.isfinite(mic_px)):
            per_mic = np.array([ctf_px.get(micrograph_key(m), np.nan) for m in mic_uniq],
                               dtype=np.float64)
            mic_px = np.where(np.isfinite(mic_px), mic_px, per_mic[mic_codes])
        for fallback in (opt("rlnMicrographOriginalPixelSize"), image_px):
            mic_px = np.where(np.isfinite(mic_px), mic_px, fallback)
        x, y, z = raw_x, raw_y, raw_z
        if recentre:
            if "rlnOriginXAngst" in table.columns:
                x, y = recentre_relion31(raw_x, raw_y, _col(table, "rlnOriginXAngst", 0.0),
                                         _col(table, "rlnOriginYAngst", 0.0), mic_px)
                if is_3d and "rlnOriginZAngst" in table.columns:
                    z = raw_z - _col(table, "rlnOriginZAngst", 0.0) / mic_px
            elif "rlnOriginX" in table.columns:
                x, y = recentre_relion30(raw_x, raw_y, _col(table, "rlnOriginX", 0.0),
                                         _col(table, "rlnOriginY", 0.0), image_px, mic_px)
                if is_3d and "rlnOriginZ" in table.columns:
                    z = raw_z - _col(table, "rlnOriginZ", 0.0) * image_px / mic_px
            bad = ~np.isfinite(x) | ~np.isfinite(y)
            if bad.any():
                ctx.problems.append(Problem(path, (
                    f"{int(bad.sum())} particles could not be recentred (unknown micrograph "
                    "pixel size or origin); their stored coordinates are kept")))
                x = np.where(bad, raw_x, x)
                y = np.where(bad, raw_y, y)
        px_by_key = _first_per_micrograph(mic_uniq, mic_codes, mic_px)
        if ctf_px:
            for k, v in ctf_px.items():
                px_by_key.setdefault(k, v)

    score = _col(table, "rlnAutopickFigureOfMerit")
    score[score == SCORE_MISSING] = np.nan
    class_number = _col(table, "rlnClassNumber", 0.0)
    class_number = np.where(np.isfinite(class_number), class_number, 0).astype(np.int64)
    cols = {
        # object dtype on purpose: pandas 3 would otherwise convert 10^6 paths to Arrow strings
        "micrograph": pd.Series(mics, dtype=object, copy=False),
        "x": np.asarray(x, dtype=np.float64),
        "y": np.asarray(y, dtype=np.float64),
        "raw_x": np.asarray(raw_x, dtype=np.float64),
        "raw_y": np.asarray(raw_y, dtype=np.float64),
        "score": score,
        "class_id": np.full(n, -1, dtype=np.int64),
        "uid": np.arange(n, dtype=np.int64),
    }
    if is_3d:
        cols["z"] = np.asarray(z, dtype=np.float64)
        cols["raw_z"] = np.asarray(raw_z, dtype=np.float64)
    frame = pd.DataFrame(cols)
    image_name = (
        table["rlnImageName"].astype(str).to_numpy(dtype=object)
        if "rlnImageName" in table.columns else None
    )
    return _Particles(frame, class_number, image_name, px_by_key, meta, is_3d, tomos, mic_uniq)


def _tomogram_binning(tomos: pd.DataFrame | None) -> dict[str, float]:
    """Tomogram name → binning of its reconstructed tomogram file, for tomograms whose file is
    named in tomograms.star (``rlnTomoReconstructedTomogram``); their particles are placed in
    voxels of that file (DESIGN.md: pixels of the file the coordinates refer to)."""
    if tomos is None or "rlnTomoReconstructedTomogram" not in tomos.columns:
        return {}
    binning = _col(tomos, "rlnTomoTomogramBinning", 1.0)
    binning = np.where(np.isfinite(binning) & (binning > 0), binning, 1.0)
    return {
        str(name): float(b)
        for name, rec, b in zip(tomos["rlnTomoName"], tomos["rlnTomoReconstructedTomogram"],
                                binning)
        if isinstance(rec, str) and rec not in ("", "None")
    }


def _tomo_coordinates(path, table, tomos, optics):
    """Tomogram particle positions and the pixel size of their frame (Å).

    Unbinned tilt-series pixels (RELION 4 ``rlnCoordinateX``; RELION 5 ``centred Å / tilt-series
    px + rlnTomoSize / 2``), then divided by ``rlnTomoTomogramBinning`` for tomograms whose
    reconstructed file tomograms.star names, so that they are voxels of that file."""
    n = len(table)
    names = table["rlnTomoName"].astype(str)
    ts_px = np.full(n, np.nan)
    size = {a: np.full(n, np.nan) for a in "XYZ"}
    if tomos is not None and "rlnTomoName" in tomos.columns:
        t = tomos.drop_duplicates("rlnTomoName")
        t = t.set_index(t["rlnTomoName"].astype(str))
        if "rlnTomoTiltSeriesPixelSize" in t.columns:
            ts_px = pd.to_numeric(t["rlnTomoTiltSeriesPixelSize"]).reindex(names).to_numpy(
                dtype=np.float64)
        for a in "XYZ":
            if f"rlnTomoSize{a}" in t.columns:
                size[a] = pd.to_numeric(t[f"rlnTomoSize{a}"]).reindex(names).to_numpy(
                    dtype=np.float64)
    if not np.all(np.isfinite(ts_px)):
        ts_px = np.where(np.isfinite(ts_px), ts_px,
                         _optics_values(table, optics, "rlnTomoTiltSeriesPixelSize"))
    if "rlnCenteredCoordinateXAngst" in table.columns:
        if tomos is None:
            raise StarFormatError(
                f"{path}: RELION 5 centred coordinates (rlnCenteredCoordinateXAngst) need the "
                "tomograms.star of the project (rlnTomoSizeX/Y/Z); none found"
            )
        coords = [
            _col(table, f"rlnCenteredCoordinate{a}Angst") / ts_px + size[a] / 2 for a in "XYZ"
        ]
    else:
        coords = [_col(table, f"rlnCoordinate{a}") for a in "XYZ"]
    binning = _tomogram_binning(tomos)
    if binning:
        b = names.map(binning).fillna(1.0).to_numpy(dtype=np.float64)
        coords = [c / b for c in coords]
        ts_px = ts_px * b
    return coords[0], coords[1], coords[2], ts_px


def _set(
    name: str, stage: str, frame: pd.DataFrame, path: str, parts: _Particles, **kw
) -> ParticleSetRecord:
    box = parts.meta.get("box_size")
    if box is None and not parts.is_3d:
        box = _box_from_stack(path)
        parts.meta["box_size"] = box
    return ParticleSetRecord(
        name=name,
        stage=stage,
        particles=frame.reset_index(drop=True),
        source_file=os.path.abspath(path),
        fingerprint=_fingerprint(path),
        box_size=box,
        image_pixel_size=parts.meta.get("image_pixel_size"),
        voltage=parts.meta.get("voltage"),
        cs=parts.meta.get("cs"),
        amp_contrast=parts.meta.get("amp_contrast"),
        is_3d=parts.is_3d,
        **kw,
    )


def _first_image_name(path: str) -> str | None:
    """rlnImageName of the first particle row, read without parsing the whole file."""
    labels: list[str] = []
    in_loop = False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stripped = line.strip()
            if stripped.startswith("data_"):
                labels, in_loop = [], False
            elif stripped == "loop_":
                labels, in_loop = [], True
            elif in_loop and stripped.startswith("_"):
                labels.append(stripped.split()[0][1:])
            elif in_loop and stripped and not stripped.startswith("#") and labels:
                if "rlnImageName" in labels:
                    fields = stripped.split()
                    idx = labels.index("rlnImageName")
                    return fields[idx] if idx < len(fields) else None
                in_loop = False
    return None


def _box_from_stack(path: str) -> int | None:
    """Box size in pixels from the header of the first particle's stack (RELION 3.0 stars carry
    no rlnImageSize). Stack paths are relative to the project root, two levels above the job
    directory that holds ``path``. None when no stack can be read."""
    import mrcfile

    try:
        name = _first_image_name(path)
    except OSError:
        return None
    if not name or "@" not in name:
        return None
    stack = name.split("@", 1)[1]
    here = os.path.dirname(os.path.abspath(path))
    for base in (os.path.dirname(os.path.dirname(here)), here, os.path.dirname(here)):
        candidate = os.path.join(base, stack)
        if os.path.isfile(candidate):
            try:
                with mrcfile.open(candidate, header_only=True, permissive=True) as mrc:
                    return int(mrc.header.nx)
            except (OSError, ValueError):
                return None
    return None


def _fingerprint(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def _tomogram_records(ctx: _Context, parts: _Particles, paths) -> list[MicrographRecord]:
    """Records for the tomograms named by rlnTomoName: the reconstructed file (its header gives
    nx/ny/nz) when tomograms.star names one, else the unbinned sizes rlnTomoSizeX/Y/Z."""
    t = parts.tomograms
    names = t["rlnTomoName"].astype(str).tolist()
    row = {name: i for i, name in enumerate(names)}
    sizes = {a: _col(t, f"rlnTomoSize{a}") for a in "XYZ"}
    binning = _tomogram_binning(t)
    recs = []
    for p in paths:
        rec = MicrographRecord(path=p, abs_path=ctx.abs(p), key=micrograph_key(p))
        i = row.get(p)
        b = binning.get(p, 1.0)
        if i is not None:
            for attr, a in (("nx", "X"), ("ny", "Y"), ("nz", "Z")):
                if np.isfinite(sizes[a][i]):
                    setattr(rec, attr, int(round(sizes[a][i] / b)))
            if p in binning:
                rec.abs_path = ctx.abs(str(t["rlnTomoReconstructedTomogram"].iloc[i]))
                shape = ctx.mrc_shape(rec.abs_path)
                if shape is not None:
                    rec.nx, rec.ny, rec.nz = shape
        rec.pixel_size = parts.mic_px_by_key.get(rec.key)
        recs.append(rec)
    return recs


def _particle_micrographs(ctx: _Context, parts: _Particles, job_key: str) -> list[MicrographRecord]:
    paths = parts.mic_uniq
    if paths is None:
        paths = pd.unique(parts.frame["micrograph"].to_numpy(dtype=object))
    if parts.tomograms is not None and parts.is_3d:
        return _tomogram_records(ctx, parts, paths)
    return _micrograph_records(ctx, paths, job_key, parts.mic_px_by_key)


def particle_set_from_star(
    path: str | os.PathLike,
    name: str,
    stage: str,
    project_root: str | os.PathLike,
    recentre: bool | None = None,
    scan: ProjectScan | None = None,
    job_key: str = "",
    tomograms_star: str | os.PathLike | None = None,
) -> tuple[ParticleSetRecord, list[MicrographRecord]]:
    """One particle set from a RELION particles STAR (any version), without a pipeline.

    ``recentre`` defaults to True for the :data:`RECENTRED_STAGES`. Coordinates in pixels of the
    micrographs named by ``rlnMicrographName`` (see module docstring); tomogram particles
    (``rlnTomoName``) in unbinned tilt-series pixels, using ``tomograms_star`` (RELION 5
    tomograms.star / WarpTools ``*_tomograms.star``) for sizes and centred coordinates.
    """
    path = os.fspath(path)
    ctx = _Context(scan, os.path.abspath(os.fspath(project_root)))
    if recentre is None:
        recentre = stage in RECENTRED_STAGES
    tomos = None if tomograms_star is None else os.fspath(tomograms_star)
    parts = _load_particles(ctx, path, job_key, recentre, tomos)
    pset = _set(name, stage, parts.frame, path, parts)
    return pset, _particle_micrographs(ctx, parts, job_key)


# ---------------------------------------------------------------------------------------------
# per-kind parsers
# ---------------------------------------------------------------------------------------------


def _parse_micrograph_star(ctx: _Context, path: str, job_key: str) -> list[MicrographRecord]:
    table, optics = _read_table(path, ("micrographs", "images", ""), "rlnMicrographName", None)
    ctx.files.append(path)
    mics = table["rlnMicrographName"].astype(str).tolist()
    px = _optics_values(table, optics, "rlnMicrographPixelSize")
    if "rlnMagnification" in table.columns and "rlnDetectorPixelSize" in table.columns:
        p30 = relion30_pixel_size(_col(table, "rlnDetectorPixelSize"), _col(table, "rlnMagnification"))
        px = np.where(np.isfinite(px), px, p30)
    extra = pd.DataFrame(index=pd.Index(mics))
    for attr, label in (
        ("defocus_u", "rlnDefocusU"), ("defocus_v", "rlnDefocusV"),
        ("defocus_angle", "rlnDefocusAngle"), ("ctf_max_res", "rlnCtfMaxResolution"),
        ("ctf_fom", "rlnCtfFigureOfMerit"), ("total_motion", "rlnAccumMotionTotal"),
    ):
        if label in table.columns:
            extra[attr] = _col(table, label)
    extra = extra[~extra.index.duplicated()]
    px_by_key = {micrograph_key(m): float(v) for m, v in zip(mics, px) if np.isfinite(v)}
    return _micrograph_records(ctx, mics, job_key, px_by_key, extra if len(extra.columns) else None)


def _coords_file(jobdir: str, mic: str, suffix: str) -> str:
    """``<jobdir>/<path of mic after its job dir, no extension>_<suffix>.star`` (RELION 3.x)."""
    m = _JOB_RE.match(mic)
    rest = m.group(1) if m else mic.lstrip("/")
    stem = os.path.splitext(rest)[0]
    return os.path.join(jobdir, f"{stem}_{suffix}.star")


def _pick_list(ctx: _Context, proc: _Process) -> tuple[list[tuple[str, str]], bool]:
    """(micrograph as written, coordinate file abs path) pairs of a pick job, and whether the
    list came from a 4/5 index (listed files must exist)."""
    jobdir = os.path.join(ctx.root, proc.key)
    for index in ("autopick.star", "manualpick.star"):
        p = os.path.join(jobdir, index)
        if os.path.isfile(p):
            ctx.files.append(p)
            table, _ = _read_table(p, ("coordinate_files",), "rlnMicrographCoordinates", None)
            pairs = [
                (str(m), ctx.abs(str(c)))
                for m, c in zip(table["rlnMicrographName"], table["rlnMicrographCoordinates"])
            ]
            return pairs, True
    # RELION 3.x: coords_suffix_<suffix>.star names the micrographs STAR the picker read
    suffix_files = sorted(glob.glob(os.path.join(glob.escape(jobdir), "coords_suffix_*.star")))
    if not suffix_files:
        raise FileNotFoundError(
            f"{jobdir}: no autopick.star, manualpick.star or coords_suffix_*.star; "
            "is the pick job complete?"
        )
    suffix_path = suffix_files[0]
    ctx.files.append(suffix_path)
    suffix = os.path.basename(suffix_path)[len("coords_suffix_"):-len(".star")]
    mic_star = None
    try:
        with open(suffix_path, encoding="utf-8", errors="replace") as fh:
            text = fh.read().strip()
    except OSError:
        text = ""
    if text and "\n" not in text and os.path.isfile(ctx.abs(text)):
        mic_star = ctx.abs(text)
    if mic_star is None:  # fall back on the job's micrographs input node
        for node in proc.inputs:
            if node.endswith(".star") and os.path.isfile(ctx.abs(node)):
                mic_star = ctx.abs(node)
                break
    if mic_star is None:
        raise FileNotFoundError(
            f"{suffix_path}: cannot find the micrographs STAR the pick job read "
            f"(file content {text[:80]!r}); no input node of the job exists either"
        )
    ctx.files.append(mic_star)
    table, _ = _read_table(mic_star, ("micrographs", "images", ""), "rlnMicrographName",
                           ("rlnMicrographName",))
    mics = table["rlnMicrographName"].astype(str).tolist()
    return [(m, _coords_file(jobdir, m, suffix)) for m in mics], False


def _read_coords(path: str) -> pd.DataFrame:
    blocks = read_star(path, parse_as_string=STRING_LABELS)
    for b in blocks.values():
        if isinstance(b, pd.DataFrame) and "rlnCoordinateX" in b.columns:
            return b
    for b in blocks.values():
        if isinstance(b, pd.DataFrame) and len(b) == 0:
            return b
    raise StarFormatError(f"{path}: no loop with rlnCoordinateX (not a coordinate file)")


def _parse_pick(ctx: _Context, proc: _Process, sparse: bool) -> JobRecord:
    pairs, indexed = _pick_list(ctx, proc)
    frames = []
    picked_mics = []
    missing = []
    for mic, cpath in pairs:
        if not os.path.isfile(cpath):
            if indexed:
                missing.append(cpath)
            continue
        ctx.files.append(cpath)
        try:
            t = _read_coords(cpath)
        except (ValueError, OSError) as exc:
            ctx.problems.append(Problem(cpath, str(exc)))
            continue
        picked_mics.append(mic)
        if len(t) == 0:
            continue
        score = _col(t, "rlnAutopickFigureOfMerit")
        score[score == SCORE_MISSING] = np.nan
        xs, ys = _col(t, "rlnCoordinateX"), _col(t, "rlnCoordinateY")
        frames.append(pd.DataFrame({
            "micrograph": np.full(len(t), mic, dtype=object), "x": xs, "y": ys,
            "raw_x": xs.copy(), "raw_y": ys.copy(), "score": score,
            "class_id": np.full(len(t), -1, dtype=np.int64),
            "uid": np.arange(len(t), dtype=np.int64),
        }))
    if missing:
        ctx.problems.append(Problem(missing[0], (
            f"{len(missing)} coordinate files listed by {proc.key} are missing "
            f"(e.g. {missing[0]})")))
    from harvest.records import empty_particles

    frame = pd.concat(frames, ignore_index=True) if frames else empty_particles()
    if len(frame):
        frame["uid"] = np.arange(len(frame), dtype=np.int64)
    rec = _job_record(ctx, proc)
    index = next((f for f in ctx.files if f.endswith(".star")), os.path.join(ctx.root, proc.key))
    rec.particle_sets.append(ParticleSetRecord(
        name="coords", stage="picked", particles=frame, source_file=index,
        fingerprint=_fingerprint(index), sparse=sparse,
    ))
    px = _ctf_pixel_sizes(ctx, proc.key) if ctx.scan is not None else {}
    rec.micrographs = _micrograph_records(ctx, picked_mics, proc.key, px)
    return rec


def _job_record(ctx: _Context, proc: _Process) -> JobRecord:
    js = next((j for j in ctx.scan.jobs if j.key == proc.key), None) if ctx.scan else None
    return JobRecord(
        key=proc.key,
        raw_type=proc.raw_type,
        kind=js.kind if js else _kind(proc),
        status=js.status if js else proc.status,
        parents=list(js.parents) if js else [],
        title=proc.alias,
        created_at=js.created_at if js else None,
        completed_at=js.completed_at if js else None,
    )


def _class_sets(path: str, parts: _Particles, stage: str) -> list[ParticleSetRecord]:
    sets = []
    cls = parts.class_number
    frame = parts.frame
    frame["class_id"] = np.where(cls > 0, cls - 1, -1)
    for c in np.unique(cls):
        mask = cls == c
        sets.append(_set(f"class_{int(c)}", stage, frame[mask], path, parts,
                         class_id=int(c) - 1 if c > 0 else None))
    return sets


def _tomograms_star_for(ctx: _Context, proc: _Process, jobdir: str) -> str | None:
    opt = os.path.join(jobdir, "optimisation_set.star")
    if os.path.isfile(opt):
        data = read_star(opt, parse_as_string=STRING_LABELS)
        for block in data.values():
            val = block.get("rlnTomoTomogramsFile") if isinstance(block, dict) else None
            if val:
                return ctx.abs(str(val))
    for node in proc.inputs:
        if node.endswith("tomograms.star") and os.path.isfile(ctx.abs(node)):
            return ctx.abs(node)
    # the nearest upstream job that wrote a tomograms.star
    if ctx.scan is not None:
        for k in _ancestors(ctx.scan, proc.key):
            p = os.path.join(ctx.root, k, "tomograms.star")
            if os.path.isfile(p):
                return p
    return None


def _parse_particle_job(ctx: _Context, proc: _Process, kind: str) -> JobRecord:
    jobdir = os.path.join(ctx.root, proc.key)
    rec = _job_record(ctx, proc)
    loaded_parts: list[_Particles] = []
    if kind in ("extract", "import_particles"):
        path = os.path.join(jobdir, "particles.star")
        stage = "extracted" if kind == "extract" else "picked"
        parts = _load_particles(ctx, path, proc.key, False, _tomograms_star_for(ctx, proc, jobdir))
        loaded_parts.append(parts)
        ctx.files.append(path)
        rec.particle_sets.append(_set("particles", stage, parts.frame, path, parts))
    elif kind == "class2d":
        path = _last_iteration(jobdir)
        if path is None:
            raise FileNotFoundError(f"{jobdir}: no run_itNNN_data.star (Class2D not finished?)")
        parts = _load_particles(ctx, path, proc.key, False)
        loaded_parts.append(parts)
        ctx.files.append(path)
        parts.frame["class_id"] = np.where(parts.class_number > 0, parts.class_number - 1, -1)
        name = os.path.basename(path)[: -len(".star")]
        rec.particle_sets.append(_set(name, "classified2d", parts.frame, path, parts))
    elif kind in ("class3d", "abinitio"):
        path = _last_iteration(jobdir)
        if path is None:
            raise FileNotFoundError(f"{jobdir}: no run_itNNN_data.star (job not finished?)")
        parts = _load_particles(ctx, path, proc.key, True, _tomograms_star_for(ctx, proc, jobdir))
        loaded_parts.append(parts)
        ctx.files.append(path)
        rec.particle_sets += _class_sets(path, parts, "classified3d")
    elif kind == "refine3d":
        path = os.path.join(jobdir, "run_data.star")
        parts = _load_particles(ctx, path, proc.key, True, _tomograms_star_for(ctx, proc, jobdir))
        loaded_parts.append(parts)
        ctx.files.append(path)
        parts.frame["class_id"] = np.where(parts.class_number > 0, parts.class_number - 1, -1)
        rec.particle_sets.append(_set("run_data", "refined", parts.frame, path, parts))
    elif kind == "select2d":
        path = os.path.join(jobdir, "particles.star")
        if not os.path.isfile(path):
            return rec  # a Select of micrographs or class averages: no particles
        procs = ctx.scan.extra["processes"] if ctx.scan else {}
        parent_kinds = [
            (k, _kind(procs[k])) for k in (ctx.scan.extra["parents"].get(proc.key, [])
                                           if ctx.scan else []) if k in procs
        ]
        class3d_parent = any(k in ("class3d", "abinitio") for _, k in parent_kinds)
        stage = "classified3d" if class3d_parent else "selected2d"
        parts = _load_particles(ctx, path, proc.key, class3d_parent, image_names=True)
        loaded_parts.append(parts)
        ctx.files.append(path)
        parts.frame["class_id"] = np.where(parts.class_number > 0, parts.class_number - 1, -1)
        rec.particle_sets.append(_set("particles", stage, parts.frame, path, parts))
        for pkey, pkind in parent_kinds:
            if pkind != "class2d":
                continue
            ppath = _last_iteration(os.path.join(ctx.root, pkey))
            if ppath is None:
                ctx.problems.append(Problem(os.path.join(ctx.root, pkey), (
                    "parent Class2D has no run_itNNN_data.star; rejected particles unknown")))
                continue
            pparts = _load_particles(ctx, ppath, pkey, False, image_names=True)
            loaded_parts.append(pparts)
            ctx.files.append(ppath)
            keep = _rejected_mask(parts, pparts)
            frame = pparts.frame[keep].copy()
            frame["class_id"] = np.where(pparts.class_number[keep] > 0,
                                         pparts.class_number[keep] - 1, -1)
            rec.particle_sets.append(_set("rejected", "rejected2d", frame, ppath, pparts))
            break
    elif kind == "tomo_pick":
        path = os.path.join(jobdir, "particles.star")
        if not os.path.isfile(path):
            opt = os.path.join(jobdir, "optimisation_set.star")
            if os.path.isfile(opt):
                data = read_star(opt, parse_as_string=STRING_LABELS)
                for block in data.values():
                    if isinstance(block, dict) and block.get("rlnTomoParticlesFile"):
                        path = ctx.abs(str(block["rlnTomoParticlesFile"]))
                ctx.files.append(opt)
        parts = _load_particles(ctx, path, proc.key, False, _tomograms_star_for(ctx, proc, jobdir))
        loaded_parts.append(parts)
        ctx.files.append(path)
        rec.particle_sets.append(_set("particles", "picked", parts.frame, path, parts))
    else:
        return rec
    mics: dict[str, MicrographRecord] = {}
    for loaded in loaded_parts:
        for m in _particle_micrographs(ctx, loaded, proc.key):
            mics.setdefault(m.path, m)
    rec.micrographs = list(mics.values())
    return rec


def _rejected_mask(selected: _Particles, parent: _Particles) -> np.ndarray:
    """Rows of the parent Class2D table that Select left out: by rlnImageName when both have it,
    else by (micrograph, coordinates rounded to 0.01 px)."""
    if selected.image_name is not None and parent.image_name is not None:
        return ~pd.Index(parent.image_name).isin(pd.Index(selected.image_name))

    def keys(frame: pd.DataFrame) -> pd.MultiIndex:
        return pd.MultiIndex.from_arrays([
            frame["micrograph"].to_numpy(dtype=object),
            np.round(frame["raw_x"].to_numpy(), 2),
            np.round(frame["raw_y"].to_numpy(), 2),
        ])

    return ~keys(parent.frame).isin(keys(selected.frame))


def parse_job(scan: ProjectScan, job_key: str) -> JobRecord:
    """Read one job's outputs into particle sets and micrograph records.

    Problems with the job's files (missing, malformed) are recorded in ``JobRecord.problems``;
    only an unknown ``job_key`` raises (``KeyError``).
    """
    procs: dict[str, _Process] = scan.extra.get("processes", {})
    key = job_key.rstrip("/")
    if key not in procs:
        raise KeyError(f"{scan.root}: no job {job_key!r} in {PIPELINE}")
    proc = procs[key]
    ctx = _Context(scan, scan.root)
    js = next(j for j in scan.jobs if j.key == key)
    kind = js.kind
    if not js.harvestable:  # failed, running, queued: outputs are partial or absent
        rec = _job_record(ctx, proc)
        rec.files = list(js.files)
        return rec
    try:
        if kind in ("motion", "ctf"):
            rec = _job_record(ctx, proc)
            name = "corrected_micrographs.star" if kind == "motion" else "micrographs_ctf.star"
            rec.micrographs = _parse_micrograph_star(ctx, os.path.join(scan.root, key, name), key)
        elif kind in ("manual_pick", "auto_pick"):
            rec = _parse_pick(ctx, proc, sparse=kind == "manual_pick")
        else:
            rec = _parse_particle_job(ctx, proc, kind)
    except (ValueError, OSError) as exc:
        rec = _job_record(ctx, proc)
        path = getattr(exc, "filename", None) or os.path.join(scan.root, key)
        ctx.problems.append(Problem(str(path), str(exc)))
    rec.problems += ctx.problems
    stamps = []
    for f in dict.fromkeys(ctx.files):
        try:
            stamps.append(FileStamp.of(f))
        except OSError:
            pass
    rec.files = stamps or list(js.files)
    return rec
