"""``default_pipeline.star`` of RELION 3.0 / 3.1 / 4 / 5: processes (job type, status, alias),
input/output edges → each job's parents; job status overridden by ``RELION_JOB_EXIT_*`` markers
(reference/formats.md §4.1)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from harvest import fsguard
from harvest.records import Problem
from harvest.relion.tables import STRING_LABELS
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


class RelionProjectError(ValueError):
    """A RELION project whose pipeline cannot be read (the message names the file)."""


@dataclass
class Process:
    """One process of the pipeline, as written there."""

    key: str  # "Refine3D/job025"
    name: str  # "Refine3D/job025/" as written
    alias: str
    jtype: str  # job type, e.g. "AutoPick"
    raw_type: str  # label (4/5) or job type (3.x)
    label: str  # full label for 4/5 ("relion.autopick.log"), "" for 3.x
    status: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    parent_types: list[str] = field(default_factory=list)  # job types of the input nodes' jobs
    options: dict[str, str] = field(default_factory=dict)  # job.star / run.job (Select only)


def iso(ns: int | None) -> str | None:
    """A file time in ns → ISO 8601 UTC with seconds (``2024-01-02T03:04:05Z``)."""
    if ns is None:
        return None
    stamp = datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def stat_ns(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


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


def read_pipeline(root: str, problems: list | None = None
                  ) -> tuple[str, list[Process], dict[str, list[str]]]:
    """(version, processes in pipeline order, job key → parent job keys) of a project.

    A process whose name leaves the project (``/etc/``, ``../other/job001/``) is left out and,
    when ``problems`` is given, one :class:`~harvest.records.Problem` says so; nothing under
    it is opened."""
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

    processes: list[Process] = []
    by_name: dict[str, Process] = {}
    outside = []
    for name, alias, jtype, raw, label, status in zip(
        names, aliases, jtypes, raw_types, labels, statuses
    ):
        if _leaves_project(name):
            outside.append(name)
            continue
        if not jtype:  # unknown label/code: fall back on the directory name
            jtype = name.split("/", 1)[0]
        alias = "" if alias in ("None", "nan", "") else alias.rstrip("/").split("/")[-1]
        p = Process(name.rstrip("/"), name, alias, jtype, raw, label, status)
        processes.append(p)
        by_name[name] = p
        by_name[name.rstrip("/")] = p

    def edges(block: str, a: str, b: str) -> list[tuple[str, str]]:
        df = data.get(block)
        if not isinstance(df, pd.DataFrame) or len(df) == 0 or a not in df or b not in df:
            return []
        return list(zip(df[a].astype(str), df[b].astype(str)))

    if outside and problems is not None:
        problems.append(Problem(path, (
            f"{len(outside)} process(es) named outside the project left out (first: "
            f"{fsguard.shown(outside[0])!r})")))
    producer: dict[str, Process] = {}
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
    for p in processes:
        p.parent_types = list(dict.fromkeys(
            producer[n].jtype for n in p.inputs if n in producer and producer[n] is not p))
        if p.jtype in OPTION_TYPES and not p.label:  # 3.x: the options say what the job did
            p.options = job_options(os.path.join(root, p.key))
    parents_of = {
        p.key: list(
            dict.fromkeys(
                producer[n].key for n in p.inputs if n in producer and producer[n] is not p
            )
        )
        for p in processes
    }
    return version, processes, parents_of


def _leaves_project(name: str) -> bool:
    """Whether a pipeline name (process or node) is absolute or climbs out with ``..``."""
    norm = os.path.normpath(name)
    return os.path.isabs(name) or norm == ".." or norm.startswith("../") or norm == "."


# Job types whose options decide how they are harvested in 3.x (4/5 say it in the label).
OPTION_TYPES = frozenset({"Select"})


def job_options(jobdir: str) -> dict[str, str]:
    """A job's options (``job.star`` of 3.1+ ``data_joboptions_values``, else 3.0 ``run.job``
    lines ``name == value``); {} when neither can be read."""
    star = os.path.join(jobdir, "job.star")
    try:
        if os.path.isfile(star):
            data = read_star(star, parse_as_string=("rlnJobOptionVariable", "rlnJobOptionValue"))
            values = data.get("joboptions_values")
            if isinstance(values, pd.DataFrame) and "rlnJobOptionVariable" in values.columns:
                return dict(zip(values["rlnJobOptionVariable"].astype(str),
                                values["rlnJobOptionValue"].astype(str)))
        with fsguard.open_file(os.path.join(jobdir, "run.job"), "r", errors="replace") as fh:
            return {a.strip(): b.strip() for a, _, b in
                    (line.partition("==") for line in fh) if _}
    except (OSError, StarFormatError):
        return {}


def job_status(root: str, proc: Process, version: str) -> tuple[str, str | None]:
    """Status (a marker overrides the pipeline) and completion time (marker mtime, ISO)."""
    jobdir = os.path.join(root, proc.key)
    for marker, status in EXIT_MARKERS:
        ns = stat_ns(os.path.join(jobdir, marker))
        if ns is not None:
            return status, iso(ns)
    if version == "3.0" and proc.status == "running" and proc.outputs:
        # 3.0 marks a running job finished once all its output nodes exist
        if all(os.path.exists(os.path.join(root, n)) for n in proc.outputs):
            return "completed", None
    return proc.status, None


def ancestors(parents: dict[str, list[str]], key: str) -> list[str]:
    """Every job upstream of ``key``, nearest first (breadth-first over the parents)."""
    seen: list[str] = []
    todo = list(parents.get(key, []))
    while todo:
        k = todo.pop(0)
        if k in seen:
            continue
        seen.append(k)
        todo += parents.get(k, [])
    return seen
