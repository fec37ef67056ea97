"""The two steps of :mod:`harvest.records` for a RELION project: :func:`scan_project` (the
pipeline, job status, the files each job's row lists) and :func:`parse_job` (the row's reader);
:func:`scan_depends` names what the scan read, for :mod:`harvest.fingerprint`."""

from __future__ import annotations

import os

from harvest.records import FileStamp, JobRecord, JobScan, Problem, ProjectScan
from harvest.relion.context import Context
from harvest.relion.jobs import job_files, job_row
from harvest.relion.micrographs import read_micrographs
from harvest.relion.particles import read_particles
from harvest.relion.picks import read_picks
from harvest.relion.pipeline import (
    EXIT_MARKERS,
    PIPELINE,
    iso,
    job_status,
    read_pipeline,
    stat_ns,
)

# RelionJob.reader → the function that reads a job's outputs into a JobRecord
READERS = {
    "micrographs": read_micrographs,
    "picks": read_picks,
    "particles": read_particles,
}
# files whose mtime tells when a job was created (the first that exists)
CREATION_FILES = ("job.star", "run.job", "note.txt")


def scan_project(root: str | os.PathLike) -> ProjectScan:
    """Read a RELION project's ``default_pipeline.star``: version, jobs, status, parents, files.

    Raises ``FileNotFoundError`` when there is no pipeline and
    :class:`~harvest.relion.pipeline.RelionProjectError` (a ``ValueError`` naming the file) when
    it cannot be read or has no processes.
    """
    root = os.path.abspath(os.fspath(root))
    problems: list[Problem] = []
    version, processes, parents_of = read_pipeline(root, problems)
    by_key = {p.key: p for p in processes}
    scan = ProjectScan(
        root=root,
        software="relion",
        version=version,
        title=os.path.basename(root),
        files=[FileStamp.of(os.path.join(root, PIPELINE))],
        problems=problems,
    )
    for proc in processes:
        status, completed = job_status(root, proc, version)
        parents = parents_of.get(proc.key, [])
        files = []
        for f in job_files(root, proc, [by_key[k] for k in parents if k in by_key]):
            try:
                files.append(FileStamp.of(f))
            except OSError:
                pass
        jobdir = os.path.join(root, proc.key)
        created = None
        for n in CREATION_FILES:
            ns = stat_ns(os.path.join(jobdir, n))
            if ns is not None:
                created = iso(ns)
                break
        scan.jobs.append(
            JobScan(
                key=proc.key,
                raw_type=proc.raw_type,
                kind=job_row(proc).kind,
                status=status,
                parents=parents,
                title=proc.alias,
                created_at=created,
                completed_at=completed,
                files=files,
            )
        )
    scan.extra["processes"] = by_key
    scan.extra["parents"] = parents_of
    return scan


def scan_depends(scan: ProjectScan) -> tuple[list[str], list[str]]:
    """(paths, listed folders) that :func:`scan_project` depended on (:mod:`harvest.fingerprint`):
    the pipeline; per job its folder (exit markers, creation files, globs for iterations and pick
    index files are entries there), the first present exit marker and creation file (their
    mtimes are the job's times, ``job.star``/``run.job`` hold 3.x Select options; the others
    are read only when these go, which changes the folder), every file it stamped,
    the subfolders a pick job's coordinate files are walked from, and a 3.0 running job's output
    nodes (their existence completes it)."""
    root = scan.root
    paths = [os.path.join(root, PIPELINE)]
    listed: list[str] = []
    for proc in scan.extra.get("processes", {}).values():
        jobdir = os.path.join(root, proc.key)
        listed.append(jobdir)
        for names in (CREATION_FILES, [m for m, _ in EXIT_MARKERS]):
            paths += [p for p in (os.path.join(jobdir, n) for n in names)
                      if os.path.exists(p)][:1]
        if scan.version == "3.0" and proc.status == "running":
            nodes = [os.path.join(root, n) for n in proc.outputs]
            paths += nodes
            listed += {os.path.dirname(n) for n in nodes}
        if job_row(proc).coordinate_files:
            listed += [d for d, _, _ in os.walk(jobdir) if d != jobdir]
    for job in scan.jobs:
        paths += [f.path for f in job.files]
    return paths, listed


def parse_job(scan: ProjectScan, job_key: str) -> JobRecord:
    """Read one job's outputs into particle sets and micrograph records (its row's reader).

    Problems with the job's files (missing, malformed) are recorded in ``JobRecord.problems``;
    only an unknown ``job_key`` raises (``KeyError``).
    """
    procs = scan.extra.get("processes", {})
    key = job_key.rstrip("/")
    if key not in procs:
        raise KeyError(f"{scan.root}: no job {job_key!r} in {PIPELINE}")
    proc = procs[key]
    ctx = Context(scan, scan.root)
    js = next(j for j in scan.jobs if j.key == key)
    if not js.harvestable:  # failed, running, queued: outputs are partial or absent
        rec = ctx.job_record(proc)
        rec.files = list(js.files)
        return rec
    row = job_row(proc)
    try:
        # a reader missing from READERS is a bug in the table: KeyError, not a Problem
        rec = READERS[row.reader](ctx, proc, row) if row.reader else ctx.job_record(proc)
    except (ValueError, OSError) as exc:
        rec = ctx.job_record(proc)
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
