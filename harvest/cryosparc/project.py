"""The two steps of :mod:`harvest.records` for a CryoSPARC project: :func:`scan_project` (the
bookkeeping: project.json, job_manifest.json, every J*/job.json and the metafiles its outputs
name) and :func:`parse_job` (one completed job's .cs outputs, as its :data:`JOB_TYPES` row says);
:func:`scan_depends` names what the scan read, for :mod:`harvest.fingerprint`.
"""

from __future__ import annotations

import os
import re

from harvest import fsguard
from harvest.conventions import stage_rank
from harvest.cryosparc.jobjson import (
    Group,
    JobInfo,
    file_stamp,
    job_number,
    job_parents,
    job_type_of,
    output_groups,
    read_json,
    to_iso,
)
from harvest.cryosparc.jobs import (
    GROUP_STAGES,
    JOB_TYPES,
    NEGATIVE_GROUP_WORDS,
    STATUSES,
    UNKNOWN_JOB_TYPE,
    JobType,
)
from harvest.cryosparc.micrographs import check_micrographs_exist, parse_exposure_group
from harvest.cryosparc.particles import parse_particle_group
from harvest.records import FileStamp, JobRecord, JobScan, MicrographRecord, Problem, ProjectScan

_CLASS_GROUP = re.compile(r"^particles_class_(\d+)$")
_JOB_DIR = re.compile(r"^J\d+$")
_EXTRA_KEY = "cryosparc_jobs"


class NotACryosparcProject(FileNotFoundError):
    """The directory has neither ``project.json`` nor any ``J*/job.json``."""



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
    if os.path.lexists(pj):  # a FIFO or folder here is refused by read_json: one problem
        try:
            project = read_json(pj)
        except (OSError, ValueError) as exc:
            problems.append(Problem(pj, f"cannot read project.json: {exc}"))
        stamp = file_stamp(pj)
        if stamp:
            files.append(stamp)

    keys: set[str] = set()
    manifest = os.path.join(root, "job_manifest.json")
    if os.path.lexists(manifest):
        stamp = file_stamp(manifest)
        if stamp:
            files.append(stamp)
        try:
            listed = read_json(manifest).get("jobs") or []
            if not isinstance(listed, list):
                raise ValueError(f"'jobs' is {type(listed).__name__}, not a list")
            names = [k for k in listed if isinstance(k, str)]
            keys.update(k for k in names if _JOB_DIR.match(k))
            if any(not _JOB_DIR.match(k) for k in names):
                problems.append(Problem(manifest, "job_manifest.json lists names that are not "
                                                  "job uids (J<n>); ignored"))
        except (OSError, ValueError) as exc:
            problems.append(Problem(manifest, f"cannot read job_manifest.json: {exc}"))
    try:
        with os.scandir(root) as it:
            for entry in it:
                if _JOB_DIR.match(entry.name) and entry.is_dir():
                    # lexists: a job.json that is a FIFO or folder is a problem, not absent
                    if os.path.lexists(os.path.join(entry.path, "job.json")):
                        keys.add(entry.name)
    except OSError as exc:
        raise NotACryosparcProject(f"{root}: cannot list the project directory: {exc}") from None
    if not project and not keys and not os.path.lexists(pj):
        raise NotACryosparcProject(
            f"{root}: not a CryoSPARC project: no project.json and no J*/job.json"
        )
    if not os.path.lexists(pj):
        problems.append(Problem(pj, "project.json missing; jobs read from J*/job.json"))

    jobs: list[JobScan] = []
    infos: dict[str, JobInfo] = {}
    versions: list[str] = []
    for key in sorted(keys, key=job_number):
        job_dir = os.path.join(root, key)
        jj = os.path.join(job_dir, "job.json")
        if not os.path.lexists(jj):
            problems.append(Problem(jj, "job listed in job_manifest.json has no job.json"))
            continue
        stamp = file_stamp(jj)
        if stamp:
            files.append(stamp)
        try:
            job = read_json(jj)
            scanned = _scan_job(root, key, job_dir, jj, job, stamp)
        except (OSError, ValueError) as exc:
            problems.append(Problem(jj, f"cannot read job.json: {exc}"))
            continue
        except (TypeError, AttributeError, KeyError, RecursionError) as exc:
            # a job.json whose values have the wrong types: this job only, never the project
            problems.append(Problem(jj, f"cannot read job.json: malformed ({type(exc).__name__}"
                                        f": {fsguard.shown(str(exc), 160)})"))
            continue
        job_scan, info, version = scanned
        if version:
            versions.append(version)
        jobs.append(job_scan)
        infos[key] = info

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


