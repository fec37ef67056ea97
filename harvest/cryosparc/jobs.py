"""What cryoglean knows about each CryoSPARC job type, as tables: :data:`JOB_TYPES` (raw job type
→ kind, curation stage, how its outputs are read), :data:`GROUP_STAGES` (output groups whose stage
differs from their job's) and :data:`STATUSES`. Whether a stage's positions are recentred is not
here: :func:`harvest.conventions.recentres` defines it once for every package.
"""

from __future__ import annotations

from dataclasses import dataclass

from harvest.conventions import RECENTRED_STAGES


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
    follows_parents: bool = False


JOB_TYPES: dict[str, JobType] = {
    # picking
    "manual_picker_v2": JobType("manual_pick", "picked", sparse=True),
    "manual_picker": JobType("manual_pick", "picked", sparse=True),
    "blob_picker_gpu": JobType("auto_pick", "picked"),
    "template_picker_gpu": JobType("auto_pick", "picked"),
    "topaz_extract": JobType("auto_pick", "picked"),
    "inspect_picks_v2": JobType("auto_pick", "picked"),
    # extraction
    "extract_micrographs_multi": JobType("extract", "extracted", follows_parents=True),
    "extract_micrographs_cpu_parallel": JobType("extract", "extracted", follows_parents=True),
    "restack_particles": JobType("extract", "extracted", follows_parents=True),
    "downsample_particles": JobType("extract", "extracted", follows_parents=True),
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

# The stages whose shifts move the particle centre (an alias of the one definition in
# harvest.conventions; code asks harvest.conventions.recentres(stage)).
RECENTRE_STAGES = RECENTRED_STAGES
