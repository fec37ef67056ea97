"""What cryoglean knows about each RELION job type, as one table (:data:`JOB_TYPES`).

Both steps read it: :func:`harvest.relion.scan_project` stamps the files a row lists
(:func:`job_files`), :func:`harvest.relion.parse_job` hands the job to the row's reader, which
reads the same files and names and stages the sets as the row says. Adding a job type is one row
(plus, for a new 3.x integer code or 4/5 label, its entry in :mod:`harvest.relion.pipeline`).

==============  ============  ===========  =============================  ==================  ============
job type        kind          reader       files                          set name(s)         stage
==============  ============  ===========  =============================  ==================  ============
MotionCorr      motion        micrographs  corrected_micrographs.star     (micrographs only)
CtfFind         ctf           micrographs  micrographs_ctf.star           (micrographs only)
ManualPick      manual_pick   picks        ``*pick.star`` index + per-    coords (sparse)     picked
                                           micrograph ``*_manualpick.star``
AutoPick        auto_pick     picks        same, ``*_autopick.star``      coords              picked
Extract         extract       particles    particles.star                 particles           extracted
Class2D         class2d       particles    last run_itNNN_data.star       run_itNNN_data      classified2d
Select          select2d      particles    particles.star (+ parent       particles,          selected2d,
(after Class2D)                            Class2D's last iteration)      rejected            rejected2d
Select (other)  select3d,     particles    particles.star                 particles           its parent's
                remove_dup...                                                                 (provenance)
Select (mics)   select_mic...                                             (none)
Class3D         class3d       particles    last run_itNNN_data.star       class_<N>           classified3d
InitialModel    abinitio      particles    last run_itNNN_data.star       class_<N>           classified3d
Refine3D        refine3d      particles    run_data.star                  run_data            refined
PickTomo        tomo_pick     particles    particles.star /               particles (3D)      picked
                                           optimisation_set.star
==============  ============  ===========  =============================  ==================  ============

Select's row depends on what the job did (:func:`select_kind`, :data:`SELECT_ROWS`). Rows with
``follows_parents`` (Extract, the Selects that carry particles through) take the most curated
stage among their own and their parents' (a re-extraction after a Select is ``selected2d``).
Whether a set's positions are recentred follows its stage (:func:`harvest.conventions.recentres`),
not the row: the rule is defined once for every package.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from harvest.relion.pipeline import Process

# A ``files`` entry meaning "the run_itNNN_data.star of the highest iteration NNN".
LAST_ITERATION = "run_it<last>_data.star"
# A ``files`` entry that, when the job's particles file is absent, names it
# (``rlnTomoParticlesFile``; RELION 5 tomography writes one per picking/subtomogram job).
OPTIMISATION_SET = "optimisation_set.star"
# Index files of a pick job: a 4/5 list of (micrograph, coordinate file), else a 3.x
# ``coords_suffix_<suffix>.star`` naming the micrographs STAR the picker read.
PICK_INDEX = ("autopick.star", "manualpick.star", "coords_suffix_*.star")

_ITER_RE = re.compile(r"run_it(\d+)_data\.star$")


@dataclass(frozen=True)
class RelionJob:
    """One row of :data:`JOB_TYPES`: how a RELION job type is harvested."""

    kind: str
    """Normalised kind (:data:`harvest.records.JOB_KINDS`)."""
    reader: str | None = None
    """How its outputs are read: ``micrographs`` (a micrographs STAR → micrograph records with
    CTF/motion), ``picks`` (per-micrograph coordinate files → one set), ``particles`` (a particle
    STAR → sets); None: nothing is read (the job is listed with its status only)."""
    files: tuple[str, ...] = ()
    """Files in the job directory that the reader reads and the scan stamps, in order. The first
    is the source of the sets (``micrographs``/``particles``); entries with ``*`` are globs
    (every match, sorted); :data:`LAST_ITERATION` is the latest ``run_itNNN_data.star``;
    :data:`OPTIMISATION_SET` names the particles file when the first entry is absent; for
    ``picks``, the first existing plain entry is the index, else the first glob match."""
    optional: bool = False
    """The source file may be absent without a problem (a Select of micrographs or classes
    writes no particles.star)."""
    coordinate_files: bool = False
    """Per-micrograph coordinate files live in the job directory's subfolders (pick jobs): the
    scan stamps every STAR file below them."""
    stage: str | None = None
    """Curation stage of its particle sets (None: no particles)."""
    set_name: str = "particles"
    """Name of the set; ``{stem}`` is the source file's name without ``.star``."""
    per_class: bool = False
    """One set per ``rlnClassNumber`` N, named ``class_<N>``, class_id N (RELION's own 1-based
    number, as the catalog stores it; 3D classes)."""
    class_ids: bool = False
    """Particles carry ``class_id`` = ``rlnClassNumber`` (1-based as RELION numbers it; −1 where
    absent, 0 or −999)."""
    sparse: bool = False
    """Only some particles of a micrograph are picked (manual picking)."""
    tomograms: bool = False
    """Particles may be tomogram particles: find the project's tomograms.star for sizes,
    binning and RELION 5 centred coordinates."""
    follows_parents: bool = False
    """The job carries its parents' particles through (re-extraction, a selection, duplicate
    removal): its stage is the most curated of its own and its parent jobs' stages (DESIGN.md:
    a job whose particles all come from a more curated set inherits that stage), e.g. an
    Extract of a Select's particles is ``selected2d`` and its recentred positions win."""
    rejects_from: str | None = None
    """Kind of a parent job whose particles this job left out: they become a set ``rejected``
    with stage ``rejected2d``, read from that parent's source file (the first of its row's
    ``files``: a Select after Class2D reads Class2D's last iteration); particles are matched by
    ``rlnImageName`` (also read from the job's own file)."""


