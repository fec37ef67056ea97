"""CryoSPARC project parser: ``project.json`` + ``J*/job.json`` + ``.cs`` outputs → records.

Two steps (see :mod:`harvest.records`):

* :func:`scan_project` reads the project's bookkeeping only (:mod:`~harvest.cryosparc.jobjson`):
  ``project.json``, ``job_manifest.json`` and every ``J*/job.json``. A job's files are its
  ``job.json`` and the last version of each output result's metafile.
* :func:`parse_job` reads one completed job's ``.cs`` outputs: particle sets (main file +
  passthrough files joined on ``uid``, :mod:`~harvest.cryosparc.joins`;
  positions and recentring, :mod:`~harvest.cryosparc.particles`) and micrograph metadata (CTF,
  shape, pixel size, :mod:`~harvest.cryosparc.micrographs`).

How raw job types map to normalised kinds and curation stages is data
(:mod:`~harvest.cryosparc.jobs`: :data:`JOB_TYPES`, :data:`GROUP_STAGES`); which stages are
recentred is defined once for every package (:func:`harvest.conventions.recentres`).
"""

from harvest.cryosparc.jobs import (
    GROUP_STAGES,
    JOB_TYPES,
    NEGATIVE_GROUP_WORDS,
    RECENTRE_STAGES,
    STATUSES,
    UNKNOWN_JOB_TYPE,
    JobType,
)
from harvest.cryosparc.joins import (
    CLASS_FIELDS,
    MIC_FIELDS,
    PATH_FIELD,
    ROW_FIELDS,
    SET_FIELDS,
    SHIFT_FIELDS,
)
from harvest.cryosparc.micrographs import EXPOSURE_FIELDS, TRAJECTORY_FIELDS
from harvest.cryosparc.project import NotACryosparcProject, parse_job, scan_depends, scan_project

__all__ = [
    "CLASS_FIELDS",
    "EXPOSURE_FIELDS",
    "GROUP_STAGES",
    "JOB_TYPES",
    "MIC_FIELDS",
    "NEGATIVE_GROUP_WORDS",
    "PATH_FIELD",
    "RECENTRE_STAGES",
    "ROW_FIELDS",
    "SET_FIELDS",
    "SHIFT_FIELDS",
    "STATUSES",
    "TRAJECTORY_FIELDS",
    "UNKNOWN_JOB_TYPE",
    "JobType",
    "NotACryosparcProject",
    "parse_job",
    "scan_depends",
    "scan_project",
]
