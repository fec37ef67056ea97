"""RELION 3.0 / 3.1 / 4 / 5 projects → catalog records (see :mod:`harvest.records`).

``scan_project(root)`` reads ``default_pipeline.star`` (processes, nodes, edges), job status
(pipeline status overridden by ``RELION_JOB_EXIT_*`` markers) and stamps the files each job's
parse would read. ``parse_job(scan, key)`` reads one job's outputs (reference/formats.md §4.2).
What each job type reads, and which sets and stages it gives, is one table,
:data:`~harvest.relion.jobs.JOB_TYPES`, read by both steps.

Modules, by concern:

=================  ==============================================================================
``pipeline``       default_pipeline.star: versions, processes, status, edges → parents
``jobs``           the job table (files read, reader, set names, stage) and the scan's file list
``project``        ``scan_project`` and ``parse_job`` (dispatch to the row's reader)
``micrographs``    micrograph records, pixel sizes, the MotionCorr/CtfFind reader
``picks``          the ManualPick/AutoPick reader (per-micrograph coordinate files)
``particles``      particle STAR → sets (recentring, pixel sizes), the particle-job reader
``tomo``           tomogram particles: tomograms.star, positions, tomogram records
``tables``         STAR table helpers (optics lookups, numeric columns)
``context``        per-parse state (caches, problems, files read)
=================  ==============================================================================

Coordinates follow DESIGN.md (see :mod:`harvest.relion.particles` and
:mod:`harvest.relion.tomo`); recentring follows the stage (:func:`harvest.conventions.recentres`).
"""

from harvest.conventions import RECENTRED_STAGES
from harvest.relion.jobs import JOB_TYPES, TYPE_KINDS, RelionJob
from harvest.relion.particles import PARTICLE_LABELS, particle_set_from_star
from harvest.relion.pipeline import (
    EXIT_MARKERS,
    LABEL_DIRS,
    PIPELINE,
    PROCESS_TYPE_DIRS,
    STATUS_30,
    STATUS_31,
    STATUS_LABELS,
    RelionProjectError,
)
from harvest.relion.project import parse_job, scan_depends, scan_project
from harvest.relion.tables import SCORE_MISSING, STRING_LABELS

__all__ = [
    "EXIT_MARKERS",
    "JOB_TYPES",
    "LABEL_DIRS",
    "PARTICLE_LABELS",
    "PIPELINE",
    "PROCESS_TYPE_DIRS",
    "RECENTRED_STAGES",
    "SCORE_MISSING",
    "STATUS_30",
    "STATUS_31",
    "STATUS_LABELS",
    "STRING_LABELS",
    "TYPE_KINDS",
    "RelionJob",
    "RelionProjectError",
    "parse_job",
    "particle_set_from_star",
    "scan_depends",
    "scan_project",
]