_MICROGRAPHS = dict(reader="micrographs")
_PICKS = dict(reader="picks", files=PICK_INDEX, coordinate_files=True, stage="picked",
              set_name="coords")
_EXTRACT = dict(reader="particles", files=("particles.star",), stage="extracted", tomograms=True)
_SELECT = dict(reader="particles", files=("particles.star",), optional=True, class_ids=True)
_CLASS3D = dict(reader="particles", files=(LAST_ITERATION,), stage="classified3d",
                per_class=True, tomograms=True)

# RELION job type (directory name; pipeline.PROCESS_TYPE_DIRS / LABEL_DIRS) → how it is harvested.
JOB_TYPES: dict[str, RelionJob] = {
    "Import": RelionJob("import_micrographs"),  # refined by its outputs: IMPORT_OUTPUTS
    "MotionCorr": RelionJob("motion", files=("corrected_micrographs.star",), **_MICROGRAPHS),
    "CtfFind": RelionJob("ctf", files=("micrographs_ctf.star",), **_MICROGRAPHS),
    "ManualPick": RelionJob("manual_pick", sparse=True, **_PICKS),
    "AutoPick": RelionJob("auto_pick", **_PICKS),
    "Extract": RelionJob("extract", follows_parents=True, **_EXTRACT),
    "PseudoSubtomo": RelionJob("extract", follows_parents=True, **_EXTRACT),
    "Class2D": RelionJob("class2d", reader="particles", files=(LAST_ITERATION,),
                         stage="classified2d", set_name="{stem}", class_ids=True),
    # a class selection after Class2D; the other kinds of Select: SELECT_ROWS, select_kind()
    "Select": RelionJob("select2d", rejects_from="class2d", stage="selected2d", **_SELECT),
    "Class3D": RelionJob("class3d", **_CLASS3D),
    "InitialModel": RelionJob("abinitio", **_CLASS3D),
    "Refine3D": RelionJob("refine3d", reader="particles", files=("run_data.star",),
                          stage="refined", set_name="run_data", class_ids=True, tomograms=True),
    "PickTomo": RelionJob("tomo_pick", reader="particles",
                          files=("particles.star", OPTIMISATION_SET), stage="picked",
                          tomograms=True),
    "PostProcess": RelionJob("postprocess"),
    # known, nothing harvested
    "ImportTomo": RelionJob("other"),
    "ReconstructTomograms": RelionJob("other"),
}
UNKNOWN_JOB = RelionJob("other")

# What a Select job did, by select_kind(): its row. Micrograph selections and splits are listed
# without particles (a split's particles_splitN.star repeat its parent's); the others carry
# their parent's particles and follow its stage (a selection after Class3D: classified3d).
SELECT_ROWS: dict[str, RelionJob] = {
    "select2d": JOB_TYPES["Select"],
    "select3d": RelionJob("select3d", stage="extracted", follows_parents=True, **_SELECT),
    "remove_duplicates": RelionJob("remove_duplicates", stage="extracted", follows_parents=True,
                                   **_SELECT),
    "select_particles": RelionJob("select_particles", stage="extracted", follows_parents=True,
                                  **_SELECT),
    "select_micrographs": RelionJob("select_micrographs"),
    "split": RelionJob("split"),
}
_YES = ("yes", "true", "1")
_MICROGRAPH_PARENTS = frozenset({"Import", "MotionCorr", "CtfFind", "ManualPick"})