def _scan_job(root: str, key: str, job_dir: str, jj: str, job: dict, stamp):
    """(JobScan, JobInfo, version) of one job.json; ValueError/TypeError... for a malformed one
    (the caller records it and drops the job), :class:`harvest.fsguard.OutsideRoots` when a
    metafile leaves the crawl roots."""
    raw_type = job_type_of(job)
    jt = JOB_TYPES.get(raw_type, UNKNOWN_JOB_TYPE)
    status = STATUSES.get(str(job.get("status") or "").lower(), "unknown")
    groups = output_groups(job)
    job_files = [stamp] if stamp else []
    seen = {jj}
    for g in groups:
        for r in g.results:
            path = fsguard.resolve(root, r.metafile, f"metafile of output '{g.name}'")
            if path in seen:
                continue
            seen.add(path)
            s = file_stamp(path)
            if s:
                job_files.append(s)
    version = job.get("version") or job.get("cryosparc_version")
    scan = JobScan(
        key=key,  # the directory name is the uid CryoSPARC uses in metafile paths
        raw_type=raw_type,
        kind=jt.kind,
        status=status,
        parents=job_parents(job),
        title=str(job.get("title") or ""),
        created_at=to_iso(job.get("created_at")),
        completed_at=to_iso(job.get("completed_at")),
        files=job_files,
    )
    return scan, JobInfo(job_dir, jj, raw_type, groups), (
        version if isinstance(version, str) and version else None)


def scan_depends(scan: ProjectScan) -> tuple[list[str], list[str]]:
    """(paths, listed folders) that :func:`scan_project` depended on (:mod:`harvest.fingerprint`):
    the project folder (listed for job folders; ``project.json`` and ``job_manifest.json`` are
    entries there), every ``J*/job.json`` of a job folder found there or listed in the manifest
    (present or not), and every metafile a job's outputs name (stamped, or absent)."""
    root = scan.root
    paths = [os.path.join(root, "project.json"), os.path.join(root, "job_manifest.json")]
    try:
        with os.scandir(root) as it:
            paths += [os.path.join(e.path, "job.json") for e in it if _JOB_DIR.match(e.name)]
    except OSError:
        pass
    for info in (scan.extra.get(_EXTRA_KEY) or {}).values():
        paths.append(info.json_path)
        paths += [os.path.normpath(os.path.join(root, r.metafile))
                  for g in info.groups for r in g.results]
    for job in scan.jobs:
        paths += [f.path for f in job.files]
    return paths, [root]


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
    info: JobInfo = infos[job_key]
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
                parse_exposure_group(scan.root, g, mics, rec.problems)
    if jt.stage is not None:
        inherited = particle_stage(scan, js.key)
        for g in info.groups:
            plan = _particle_group_plan(js.raw_type, jt, g)
            if plan is None:
                continue
            stage, class_id = plan
            own_only = False
            if jt.follows_parents and stage_rank(inherited) > stage_rank(stage):
                stage, own_only = inherited, True
            pset = parse_particle_group(scan.root, jt, g, stage, class_id, mics, rec.problems,
                                        own_shifts_only=own_only)
            if pset is not None:
                rec.particle_sets.append(pset)
    rec.micrographs = list(mics.values())
    check_micrographs_exist(info.dir, rec.micrographs, rec.problems)
    return rec


def particle_stage(scan: ProjectScan, key: str, _seen: frozenset = frozenset()) -> str | None:
    """Stage of a job's particle outputs: its :data:`JOB_TYPES` stage; for job types that
    follow their parents (``JobType.follows_parents``) the most curated of it and the parent
    jobs' stages (each computed the same way, up the provenance graph)."""
    jobs = scan.extra.setdefault("_jobs_by_key", {j.key: j for j in scan.jobs})
    js = jobs.get(key)
    jt = JOB_TYPES.get(js.raw_type, UNKNOWN_JOB_TYPE) if js else UNKNOWN_JOB_TYPE
    stage = jt.stage
    if stage is None or not jt.follows_parents:
        return stage
    for parent in js.parents:
        if parent in _seen or parent not in jobs:
            continue
        pstage = particle_stage(scan, parent, _seen | {key})
        if pstage is not None and stage_rank(pstage) > stage_rank(stage):
            stage = pstage
    return stage


def _is_exposure_group(g: Group) -> bool:
    return g.type == "exposure" or g.name.startswith(("exposures", "micrographs"))


def _particle_group_plan(raw_type: str, jt: JobType, g: Group) -> tuple[str, int | None] | None:
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
