"""CryoSPARC project parser: ``project.json`` + ``J*/job.json`` + ``.cs`` outputs → records.

Two steps (see :mod:`harvest.records`):

* :func:`scan_project` reads the project's bookkeeping only: ``project.json``,
  ``job_manifest.json`` and every ``J*/job.json`` (formats.md §1). Job type from ``job_type``,
  ``type`` or ``spec.type`` (in that order); outputs from ``output_result_groups`` /
  ``output_results`` (≤ v4) or ``spec.outputs.<name>.results`` (v5 shape). A job's files are
  its ``job.json`` and the last version of each output result's metafile (index 0 for
  passthrough results), paths relative to the project directory.
* :func:`parse_job` reads one completed job's ``.cs`` outputs: particle sets (main file +
  passthrough files joined on ``uid``) and micrograph metadata (CTF, shape, pixel size).

How raw job types map to normalised kinds and curation stages is data: :data:`JOB_TYPES` and
:data:`GROUP_STAGES` below.

Coordinates (DESIGN.md pixel frame: pixels of the micrograph file named by
``location/micrograph_path``, x = column, y = row, no flip):

* ``raw_x, raw_y`` = ``location/center_{x,y}_frac`` × ``location/micrograph_shape`` ([ny, nx])
  through :func:`harvest.conventions.cryosparc_frac_to_pixels`.
* ``x, y`` = recentred with the job's refined shifts
  (:func:`harvest.conventions.recentre_cryosparc`: ``x − shift × alignment psize / micrograph
  psize``) for the stages in :data:`RECENTRE_STAGES` (``refined``, ``classified3d``) only. 2D
  classification shifts are not applied: they align noisy 2D class averages, not the particle
  centre, so 2D stages keep ``x = raw_x``.
* Per-class outputs (hetero refinement, 3D classification, ab-initio ``particles_class_N``) use
  the class group's own ``alignments3D``; without it ``alignments_class_N`` (≤ v4.4); without
  that ``alignments3D_multi`` at class N (v4.5+, per-class shifts of shape [n, K, 2]; psize
  [n] or [n, K]); a set that is not per class but has only ``alignments3D_multi`` uses each
  particle's ``class_posterior`` argmax. Other ``alignments3D_multi`` layouts are not handled:
  the set keeps its raw positions and a Problem says why.
* Micrograph shape and pixel size are read per distinct ``location/micrograph_path`` (in the
  file that holds the path) and applied to its particles: one micrograph, one shape.

Throughput: a 1M-particle refinement (main + passthrough) parses in about a second: files are
memory-mapped and only the needed columns copied, the join is a hash lookup on uid, and path
strings are factorised as bytes and decoded once per micrograph (see harvest.csfile).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from harvest.conventions import cryosparc_frac_to_pixels, micrograph_key, recentre_cryosparc
from harvest.csfile import (
    CsFileError,
    cs_field_names,
    decode_strings,
    factorize_bytes,
    join_passthrough,
    read_cs,
)
from harvest.records import (
    FileStamp,
    JobRecord,
    JobScan,
    MicrographRecord,
    ParticleSetRecord,
    Problem,
    ProjectScan,
    empty_particles,
)


@dataclass(frozen=True)
class JobType:
    """How a raw CryoSPARC job type is harvested.

    ``kind``: one of :data:`harvest.records.JOB_KINDS`. ``stage``: curation stage of its particle
    outputs (None: no particles). ``sparse``: manual picks cover only some particles.
    ``per_class``: one set per ``particles_class_N`` group (``particles_all_classes`` skipped, it
    duplicates them). ``exposures``: read micrograph metadata (CTF, motion, shape) from its
    exposure outputs. ``extracted_if_blob``: stage becomes ``extracted`` when the particles carry
    ``blob/*`` fields (imported particle stacks rather than coordinates).
    """

    kind: str
    stage: str | None = None
    sparse: bool = False
    per_class: bool = False
    exposures: bool = False
    extracted_if_blob: bool = False


JOB_TYPES: dict[str, JobType] = {
    # picking
    "manual_picker_v2": JobType("manual_pick", "picked", sparse=True),
    "manual_picker": JobType("manual_pick", "picked", sparse=True),
    "blob_picker_gpu": JobType("auto_pick", "picked"),
    "template_picker_gpu": JobType("auto_pick", "picked"),
    "topaz_extract": JobType("auto_pick", "picked"),
    "inspect_picks_v2": JobType("auto_pick", "picked"),
    # extraction
    "extract_micrographs_multi": JobType("extract", "extracted"),
    "extract_micrographs_cpu_parallel": JobType("extract", "extracted"),
    "restack_particles": JobType("extract", "extracted"),
    "downsample_particles": JobType("extract", "extracted"),
    # 2D
    "class_2D": JobType("class2d", "classified2d"),
    "class_2D_new": JobType("class2d", "classified2d"),
    "select_2D": JobType("select2d", "selected2d"),
    # 3D
    "homo_refine": JobType("refine3d", "refined"),
    "homo_refine_new": JobType("refine3d", "refined"),
    "nonuniform_refine": JobType("refine3d", "refined"),
    "nonuniform_refine_new": JobType("refine3d", "refined"),
    "new_local_refine": JobType("refine3d", "refined"),
    "local_refine": JobType("refine3d", "refined"),
    "hetero_refine": JobType("hetero_refine", "classified3d", per_class=True),
    "class_3D": JobType("class3d", "classified3d", per_class=True),
    "homo_abinit": JobType("abinitio", "classified3d", per_class=True),
    # imports
    "import_particles": JobType("import_particles", "picked", extracted_if_blob=True),
    "import_movies": JobType("import_movies", exposures=True),
    "import_micrographs": JobType("import_micrographs", exposures=True),
    # micrograph preprocessing
    "patch_motion_correction_multi": JobType("motion", exposures=True),
    "patch_ctf_estimation_multi": JobType("ctf", exposures=True),
    "ctf_estimation": JobType("ctf", exposures=True),
    "curate_exposures_v2": JobType("curate", exposures=True),
}
UNKNOWN_JOB_TYPE = JobType("other")

# (raw job type, output group name) -> stage, where a group's stage differs from its job's.
GROUP_STAGES: dict[tuple[str, str], str] = {
    ("select_2D", "particles_selected"): "selected2d",
    ("select_2D", "particles_excluded"): "rejected2d",
}
# Particle groups of other jobs whose names contain these are not curated positives: skipped.
NEGATIVE_GROUP_WORDS: tuple[str, ...] = ("excluded", "rejected")
# Stages whose refined shifts move the particle centre (see module docstring).
RECENTRE_STAGES = frozenset({"refined", "classified3d"})

# CryoSPARC job status -> records status.
STATUSES: dict[str, str] = {
    "completed": "completed",
    "failed": "failed",
    "killed": "killed",
    "running": "running",
    "started": "running",
    "launched": "running",
    "waiting": "running",
    "queued": "queued",
    "building": "queued",
    "aborted": "aborted",
}

# Micrograph metadata of exposure outputs: record attribute -> candidate fields, first wins.
# CTF fit resolution and figure of merit live in ``ctf/*`` per pyem's mapping; ``ctf_stats/*`` is
# accepted as well. Total motion: CryoSPARC stores trajectories in separate files, not a scalar;
# a scalar field is used if one of these exists, else the length of the ``rigid_motion/path``
# trajectory (see _trajectory_motion), else None.
EXPOSURE_FIELDS: dict[str, tuple[str, ...]] = {
    "path": ("micrograph_blob/path",),
    "shape": ("micrograph_blob/shape",),
    "pixel_size": ("micrograph_blob/psize_A",),
    "defocus_u": ("ctf/df1_A",),
    "defocus_v": ("ctf/df2_A",),
    "defocus_angle_rad": ("ctf/df_angle_rad",),
    "ctf_max_res": ("ctf/ctf_fit_to_A", "ctf_stats/ctf_fit_to_A"),
    "ctf_fom": ("ctf/cross_corr_ctffind4", "ctf_stats/cross_corr_ctffind4", "ctf_stats/cross_corr"),
    "total_motion": (
        "rigid_motion/total_motion_px",
        "rigid_motion/total_motion",
        "motion/total_motion_px",
        "motion/total_motion",
        "ctf_stats/total_motion",
    ),
}

# Rigid-motion trajectory files (total motion is derived from them when no scalar exists).
TRAJECTORY_FIELDS: tuple[str, ...] = ("rigid_motion/path", "rigid_motion/psize_A")

# Fields a particle set reads, by role. Per-row fields are joined on uid across the group's
# files; per-micrograph fields are read beside ``location/micrograph_path`` and looked up through
# the path's code (a micrograph has one shape and pixel size); per-set fields come from the
# first row of the first file that has them.
PATH_FIELD = "location/micrograph_path"
ROW_FIELDS: tuple[str, ...] = (
    "uid",
    "location/center_x_frac",
    "location/center_y_frac",
    "pick_stats/ncc_score",
)
CLASS_FIELDS = {"2d": ("alignments2D/class",), "3d": ("alignments3D/class",),
                "any": ("alignments2D/class", "alignments3D/class")}
SHIFT_FIELDS: tuple[str, ...] = ("alignments3D/shift", "alignments3D/psize_A", "blob/psize_A")
MIC_FIELDS: tuple[str, ...] = (
    "location/micrograph_uid",
    "location/micrograph_shape",
    "location/micrograph_psize_A",
)
SET_FIELDS: tuple[str, ...] = (
    "blob/shape", "blob/psize_A", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast",
)
STAGES_2D = frozenset({"classified2d", "selected2d", "rejected2d"})

_CLASS_GROUP = re.compile(r"^particles_class_(\d+)$")
_JOB_DIR = re.compile(r"^J\d+$")
_EXTRA_KEY = "cryosparc_jobs"


class NotACryosparcProject(FileNotFoundError):
    """The directory has neither ``project.json`` nor any ``J*/job.json``."""


# ---------------------------------------------------------------------------------------------
# job.json reading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    name: str
    metafile: str  # relative to the project directory, '>' stripped
    passthrough: bool


@dataclass
class _Group:
    name: str
    type: str
    results: list[_Result] = field(default_factory=list)


@dataclass
class _JobInfo:
    dir: str
    json_path: str
    raw_type: str
    groups: list[_Group]


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _to_iso(value) -> str | None:
    """``{"$date": ms | ISO}``, ms, or ISO string → ISO 8601 UTC (``2024-01-02T03:04:05.678Z``)."""
    if isinstance(value, dict):
        value = value.get("$date")
        if isinstance(value, dict):  # {"$date": {"$numberLong": "..."}}
            value = value.get("$numberLong")
            value = int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else None
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            dt = datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
        elif isinstance(value, str):
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _raw_type(job: dict) -> str:
    for value in (job.get("job_type"), job.get("type"), (job.get("spec") or {}).get("type")):
        if isinstance(value, str) and value:
            return value
    return "unknown"


def _clean_rel(path: str) -> str:
    return path[1:] if path.startswith(">") else path


def _pick_metafile(metafiles, passthrough: bool) -> str | None:
    if not isinstance(metafiles, list) or not metafiles:
        return None
    value = metafiles[0] if passthrough else metafiles[-1]
    return _clean_rel(value) if isinstance(value, str) and value else None


def _output_groups(job: dict) -> list[_Group]:
    """Output groups with their results at the last version (≤ v4 and v5 job.json shapes)."""
    groups: dict[str, _Group] = {}
    for g in job.get("output_result_groups") or []:
        if isinstance(g, dict) and isinstance(g.get("name"), str):
            groups[g["name"]] = _Group(g["name"], str(g.get("type") or ""))
    for r in job.get("output_results") or []:
        if not isinstance(r, dict):
            continue
        gname = r.get("group_name")
        if not isinstance(gname, str):
            continue
        passthrough = bool(r.get("passthrough"))
        meta = _pick_metafile(r.get("metafiles"), passthrough)
        if meta is None:
            continue
        rtype = str(r.get("type") or "")
        group = groups.setdefault(gname, _Group(gname, rtype.split(".", 1)[0]))
        group.results.append(_Result(str(r.get("name") or ""), meta, passthrough))
    outputs = (job.get("spec") or {}).get("outputs") if isinstance(job.get("spec"), dict) else None
    if isinstance(outputs, list):  # tolerate a list of {name, type, results}
        outputs = {o.get("name"): o for o in outputs if isinstance(o, dict)}
    if isinstance(outputs, dict):
        for gname, out in outputs.items():
            if not isinstance(gname, str) or not isinstance(out, dict) or gname in groups:
                continue
            group = _Group(gname, str(out.get("type") or ""))
            for r in out.get("results") or []:
                if not isinstance(r, dict):
                    continue
                passthrough = bool(r.get("passthrough"))
                meta = _pick_metafile(r.get("metafiles"), passthrough)
                if meta is not None:
                    group.results.append(_Result(str(r.get("name") or ""), meta, passthrough))
            groups[gname] = group
    return list(groups.values())


def _parents(job: dict) -> list[str]:
    parents = job.get("parents")
    if isinstance(parents, list):
        return [str(p) for p in parents if isinstance(p, str)]
    found: list[str] = []
    for g in job.get("input_slot_groups") or []:
        for c in (g or {}).get("connections") or []:
            uid = (c or {}).get("job_uid")
            if isinstance(uid, str) and uid not in found:
                found.append(uid)
    return found


def _job_number(key: str) -> tuple[int, str]:
    digits = key[1:] if key[:1] == "J" else ""
    return (int(digits), key) if digits.isdigit() else (1 << 62, key)


def _stamp(path: str) -> FileStamp | None:
    try:
        return FileStamp.of(path)
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------------------------


def scan_project(root: str | os.PathLike) -> ProjectScan:
    """Read a CryoSPARC project's bookkeeping (cheap: JSON files and stats only).

    ``root``: the project directory (holding ``project.json``). Every job directory with a
    ``job.json`` is listed, whatever its status; unreadable ``job.json`` files become Problems.
    Raises :class:`NotACryosparcProject` when there is neither ``project.json`` nor a job.
    """
    root = os.path.abspath(os.fspath(root))
    problems: list[Problem] = []
    files: list[FileStamp] = []
    project: dict = {}
    pj = os.path.join(root, "project.json")
    if os.path.isfile(pj):
        try:
            project = _read_json(pj)
        except (OSError, ValueError) as exc:
            problems.append(Problem(pj, f"cannot read project.json: {exc}"))
        stamp = _stamp(pj)
        if stamp:
            files.append(stamp)

    keys: set[str] = set()
    manifest = os.path.join(root, "job_manifest.json")
    if os.path.isfile(manifest):
        stamp = _stamp(manifest)
        if stamp:
            files.append(stamp)
        try:
            listed = _read_json(manifest).get("jobs") or []
            keys.update(str(k) for k in listed if isinstance(k, str))
        except (OSError, ValueError) as exc:
            problems.append(Problem(manifest, f"cannot read job_manifest.json: {exc}"))
    try:
        with os.scandir(root) as it:
            for entry in it:
                if _JOB_DIR.match(entry.name) and entry.is_dir():
                    if os.path.isfile(os.path.join(entry.path, "job.json")):
                        keys.add(entry.name)
    except OSError as exc:
        raise NotACryosparcProject(f"{root}: cannot list the project directory: {exc}") from None
    if not project and not keys and not os.path.isfile(pj):
        raise NotACryosparcProject(
            f"{root}: not a CryoSPARC project: no project.json and no J*/job.json"
        )
    if not os.path.isfile(pj):
        problems.append(Problem(pj, "project.json missing; jobs read from J*/job.json"))

    jobs: list[JobScan] = []
    infos: dict[str, _JobInfo] = {}
    versions: list[str] = []
    for key in sorted(keys, key=_job_number):
        job_dir = os.path.join(root, key)
        jj = os.path.join(job_dir, "job.json")
        if not os.path.isfile(jj):
            problems.append(Problem(jj, "job listed in job_manifest.json has no job.json"))
            continue
        stamp = _stamp(jj)
        try:
            job = _read_json(jj)
        except (OSError, ValueError) as exc:
            problems.append(Problem(jj, f"cannot read job.json: {exc}"))
            if stamp:
                files.append(stamp)
            continue
        if stamp:
            files.append(stamp)
        raw_type = _raw_type(job)
        jt = JOB_TYPES.get(raw_type, UNKNOWN_JOB_TYPE)
        status = STATUSES.get(str(job.get("status") or "").lower(), "unknown")
        groups = _output_groups(job)
        job_files = [stamp] if stamp else []
        seen = {jj}
        for g in groups:
            for r in g.results:
                path = os.path.normpath(os.path.join(root, r.metafile))
                if path in seen:
                    continue
                seen.add(path)
                s = _stamp(path)
                if s:
                    job_files.append(s)
        version = job.get("version") or job.get("cryosparc_version")
        if isinstance(version, str) and version:
            versions.append(version)
        jkey = key  # the directory name is the uid CryoSPARC uses in metafile paths
        jobs.append(
            JobScan(
                key=jkey,
                raw_type=raw_type,
                kind=jt.kind,
                status=status,
                parents=_parents(job),
                title=str(job.get("title") or ""),
                created_at=_to_iso(job.get("created_at")),
                completed_at=_to_iso(job.get("completed_at")),
                files=job_files,
            )
        )
        infos[jkey] = _JobInfo(job_dir, jj, raw_type, groups)

    version = project.get("version") or project.get("cryosparc_version")
    if not (isinstance(version, str) and version):
        version = versions[-1] if versions else "unknown"
    return ProjectScan(
        root=root,
        software="cryosparc",
        version=str(version),
        title=str(project.get("title") or ""),
        uid=str(project.get("uid") or ""),
        jobs=jobs,
        problems=problems,
        files=files,
        extra={_EXTRA_KEY: infos},
    )


# ---------------------------------------------------------------------------------------------
# parse
# ---------------------------------------------------------------------------------------------


def parse_job(scan: ProjectScan, job_key: str) -> JobRecord:
    """Read one job's outputs into particle sets and micrograph records.

    Jobs that are not completed, and job types not in :data:`JOB_TYPES`, come back without
    particle sets. Unreadable or incomplete outputs become Problems (the rest of the job is
    still returned). Coordinates: see the module docstring.
    """
    js = next((j for j in scan.jobs if j.key == job_key), None)
    infos = scan.extra.get(_EXTRA_KEY) or {}
    if js is None or job_key not in infos:
        raise KeyError(f"{scan.root}: no job {job_key!r} in this project scan")
    info: _JobInfo = infos[job_key]
    rec = JobRecord(
        key=js.key,
        raw_type=js.raw_type,
        kind=js.kind,
        status=js.status,
        parents=list(js.parents),
        title=js.title,
        created_at=js.created_at,
        completed_at=js.completed_at,
        files=list(js.files),
    )
    if not js.harvestable:
        return rec
    jt = JOB_TYPES.get(js.raw_type)
    if jt is None:
        return rec
    mics: dict[str, MicrographRecord] = {}
    if jt.exposures:
        for g in info.groups:
            if _is_exposure_group(g):
                _parse_exposure_group(scan.root, g, mics, rec.problems)
    if jt.stage is not None:
        for g in info.groups:
            plan = _particle_group_plan(js.raw_type, jt, g)
            if plan is None:
                continue
            stage, class_id = plan
            pset = _parse_particle_group(scan.root, jt, g, stage, class_id, mics, rec.problems)
            if pset is not None:
                rec.particle_sets.append(pset)
    rec.micrographs = list(mics.values())
    _check_micrographs_exist(info.dir, rec.micrographs, rec.problems)
    return rec


def _is_exposure_group(g: _Group) -> bool:
    return g.type == "exposure" or g.name.startswith(("exposures", "micrographs"))


def _particle_group_plan(raw_type: str, jt: JobType, g: _Group) -> tuple[str, int | None] | None:
    """(stage, class_id) of an output group that carries particles, or None to skip it."""
    if not (g.type == "particle" or g.name.startswith("particles")):
        return None
    stage = GROUP_STAGES.get((raw_type, g.name))
    if stage is not None:
        return stage, None
    if any(word in g.name for word in NEGATIVE_GROUP_WORDS):
        return None
    class_id = None
    if jt.per_class:
        if g.name == "particles_all_classes":
            return None
        m = _CLASS_GROUP.match(g.name)
        if m:
            class_id = int(m.group(1))
    return jt.stage, class_id


def _group_files(root: str, g: _Group) -> tuple[list[str], list[str]]:
    """Absolute main metafiles (job's own results) and passthrough metafiles of a group."""
    main: list[str] = []
    passthrough: list[str] = []
    for r in g.results:
        path = os.path.normpath(os.path.join(root, r.metafile))
        target = passthrough if r.passthrough else main
        if path not in main and path not in passthrough:
            target.append(path)
    if not main and passthrough:  # a group that only passes particles through
        main.append(passthrough.pop(0))
    return main, passthrough


def _problem(path: str, exc: Exception) -> Problem:
    """A Problem whose message does not repeat the path (readers name the file themselves)."""
    msg = str(exc)
    for prefix in (f"{path}: ", f"{os.path.abspath(path)}: "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return Problem(path, msg)


def _fingerprint(paths: list[str]) -> str:
    h = hashlib.sha1()
    for p in sorted(paths):
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{p}\0missing\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _first_value(arrays: list[np.ndarray], name: str, cast=float):
    """Row 0 of the first array that has ``name``, as a Python scalar (first element of vector
    fields); None when absent, empty or not finite."""
    for arr in arrays:
        if name in arr.dtype.names:
            if len(arr) == 0:
                return None
            v = np.asarray(arr[name][0]).reshape(-1)
            if v.size == 0:
                return None
            value = v[0].item()
            if isinstance(value, float) and not np.isfinite(value):
                return None
            return cast(value)
    return None


@dataclass
class _Loaded:
    """A particle group's files, read once each and joined on uid (main file's row order).

    ``cols``: per-row fields. The micrograph path is not joined as bytes (a random gather of
    ~100 bytes per row): it is factorised in its own file's order and only the codes are
    carried over. ``path_codes``: per main row, index into ``path_values`` (-1: no row in that
    file). ``mic_fields``: per distinct path, the location fields read beside it.
    """

    cols: dict
    arrays: list[np.ndarray]
    main_file: str
    files: list[str]
    own_fields: frozenset = frozenset()
    path_values: np.ndarray | None = None
    path_codes: np.ndarray | None = None
    mic_fields: dict = field(default_factory=dict)


def _row_fields(stage: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    if stage in RECENTRE_STAGES:
        return ROW_FIELDS + CLASS_FIELDS["3d"] + SHIFT_FIELDS + ("alignments3D_multi/",) + extra
    if stage in STAGES_2D:
        return ROW_FIELDS + CLASS_FIELDS["2d"]
    return ROW_FIELDS + CLASS_FIELDS["any"]


def _load_group(root: str, g: _Group, row_fields: tuple[str, ...], problems: list[Problem]):
    """Read and join a group's files; a :class:`_Loaded` or None (Problems recorded)."""
    main, passthrough = _group_files(root, g)
    if not main:
        return None
    files = main + passthrough
    missing = [p for p in files if not os.path.isfile(p)]
    if missing:
        problems.append(
            Problem(missing[0], f"output '{g.name}': {len(missing)} metafile(s) missing")
        )
        return None
    wanted = (*row_fields, PATH_FIELD, *MIC_FIELDS, *SET_FIELDS)
    arrays = []
    for p in files:
        try:
            arrays.append(read_cs(p, fields=wanted))  # one pass over each file
        except CsFileError as exc:
            problems.append(_problem(p, exc))
            return None
    exact = {f for f in row_fields if not f.endswith("/")}
    prefixes = tuple(f for f in row_fields if f.endswith("/"))

    def per_row(arr: np.ndarray) -> np.ndarray:
        names = [n for n in arr.dtype.names if n in exact or (prefixes and n.startswith(prefixes))]
        return arr[names]  # a view: only these fields are gathered by the join

    cols = join_passthrough(per_row(arrays[0]), *[per_row(a) for a in arrays[1:]])
    for other, unmatched in zip(files[1:], cols.unmatched):
        if unmatched:
            problems.append(
                Problem(
                    other,
                    f"{unmatched} of {len(arrays[0])} particles of {main[0]} have no row "
                    "(uid) here; their fields from this file are missing",
                )
            )
    own = frozenset(n for a in arrays[: len(main)] for n in a.dtype.names)
    loaded = _Loaded(cols, arrays, main[0], files, own_fields=own)
    path_file = next((i for i, a in enumerate(arrays) if PATH_FIELD in a.dtype.names), None)
    if path_file is not None:
        arr = arrays[path_file]
        key = arr["location/micrograph_uid"] if "location/micrograph_uid" in arr.dtype.names else None
        first, codes = factorize_bytes(arr[PATH_FIELD], key=key)
        if path_file:
            rows, found = cols.rows[path_file - 1], cols.found[path_file - 1]
            codes = np.where(found, codes[rows], -1)
        loaded.path_values = arr[PATH_FIELD][first]
        loaded.path_codes = codes
        loaded.mic_fields = {f: arr[f][first] for f in MIC_FIELDS if f in arr.dtype.names}
    return loaded


def _parse_particle_group(
    root: str,
    jt: JobType,
    g: _Group,
    stage: str,
    class_id: int | None,
    mics: dict[str, MicrographRecord],
    problems: list[Problem],
) -> ParticleSetRecord | None:
    extra: tuple[str, ...] = ()
    if class_id is not None:
        extra = (f"alignments_class_{class_id}/",)
    main, passthrough = _group_files(root, g)
    if jt.extracted_if_blob and main:
        try:  # header only: does any file carry particle images?
            if any(n.startswith("blob/") for p in main + passthrough if os.path.isfile(p)
                   for n in cs_field_names(p)):
                stage = "extracted"
        except CsFileError:
            pass  # reported by _load_group below
    loaded = _load_group(root, g, _row_fields(stage, extra), problems)
    if loaded is None:
        return None
    cols, main_file = loaded.cols, loaded.main_file
    mic_shape = loaded.mic_fields.get("location/micrograph_shape")
    if (loaded.path_codes is None or mic_shape is None
            or not all(f in cols for f in ("location/center_x_frac", "location/center_y_frac"))):
        problems.append(
            Problem(main_file, "no location/* fields: particles cannot be placed on micrographs")
        )
        return None

    n_all = len(cols["uid"])
    codes = loaded.path_codes
    values = loaded.path_values
    mic_shape = np.asarray(mic_shape, dtype=np.float64)
    if mic_shape.ndim != 2 or mic_shape.shape[1] < 2:
        problems.append(Problem(main_file, "location/micrograph_shape is not [ny, nx]"))
        return None
    # A micrograph is usable when its path is not empty and its shape is not zero.
    usable = (mic_shape[:, 0] > 0) & (mic_shape[:, 1] > 0)
    if values.dtype.kind == "S":
        usable &= values != b""
    keep = codes >= 0
    keep[keep] = usable[codes[keep]]
    present = cols.present.get("location/center_x_frac")
    if present is not None:
        keep &= present
    dropped = int(n_all - np.count_nonzero(keep))
    if dropped:
        problems.append(
            Problem(
                main_file,
                f"{dropped} of {n_all} particles of '{g.name}' have no micrograph location "
                "(no passthrough row, empty path or zero shape); left out",
            )
        )
        cols = {k: v[keep] for k, v in cols.items()}
        codes = codes[keep]
    n = len(cols["uid"])

    raw_x, raw_y = cryosparc_frac_to_pixels(
        cols["location/center_x_frac"], cols["location/center_y_frac"], mic_shape[codes, :2]
    )
    x, y = raw_x, raw_y
    if stage in RECENTRE_STAGES and n:
        mpsize = loaded.mic_fields.get("location/micrograph_psize_A")
        mpsize = None if mpsize is None else np.asarray(mpsize, dtype=np.float64)[codes]
        x, y = _recentre(cols, loaded.own_fields, class_id, raw_x, raw_y, mpsize, main_file,
                         g.name, problems)

    score = (
        np.asarray(cols["pick_stats/ncc_score"], dtype=np.float64)
        if "pick_stats/ncc_score" in cols
        else np.full(n, np.nan)
    )
    classes = _class_ids(cols, stage, class_id, n)

    # Micrographs: each distinct path decoded once (codes index the distinct values).
    names = decode_strings(values)
    micrograph = _string_column(codes, names)
    used = np.zeros(len(names), dtype=bool)
    used[codes] = True
    _add_particle_micrographs(root, loaded.mic_fields, np.flatnonzero(used), names, mics)

    uid = np.ascontiguousarray(cols["uid"]).astype(np.uint64, copy=False).view(np.int64)
    particles = pd.DataFrame(
        {
            "micrograph": micrograph,
            "x": np.asarray(x, dtype=np.float64),
            "y": np.asarray(y, dtype=np.float64),
            "raw_x": np.asarray(raw_x, dtype=np.float64),
            "raw_y": np.asarray(raw_y, dtype=np.float64),
            "score": score,
            "class_id": classes,
            "uid": uid,
        }
    )
    if n == 0:
        particles = empty_particles()
    arrays = loaded.arrays
    return ParticleSetRecord(
        name=g.name,
        stage=stage,
        particles=particles,
        source_file=main_file,
        fingerprint=_fingerprint(loaded.files),
        class_id=class_id,
        box_size=_first_value(arrays, "blob/shape", int),
        image_pixel_size=_first_value(arrays, "blob/psize_A"),
        voltage=_first_value(arrays, "ctf/accel_kv"),
        cs=_first_value(arrays, "ctf/cs_mm"),
        amp_contrast=_first_value(arrays, "ctf/amp_contrast"),
        is_3d=False,
        sparse=jt.sparse,
    )


def _string_column(codes: np.ndarray, values: np.ndarray):
    """``values[codes]`` as a pandas string column, built in C through a pyarrow dictionary
    (a Python str per row costs ~1 s per million rows) when pyarrow is there."""
    try:
        import pyarrow as pa
    except ImportError:
        return values[codes]
    dictionary = pa.array(values.tolist(), type=pa.large_string())
    indices = pa.array(np.asarray(codes, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode().to_pandas()


def _class_ids(cols: dict, stage: str, class_id: int | None, n: int) -> np.ndarray:
    """Per-particle class: 3D stages read ``alignments3D/class`` (per-class sets: N), 2D stages
    ``alignments2D/class``, others whichever exists; -1 where unknown."""
    if stage in RECENTRE_STAGES:
        if class_id is not None:
            return np.full(n, class_id, dtype=np.int64)
        order = ("alignments3D/class",)
    elif stage in STAGES_2D:
        order = ("alignments2D/class",)
    else:
        order = ("alignments2D/class", "alignments3D/class")
    for name in order:
        if name in cols:
            return np.asarray(cols[name]).astype(np.int64)
    return np.full(n, -1, dtype=np.int64)


def _recentre(cols, own, class_id, raw_x, raw_y, mpsize, main_file, group, problems):
    """Recentred (x, y) from the set's 3D alignments; raw positions where that is impossible.

    ``own``: fields of the job's own (non-passthrough) files. The job's own ``alignments3D``
    wins; then the class's ``alignments_class_N`` or ``alignments3D_multi``; an
    ``alignments3D`` passed through from an upstream job comes last.
    """
    shift = psize = None
    n = len(raw_x)
    if "alignments3D/shift" in own:
        shift = cols["alignments3D/shift"]
        psize = cols.get("alignments3D/psize_A")
    elif class_id is not None and f"alignments_class_{class_id}/shift" in cols:
        shift = cols[f"alignments_class_{class_id}/shift"]
        psize = cols.get(f"alignments_class_{class_id}/psize_A")
    elif "alignments3D_multi/shift" in cols:
        multi = np.asarray(cols["alignments3D_multi/shift"])
        mps = cols.get("alignments3D_multi/psize_A")
        if multi.ndim == 3:
            if class_id is not None:
                pick = np.full(n, class_id, dtype=np.intp)
            elif "alignments3D_multi/class_posterior" in cols:
                pick = np.argmax(np.asarray(cols["alignments3D_multi/class_posterior"]), axis=1)
            else:
                pick = None
            if pick is not None and (pick < multi.shape[1]).all():
                shift = multi[np.arange(n), pick]
                if mps is not None:
                    mps = np.asarray(mps)
                    psize = mps[np.arange(n), pick] if mps.ndim == 2 else mps
        if shift is None:
            problems.append(
                Problem(main_file, f"'{group}': alignments3D_multi layout not understood "
                        f"(shift shape {multi.shape}); positions not recentred")
            )
            return raw_x, raw_y
    elif "alignments3D/shift" in cols:
        shift = cols["alignments3D/shift"]
        psize = cols.get("alignments3D/psize_A")
    if shift is None:
        return raw_x, raw_y  # nothing refined: the picked position is the best centre
    if psize is None:
        psize = cols.get("blob/psize_A")
    if psize is None or mpsize is None:
        missing = "alignment/blob psize_A" if psize is None else "location/micrograph_psize_A"
        problems.append(
            Problem(main_file, f"'{group}': no {missing}: positions not recentred")
        )
        return raw_x, raw_y
    shift = np.asarray(shift, dtype=np.float64).reshape(n, -1)
    psize = np.asarray(psize, dtype=np.float64).reshape(n)
    mpsize = np.asarray(mpsize, dtype=np.float64).reshape(n)
    x, y = recentre_cryosparc(raw_x, raw_y, shift[:, 0], shift[:, 1], psize, mpsize)
    ok = np.isfinite(x) & np.isfinite(y) & (psize > 0) & (mpsize > 0)
    if not ok.all():
        problems.append(
            Problem(main_file, f"'{group}': {int((~ok).sum())} particles without usable shift or "
                    "pixel size kept their picked position")
        )
        x = np.where(ok, x, raw_x)
        y = np.where(ok, y, raw_y)
    return x, y


def _abs(root: str, path: str) -> str:
    """Absolute path of a project-relative path; never touches the file system."""
    return os.path.normpath(os.path.join(root, path))


def _merge(mics: dict[str, MicrographRecord], m: MicrographRecord) -> None:
    old = mics.get(m.path)
    if old is None:
        mics[m.path] = m
        return
    for name in ("nx", "ny", "pixel_size", "defocus_u", "defocus_v", "defocus_angle",
                 "ctf_max_res", "ctf_fom", "total_motion", "exposure_uid"):
        if getattr(old, name) is None and getattr(m, name) is not None:
            setattr(old, name, getattr(m, name))


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def _add_particle_micrographs(root, mic_fields, which, names, mics) -> None:
    """Micrograph records for the distinct paths ``names[which]`` (location/* fields)."""
    psize = mic_fields.get("location/micrograph_psize_A")
    muid = mic_fields.get("location/micrograph_uid")
    shape = mic_fields.get("location/micrograph_shape")
    ps = np.asarray(psize, dtype=np.float64).tolist() if psize is not None else None
    uids = np.asarray(muid).tolist() if muid is not None else None
    sh = np.asarray(shape).astype(np.int64).tolist() if shape is not None else None
    for i in which.tolist():
        path = names[i]
        _merge(
            mics,
            MicrographRecord(
                path=path,
                abs_path=_abs(root, path),
                key=micrograph_key(path),
                nx=int(sh[i][1]) if sh is not None else None,
                ny=int(sh[i][0]) if sh is not None else None,
                pixel_size=_num(ps[i]) if ps is not None and ps[i] > 0 else None,
                exposure_uid=str(uids[i]) if uids is not None and uids[i] else None,
            ),
        )


def _field(cols, attr: str):
    for name in EXPOSURE_FIELDS[attr]:
        if name in cols:
            return cols[name]
    return None


def _parse_exposure_group(root, g, mics, problems) -> None:
    main, passthrough = _group_files(root, g)
    if not main:
        return
    wanted = ["uid", *TRAJECTORY_FIELDS] + [f for names in EXPOSURE_FIELDS.values() for f in names]
    arrays = []
    for p in main + passthrough:
        if not os.path.isfile(p):
            problems.append(Problem(p, f"output '{g.name}': metafile missing"))
            return
        try:
            arrays.append(read_cs(p, fields=wanted))
        except CsFileError as exc:
            problems.append(_problem(p, exc))
            return
    cols = join_passthrough(arrays[0], *arrays[1:])
    paths = _field(cols, "path")
    if paths is None:
        return  # movies only (import_movies): no micrograph to describe
    n = len(paths)
    if n == 0:
        return
    names = decode_strings(paths).tolist()
    shape = _field(cols, "shape")
    shape = np.asarray(shape, dtype=np.int64).reshape(n, -1).tolist() if shape is not None else None

    def column(attr, transform=None):
        arr = _field(cols, attr)
        if arr is None:
            return [None] * n
        arr = np.asarray(arr, dtype=np.float64).reshape(n, -1)[:, 0]
        if transform is not None:
            arr = transform(arr)
        return [v if np.isfinite(v) else None for v in arr.tolist()]

    psize = column("pixel_size")
    du, dv = column("defocus_u"), column("defocus_v")
    ang = column("defocus_angle_rad", np.degrees)
    res, fom, motion = column("ctf_max_res"), column("ctf_fom"), column("total_motion")
    if _field(cols, "total_motion") is None and "rigid_motion/path" in cols:
        motion = _trajectory_motion(root, cols, n, problems)
    uids = np.asarray(cols["uid"]).tolist()
    for i, path in enumerate(names):
        if not path:
            continue
        _merge(
            mics,
            MicrographRecord(
                path=path,
                abs_path=_abs(root, path),
                key=micrograph_key(path),
                nx=shape[i][1] if shape is not None and len(shape[i]) >= 2 else None,
                ny=shape[i][0] if shape is not None and len(shape[i]) >= 2 else None,
                pixel_size=psize[i] if psize[i] else None,
                defocus_u=du[i],
                defocus_v=dv[i],
                defocus_angle=ang[i],
                ctf_max_res=res[i],
                ctf_fom=fom[i],
                total_motion=_motion_angstrom(motion[i], psize[i]),
                exposure_uid=str(uids[i]),
            ),
        )


def _motion_angstrom(motion_px: float | None, pixel_size: float | None) -> float | None:
    """The catalog keeps total motion in Å (RELION's rlnAccumMotionTotal unit); CryoSPARC's
    motion fields and trajectories are in micrograph pixels."""
    if motion_px is None or not pixel_size:
        return None
    return float(motion_px) * float(pixel_size)


def _trajectory_motion(root, cols, n, problems) -> list[float | None]:
    """Total rigid motion per exposure, in micrograph pixels, from ``rigid_motion/path``.

    The file is read as a numeric ``.npy`` (pickles refused) whose last axis holds (x, y)
    shifts per frame in pixels of ``rigid_motion/psize_A``; the total is the length of the
    trajectory (sum of frame-to-frame steps), scaled to ``micrograph_blob/psize_A``. The
    (frames, 2) layout is what pyem reads (``np.load(traj).reshape(-1, 2)``); the unit is not
    verified on real data: pyem divides by ``rigid_motion/psize_A`` as if it were Å, other
    converters use it as pixels; pixels are assumed here (as cryoglean's generator writes).
    Unreadable or differently shaped files give None and one Problem per job.
    """
    paths = decode_strings(cols["rigid_motion/path"]).tolist()
    scale = np.ones(n)
    if "rigid_motion/psize_A" in cols and "micrograph_blob/psize_A" in cols:
        mo = np.asarray(cols["rigid_motion/psize_A"], dtype=np.float64)
        mi = np.asarray(cols["micrograph_blob/psize_A"], dtype=np.float64)
        ok = (mo > 0) & (mi > 0)
        scale[ok] = mo[ok] / mi[ok]
    out: list[float | None] = []
    failed: list[str] = []
    for i, rel in enumerate(paths):
        if not rel:
            out.append(None)
            continue
        path = _abs(root, rel)
        try:
            traj = np.load(path, allow_pickle=False)
            traj = np.asarray(traj, dtype=np.float64)
            if traj.ndim < 2 or traj.shape[-1] != 2 or traj.shape[-2] < 2:
                raise ValueError(f"shape {traj.shape} is not (..., frames, 2)")
            steps = np.diff(traj.reshape(-1, traj.shape[-2], 2), axis=1)
            out.append(float(np.linalg.norm(steps, axis=2).sum(axis=1).mean() * scale[i]))
        except (OSError, ValueError) as exc:
            out.append(None)
            failed.append(f"{path} ({exc})")
    if failed:
        problems.append(
            Problem(failed[0].split(" (", 1)[0],
                    f"{len(failed)} of {n} motion trajectories unreadable, total motion unknown "
                    f"(first: {failed[0]})")
        )
    return out


def _check_micrographs_exist(job_dir, micrographs, problems) -> None:
    missing = [m.abs_path for m in micrographs if not os.path.exists(m.abs_path)]
    if missing:
        problems.append(
            Problem(
                job_dir,
                f"{len(missing)} of {len(micrographs)} referenced micrograph files not found "
                f"(first: {missing[0]})",
            )
        )