def select_kind(proc: Process) -> str:
    """Which :data:`SELECT_ROWS` row a Select job is: its 4/5 label
    (``relion.select.removeduplicates``/``split``/``class2dauto``), its 3.x options
    (``do_remove_duplicates``, ``do_split``), the job types of its inputs (Class2D → class
    selection ``select2d``; Class3D/InitialModel → ``select3d``) and its output nodes."""
    label = proc.label.lower()
    opts = {k: str(v).strip().lower() for k, v in proc.options.items()}
    if "removeduplicates" in label or opts.get("do_remove_duplicates") in _YES:
        return "remove_duplicates"
    if label.endswith(".split") or opts.get("do_split") in _YES:
        return "split"
    parents = set(proc.parent_types)
    if "class2dauto" in label or "Class2D" in parents:
        return "select2d"
    if parents & {"Class3D", "InitialModel"}:
        return "select3d"
    outputs = {os.path.basename(o) for o in proc.outputs}
    if "particles.star" in outputs:
        return "select_particles"
    if parents & _MICROGRAPH_PARENTS or any(o.startswith("micrographs") for o in outputs):
        return "select_micrographs"
    return "select2d"  # nothing tells: a class selection, as RELION's default Select job

# Import jobs are refined by their output nodes: the first word found in the output node names
# (or the 4/5 process label) decides the row; otherwise micrographs.
IMPORT_OUTPUTS: tuple[tuple[str, RelionJob], ...] = (
    ("particles", RelionJob("import_particles", reader="particles", files=("particles.star",),
                            stage="picked", tomograms=True)),
    ("coords", RelionJob("import_particles", reader="particles", files=("particles.star",),
                         stage="picked", tomograms=True)),
    ("movies", RelionJob("import_movies")),
)

# job type → normalised kind (derived from the table; Import is refined by its outputs)
TYPE_KINDS: dict[str, str] = {t: row.kind for t, row in JOB_TYPES.items()}


def job_row(proc: Process) -> RelionJob:
    """The table row of a pipeline process (Import: by its outputs)."""
    row = JOB_TYPES.get(proc.jtype, UNKNOWN_JOB)
    if proc.jtype == "Select":
        return SELECT_ROWS[select_kind(proc)]
    if proc.jtype == "Import":
        outs = " ".join(proc.outputs).lower() + " " + proc.label.lower()
        row = next((r for word, r in IMPORT_OUTPUTS if word in outs), row)
    return row


def last_iteration(jobdir: str) -> str | None:
    """The ``run_itNNN_data.star`` of the highest iteration in ``jobdir`` (None if none)."""
    best, best_it = None, -1
    for p in glob.glob(os.path.join(glob.escape(jobdir), "run_it*_data.star")):
        m = _ITER_RE.search(os.path.basename(p))
        if m and int(m.group(1)) > best_it:
            best, best_it = p, int(m.group(1))
    return best


def describe(entry: str) -> str:
    """A ``files`` entry as messages name it."""
    return "run_itNNN_data.star" if entry == LAST_ITERATION else entry


def expand(jobdir: str, entry: str) -> list[str]:
    """Existing files of one ``files`` entry of a row (see :attr:`RelionJob.files`)."""
    if entry == LAST_ITERATION:
        last = last_iteration(jobdir)
        return [last] if last else []
    if "*" in entry:
        return sorted(glob.glob(os.path.join(glob.escape(jobdir), entry)))
    path = os.path.join(jobdir, entry)
    return [path] if os.path.isfile(path) else []


def _coordinate_files(jobdir: str) -> list[str]:
    """Every STAR file below the job dir's subfolders (per-micrograph coordinate files)."""
    found = []
    for dirpath, _dirs, files in os.walk(jobdir):
        if os.path.samefile(dirpath, jobdir):
            continue
        found += [os.path.join(dirpath, f) for f in files if f.endswith(".star")]
    return sorted(found)


def job_files(root: str, proc: Process, parents: list[Process]) -> list[str]:
    """Absolute paths of the existing files that parsing this job reads (its row's files)."""
    row = job_row(proc)
    jobdir = os.path.join(root, proc.key)
    files = [p for entry in row.files for p in expand(jobdir, entry)]
    if row.coordinate_files:
        files += _coordinate_files(jobdir)
    if row.rejects_from:
        for parent in parents:
            prow = job_row(parent)
            if prow.kind == row.rejects_from and prow.files:
                files += expand(os.path.join(root, parent.key), prow.files[0])
    return files
