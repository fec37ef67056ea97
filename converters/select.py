"""Choose training labels from the catalog: which particles, on which micrographs, as what.

Long module: it is the rule set below, applied in one pass by :func:`select_labels`, with the
helpers only that pass uses, so that each rule stated here can be found next to its code.

Rules (each one recorded in the export's manifest)

* **Positives.** By default, per micrograph (a project's micrograph *key*, so the same exposure
  seen by several jobs is one micrograph), the most curated stage that has particles there
  (``harvest.conventions.STAGE_RANK``; ``rejected2d`` never counts as positive), and the union of
  every selected set of that stage on that micrograph. ``stage=S`` forces one stage; micrographs
  without particles of it are not exported. Micrographs with no positives are not exported
  (they are unlabelled, not empty).
* **Negatives** (``negatives=True``): particles of ``rejected2d`` sets on the exported
  micrographs, minus those within the minimum separation of a positive (a particle kept by one
  selection and rejected by another stays positive).
* **Scores and classes.** ``min_score`` drops positives of the chosen stage with a lower score
  (applied after the stage choice, so it never demotes a micrograph to a less curated stage);
  particles without a score pass. ``classes`` keeps particles whose own class or whose set's class is listed.
* **Micrograph filters.** CTF max resolution ≤ ``max_ctf_res`` Å (default 10) and total motion
  ≤ ``max_motion`` px (default 100): PartiNet's documented input limits ([partinet] docs: "CTF fit
  < 10 Å, full-frame motion < 100 px"). ``None`` disables a filter. Micrographs whose CTF or
  motion is unknown pass, and are counted as such in the manifest.
* **Particle diameter** (Å): ``diameter`` if given, else ``DIAMETER_PER_BOX × box extent`` of
  the set (box size × particle-image pixel size); extraction boxes are usually 1.5–2× the
  particle, so ``DIAMETER_PER_BOX = 0.6`` (≈ 1/1.67). Per micrograph the median over its chosen
  sets; a project's sets without box fall back to the project's median; none known → NaN (formats
  that need a box then ask for ``--diameter``). In pixels: Å / micrograph pixel size.
* **De-duplication** across the union of sets: particles closer than ``min_separation`` Å
  (default ``0.5 × diameter``) on the same micrograph are one particle; the one kept is the one
  of the higher stage, then higher score, then lower set id (greedy in that order, with a
  ``scipy.spatial.cKDTree`` per micrograph). Uses the recentred ``x, y``.
* **Flip.** ``flip_y`` maps ``y → ny − y`` (``harvest.conventions.flip_y``); never implicit.
* **Sizes.** ``nx, ny`` of each micrograph: the catalog's, else its file header's, else
  ``micrograph_size`` (:mod:`converters.sizes`; ``size_source`` says which). Micrographs may be
  gone: a size is needed only by a flip and by exports that normalise or rescale.
* **Shared catalogs.** Only projects whose root the user can read and list
  (``os.access(root, R_OK | X_OK)``) are used; others are skipped with a warning and listed in
  the manifest; selecting only unreadable projects is an error.

Output coordinates are float pixels of the micrograph file named in ``Selection.micrographs``
(DESIGN.md frame: x = column, y = row), after the optional flip, before any export scaling.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from converters.sizes import missing_line, parse_size, resolve_sizes
from harvest.conventions import NEGATIVE_STAGES, STAGE_RANK, STAGES, export_stems, flip_y

log = logging.getLogger(__name__)

DIAMETER_PER_BOX = 0.6
SEPARATION_PER_DIAMETER = 0.5
DEFAULT_MAX_CTF_RES = 10.0  # Å, PartiNet docs
DEFAULT_MAX_MOTION = 100.0  # px, PartiNet docs


class SelectionError(ValueError):
    """The selection options select nothing usable (the message says what to change)."""


class UnreadableProjectsError(PermissionError):
    """Every selected project is unreadable for the invoking user."""


@dataclass
class SelectionOptions:
    """What to select. Project specs are ids, root paths or titles; job specs are catalog ids or
    job keys (``J24``, ``Refine3D/job025``; a key matches in every selected project)."""

    projects: tuple = ()
    jobs: tuple = ()
    sets: tuple = ()
    stage: str | None = None
    negatives: bool = False
    min_score: float | None = None
    classes: tuple = ()
    max_ctf_res: float | None = DEFAULT_MAX_CTF_RES
    max_motion: float | None = DEFAULT_MAX_MOTION
    min_separation: float | None = None  # Å
    diameter: float | None = None  # Å
    flip_y: bool = False
    micrograph_size: tuple | None = None  # (nx, ny) px for micrographs without a known size

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("projects", "jobs", "sets", "classes"):
            d[k] = list(d[k])
        if d["micrograph_size"] is not None:
            d["micrograph_size"] = list(d["micrograph_size"])
        return d


@dataclass
class Selection:
    """The selected labels.

    ``micrographs``: one row per exported micrograph: ``mic`` (``"<project_id>:<key>"``),
    ``stem`` (file stem in the export: the key, or ``p<project_id>_<key>`` where keys collide),
    project_id, key, micrograph_id, path, abs_path, nx, ny, pixel_size (Å), ctf_max_res,
    total_motion, stage, n_positive, n_negative, picked_count, sparse_fraction, diameter_A,
    diameter_px.
    ``positives`` / ``negatives``: mic, micrograph_id, set_id, stage, x, y (float px of that
    micrograph, recentred, flipped if asked), score, class_id, diameter (px).
    ``record``: what was chosen and dropped, for the manifest.
    """

    micrographs: pd.DataFrame
    positives: pd.DataFrame
    negatives: pd.DataFrame
    record: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Pure functions over DataFrames
# ---------------------------------------------------------------------------------------------


def most_curated_mask(picks: pd.DataFrame, mic_col: str = "mic") -> pd.Series:
    """True for rows whose stage is the most curated one present on their micrograph.

    ``picks`` needs ``mic_col`` and ``stage``; negative stages never win (rows of them are False).
    """
    if picks.empty:
        return pd.Series(np.zeros(0, dtype=bool), index=picks.index)
    rank = picks["stage"].map(STAGE_RANK).astype(float)
    rank = rank.where(~picks["stage"].isin(NEGATIVE_STAGES), -1.0)
    best = rank.groupby(picks[mic_col]).transform("max")
    return (rank == best) & (rank >= 0)


def filter_micrographs(
    mics: pd.DataFrame, max_ctf_res: float | None, max_motion: float | None
) -> tuple[pd.Series, dict]:
    """Keep mask for micrographs passing the CTF-resolution (Å) and total-motion (px) limits.

    Total motion is stored in Å and compared in pixels (÷ pixel size). Unknown (NaN) values pass. Returns the mask and a report: per filter the limit, how many were
    dropped (with their ``mic`` ids when the frame has that column) and how many were unknown.
    """
    keep = pd.Series(True, index=mics.index)
    report: dict = {}
    nan = pd.Series(np.nan, index=mics.index)
    # The catalog keeps total motion in Å (harvest/records.py); PartiNet's limit is in pixels.
    motion_px = pd.to_numeric(mics.get("total_motion", nan), errors="coerce") / pd.to_numeric(
        mics.get("pixel_size", nan), errors="coerce"
    )
    for name, values, limit, unit in (
        ("max_ctf_res", pd.to_numeric(mics.get("ctf_max_res", nan), errors="coerce"), max_ctf_res, "Å"),
        ("max_motion", motion_px, max_motion, "px"),
    ):
        unknown = values.isna()
        entry = {"limit": limit, "unit": unit, "unknown_passed": int(unknown.sum()), "dropped": 0}
        if limit is not None:
            bad = (~unknown) & (values > float(limit))
            entry["dropped"] = int(bad.sum())
            if "mic" in mics:
                entry["dropped_micrographs"] = sorted(mics.loc[bad, "mic"].astype(str))
            keep &= ~bad
        report[name] = entry
    return keep, report


def deduplicate(
    picks: pd.DataFrame, radius: float | pd.Series, mic_col: str = "mic"
) -> pd.Series:
    """Keep mask after merging picks closer than ``radius`` px on the same micrograph (in 3D
    where every pick of the micrograph has a finite ``z``: tomograms).

    ``radius`` is one value or a Series indexed by micrograph id. Priority (kept first): higher
    ``stage`` rank, then higher ``score`` (NaN lowest), then lower ``set_id``, then row order.
    Greedy: a pick is kept unless a kept pick of higher priority lies within the radius
    (distance < radius). Radius ≤ 0 or NaN keeps everything.
    """
    from scipy.spatial import cKDTree

    keep = pd.Series(True, index=picks.index)
    if len(picks) < 2:
        return keep
    order = _priority_order(picks)
    (pts, valid), = _unit_points([order], radius, mic_col)
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return keep
    pairs = cKDTree(pts[idx]).query_pairs(1.0 - 1e-9, output_type="ndarray")
    if len(pairs) == 0:
        return keep
    # positions in priority order: the smaller one of a pair outranks the other
    hi, lo = idx[pairs.min(axis=1)], idx[pairs.max(axis=1)]
    state = _greedy(len(order), hi, lo)
    keep.loc[order.index[state < 0]] = False
    return keep


def _greedy(n: int, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Sequential greedy suppression (visit in priority order, keep a point unless a kept
    higher-priority neighbour exists) computed in vectorised rounds: +1 keep, -1 drop.

    A point is kept once every higher-priority neighbour is dropped, dropped once one is kept;
    each round decides at least the first undecided point, and in practice a round or three
    decide all."""
    state = np.zeros(n, dtype=np.int8)
    state[np.setdiff1d(np.arange(n), lo)] = 1  # no higher-priority neighbour at all
    while True:
        undecided = state == 0
        if not undecided.any():
            return state
        blocked = np.zeros(n, dtype=bool)
        blocked[lo[state[hi] >= 0]] = True  # a higher neighbour is kept or undecided
        state[undecided & ~blocked] = 1
        suppressed = np.zeros(n, dtype=bool)
        suppressed[lo[state[hi] == 1]] = True
        state[(state == 0) & suppressed] = -1


def _unit_points(frames: list[pd.DataFrame], radius, mic_col: str):
    """Points in units of each micrograph's radius, with a micrograph axis that keeps different
    micrographs at least 3 units apart: "closer than the radius" becomes "distance < 1" for one
    KD-tree over all micrographs. z is used for micrographs whose rows (in all frames) all have
    a finite z. Returns ``(points, valid)`` per frame (valid: radius known and > 0)."""
    mics = pd.Index(pd.unique(pd.concat([f[mic_col] for f in frames], ignore_index=True)))
    z_all = pd.concat(
        [pd.Series(np.isfinite(pd.to_numeric(f["z"], errors="coerce").to_numpy(float))
                   if "z" in f.columns else np.zeros(len(f), bool),
                   index=f[mic_col].to_numpy()) for f in frames]
    )
    use_z = z_all.groupby(level=0).all() if len(z_all) else pd.Series(dtype=bool)
    out = []
    for f in frames:
        code = mics.get_indexer(f[mic_col]).astype(np.float64)
        if isinstance(radius, pd.Series):
            r = f[mic_col].map(radius).to_numpy(np.float64)
        else:
            r = np.full(len(f), float(radius))
        valid = np.isfinite(r) & (r > 0)
        r = np.where(valid, r, 1.0)
        z = (pd.to_numeric(f["z"], errors="coerce").to_numpy(float)
             if "z" in f.columns else np.zeros(len(f)))
        z = np.where(f[mic_col].map(use_z).fillna(False).to_numpy(bool), z, 0.0)
        pts = np.column_stack([
            f["x"].to_numpy(np.float64) / r, f["y"].to_numpy(np.float64) / r,
            np.nan_to_num(z) / r, code * 3.0,
        ])
        out.append((pts, valid))
    return out


def _priority_order(picks: pd.DataFrame) -> pd.DataFrame:
    tmp = picks.copy()
    tmp["_rank"] = tmp["stage"].map(STAGE_RANK).fillna(-1) if "stage" in tmp else 0
    tmp["_score"] = tmp["score"].fillna(-np.inf) if "score" in tmp else 0.0
    tmp["_set"] = tmp["set_id"] if "set_id" in tmp else 0
    tmp["_row"] = np.arange(len(tmp))
    return tmp.sort_values(
        ["_rank", "_score", "_set", "_row"], ascending=[False, False, True, True], kind="stable"
    )


def drop_near(
    candidates: pd.DataFrame, others: pd.DataFrame, radius: float | pd.Series, mic_col="mic"
) -> pd.Series:
    """Keep mask for ``candidates`` farther than ``radius`` px from every row of ``others`` on
    the same micrograph (negatives that coincide with a positive are dropped)."""
    from scipy.spatial import cKDTree

    keep = pd.Series(True, index=candidates.index)
    if candidates.empty or others.empty:
        return keep
    (pc, vc), (po, vo) = _unit_points([candidates, others], radius, mic_col)
    if not vo.any() or not vc.any():
        return keep
    dist, _ = cKDTree(po[vo]).query(pc[vc], k=1, distance_upper_bound=1.0)
    near = np.zeros(len(candidates), dtype=bool)
    near[np.flatnonzero(vc)[dist < 1.0 - 1e-9]] = True
    keep[near] = False
    return keep


def unique_stems(mics: pd.DataFrame) -> pd.Series:
    """File stem per micrograph: its key, or ``p<project_id>_<key>`` where the key occurs in more
    than one selected project (the rule: :func:`harvest.conventions.export_stems`)."""
    stems = export_stems(mics["key"].to_numpy(), mics["project_id"].to_numpy())
    return pd.Series(stems, index=mics.index, dtype=object)


def readable_projects(projects: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Split projects into those whose root the user can read and list, and the rest."""
    ok = projects["root"].map(lambda r: os.access(str(r), os.R_OK | os.X_OK)).astype(bool)
    skipped = [
        {"id": int(p.id), "root": str(p.root), "title": str(p.title or "")}
        for p in projects[~ok].itertuples()
    ]
    return projects[ok], skipped


# ---------------------------------------------------------------------------------------------
# From the catalog
# ---------------------------------------------------------------------------------------------


def select_labels(catalog, options: SelectionOptions) -> Selection:
    """Select positives (and negatives) from an open :class:`harvest.catalog.Catalog`."""
    opts = options
    if opts.stage is not None:
        if opts.stage not in STAGES:
            raise SelectionError(f"unknown --stage {opts.stage!r}; known: {', '.join(STAGES)}")
        if opts.stage in NEGATIVE_STAGES:
            raise SelectionError(
                f"--stage {opts.stage} selects rejected particles; use --negatives to export "
                "them as negatives beside a positive stage"
            )
    record: dict = {"options": opts.to_dict()}

    # --- projects (readable only)
    projects = catalog.projects()
    if opts.projects:
        ids = [catalog.find_project(p) for p in opts.projects]
        projects = projects[projects["id"].isin(ids)]
    if projects.empty:
        raise SelectionError("the catalog has no projects to export; run `cryoglean crawl` first")
    readable, skipped = readable_projects(projects)
    for s in skipped:
        log.warning("skipping project %s (%s): not readable by this user", s["id"], s["root"])
    record["skipped_unreadable_projects"] = skipped
    if readable.empty:
        names = ", ".join(f"{s['id']} ({s['root']})" for s in skipped)
        raise UnreadableProjectsError(
            f"none of the selected projects is readable by this user: {names}; ask for read "
            "access or select other projects"
        )
    project_ids = [int(i) for i in readable["id"]]

    # --- jobs and sets
    job_ids = None
    if opts.jobs:
        jobs = catalog.jobs(project_ids)
        job_ids = _resolve_jobs(jobs, opts.jobs)
    sets = catalog.particle_sets(
        project_ids=project_ids,
        job_ids=job_ids,
        set_ids=[int(s) for s in opts.sets] or None,
    )
    if opts.classes:
        wanted = {int(c) for c in opts.classes}
        # per-class sets of other classes go; sets without a class stay (filtered per particle)
        sets = sets[sets["class_id"].isna() | sets["class_id"].isin(wanted)]
    pos_sets = sets[~sets["stage"].isin(NEGATIVE_STAGES)]
    if opts.stage is not None:
        pos_sets = pos_sets[pos_sets["stage"] == opts.stage]
    neg_sets = sets[sets["stage"].isin(NEGATIVE_STAGES)] if opts.negatives else sets.iloc[:0]
    if pos_sets.empty:
        what = f"stage {opts.stage}" if opts.stage else "a positive stage"
        raise SelectionError(
            f"no particle sets of {what} in the selection (projects {project_ids}); check "
            "`cryoglean show PROJECT` for the stages available"
        )

    mics = catalog.micrographs(project_ids=project_ids)
    mics = mics.assign(mic=mics["project_id"].astype(int).astype(str) + ":" + mics["key"])
    mic_of = mics.set_index("id")["mic"]

    set_diam = _set_diameters(sets, opts.diameter)
    if opts.stage is None and not (opts.jobs or opts.sets or opts.classes):
        # every set of the projects is a candidate: the catalog's stage counts tell which
        # stages can win on some micrograph, so the (large) less curated sets stay unread
        pos_sets = pos_sets[pos_sets["stage"].isin(
            _winning_stages(catalog, project_ids, mic_of, set(pos_sets["stage"])))]
    pos = _load_particles(catalog, pos_sets, mic_of, set_diam)
    n_loaded = len(pos)
    if opts.classes:
        wanted = {int(c) for c in opts.classes}
        pos = pos[pos["class_id"].isin(wanted) | pos["set_class_id"].isin(wanted)]
    record["particles_loaded"] = n_loaded
    record["dropped_by_class"] = n_loaded - len(pos)

    # --- stage per micrograph, then scores within it
    if opts.stage is None:
        pos = pos[most_curated_mask(pos)]
    if opts.min_score is not None:
        low = pos["score"].notna() & (pos["score"] < float(opts.min_score))
        record["dropped_by_min_score"] = int(low.sum())
        pos = pos[~low]
    if pos.empty:
        raise SelectionError("no particles left after the stage, class and score selection")

    # --- micrograph table (representative file per micrograph)
    table = _micrograph_table(pos, mics)
    keep, filt = filter_micrographs(table, opts.max_ctf_res, opts.max_motion)
    record["filters"] = filt
    table = table[keep]
    if table.empty:
        raise SelectionError(
            "every micrograph was dropped by the CTF/motion filters; relax --max-ctf-res / "
            "--max-motion"
        )
    pos = pos[pos["mic"].isin(table["mic"])]
    # sizes: the catalog's, else the file header's, else --micrograph-size (micrographs may be
    # gone: converters.sizes)
    table = resolve_sizes(table, parse_size(opts.micrograph_size))
    pos = _to_representative(pos, table, mics)

    # --- diameters and separation (Å -> micrograph px)
    diam_a = _micrograph_diameters(pos, sets, set_diam, table, opts.diameter)
    table["diameter_A"] = table["mic"].map(diam_a).astype(float)
    table["diameter_px"] = table["diameter_A"] / table["pixel_size"].astype(float)
    sep_a = (
        pd.Series(float(opts.min_separation), index=table["mic"])
        if opts.min_separation is not None
        else table.set_index("mic")["diameter_A"] * SEPARATION_PER_DIAMETER
    )
    sep_px = sep_a / table.set_index("mic")["pixel_size"].astype(float)
    no_sep = sorted(sep_px[~(sep_px > 0)].index)
    if no_sep:
        log.warning("%d micrograph(s) without pixel size or diameter: picks on them are not "
                    "de-duplicated (pass --diameter, or --min-separation)", len(no_sep))
    record["not_deduplicated_micrographs"] = no_sep
    before = len(pos)
    pos = pos[deduplicate(pos, sep_px)]
    record["dropped_as_duplicates"] = before - len(pos)
    pos = pos.assign(diameter=pos["mic"].map(table.set_index("mic")["diameter_px"]))

    # --- negatives
    neg = _load_particles(catalog, neg_sets, mic_of, set_diam)
    neg = neg[neg["mic"].isin(table["mic"])]
    if opts.classes and not neg.empty:
        wanted = {int(c) for c in opts.classes}
        neg = neg[neg["class_id"].isin(wanted) | neg["set_class_id"].isin(wanted)]
    if not neg.empty:
        neg = _to_representative(neg, table, mics)
        neg = neg[deduplicate(neg, sep_px)]
        before = len(neg)
        neg = neg[drop_near(neg, pos, sep_px)]
        record["negatives_dropped_near_positives"] = before - len(neg)
        neg = neg.assign(diameter=neg["mic"].map(table.set_index("mic")["diameter_px"]))

    # --- flip
    if opts.flip_y:
        ny = table.set_index("mic")["ny"].astype(float)
        if ny.isna().any():
            raise SelectionError(missing_line("--flip-y", sorted(ny[ny.isna()].index)))
        pos = pos.assign(y=flip_y(pos["y"].to_numpy(), pos["mic"].map(ny).to_numpy()))
        if not neg.empty:
            neg = neg.assign(y=flip_y(neg["y"].to_numpy(), neg["mic"].map(ny).to_numpy()))

    # --- per-micrograph counts, sparse labelling
    table["n_positive"] = table["mic"].map(pos.groupby("mic").size()).fillna(0).astype(int)
    table["n_negative"] = (
        table["mic"].map(neg.groupby("mic").size()).fillna(0).astype(int)
        if not neg.empty
        else 0
    )
    table = _sparse_fraction(catalog, table, mics)
    table["stem"] = unique_stems(table)
    table = table.sort_values(["project_id", "key"]).reset_index(drop=True)

    cols = ["mic", "micrograph_id", "set_id", "stage", "x", "y", "z", "score", "class_id",
            "diameter"]
    pos = pos[cols].reset_index(drop=True)
    neg = neg[cols].reset_index(drop=True) if not neg.empty else pd.DataFrame(columns=cols)
    record.update(
        projects=[
            {"id": int(p.id), "root": str(p.root), "software": str(p.software),
             "version": str(p.version), "title": str(p.title or "")}
            for p in readable[readable["id"].isin(table["project_id"])].itertuples()
        ],
        jobs=sorted(
            {str(k) for k in sets.loc[sets["id"].isin(pos["set_id"]), "job_key"].dropna()}
        ),
        job_ids=sorted(
            int(j) for j in sets.loc[sets["id"].isin(pos["set_id"]), "job_id"].dropna()
        ),
        sets=[
            {"id": int(s.id), "project_id": int(s.project_id),
             "job": None if pd.isna(s.job_key) else str(s.job_key),
             "name": str(s.name), "stage": str(s.stage)}
            for s in sets[sets["id"].isin(set(pos["set_id"]) | set(neg["set_id"]))].itertuples()
        ],
        stages_per_micrograph=table["stage"].value_counts().sort_index().to_dict(),
        diameter_rule=(
            "--diameter" if opts.diameter is not None
            else f"{DIAMETER_PER_BOX} x box size x particle pixel size"
        ),
        separation_rule=(
            "--min-separation" if opts.min_separation is not None
            else f"{SEPARATION_PER_DIAMETER} x diameter"
        ),
        flip_y=bool(opts.flip_y),
    )
    return Selection(micrographs=table, positives=pos, negatives=neg, record=record)


def _winning_stages(catalog, project_ids, mic_of: pd.Series, stages: set) -> set:
    """Stages that are the most curated one on at least one micrograph (by micrograph key),
    from the catalog's per-micrograph stage counts; all ``stages`` when counts are missing."""
    frames = [catalog.stage_counts(int(p)) for p in project_ids]
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return set(stages)
    sc = pd.concat(frames, ignore_index=True)
    sc = sc[(sc["count"] > 0) & sc["stage"].isin(stages)]
    sc = sc.assign(mic=sc["micrograph_id"].map(mic_of), rank=sc["stage"].map(STAGE_RANK))
    if sc["mic"].isna().any():
        return set(stages)
    best = sc.sort_values("rank", ascending=False).drop_duplicates("mic")
    return set(best["stage"])


def _resolve_jobs(jobs: pd.DataFrame, specs) -> list[int]:
    ids: set[int] = set()
    for spec in specs:
        s = str(spec).strip()
        hit = jobs[jobs["key"].astype(str).str.rstrip("/") == s.rstrip("/")]
        if hit.empty and s.isdigit():
            hit = jobs[jobs["id"] == int(s)]
        if hit.empty:
            raise SelectionError(
                f"job {s!r} not found in the selected projects; `cryoglean show PROJECT` "
                "lists the jobs"
            )
        ids.update(int(i) for i in hit["id"])
    return sorted(ids)


def _set_diameters(sets: pd.DataFrame, diameter: float | None) -> pd.Series:
    """Diameter in Å per set id (NaN where unknown)."""
    if diameter is not None:
        if not diameter > 0:
            raise SelectionError(f"--diameter must be > 0 Å, got {diameter}")
        return pd.Series(float(diameter), index=sets["id"])
    box = pd.to_numeric(sets["box_size"], errors="coerce")
    psize = pd.to_numeric(sets["image_pixel_size"], errors="coerce")
    return pd.Series((DIAMETER_PER_BOX * box * psize).to_numpy(float), index=sets["id"])


def _load_particles(catalog, sets: pd.DataFrame, mic_of: pd.Series, set_diam) -> pd.DataFrame:
    cols = ["mic", "micrograph_id", "set_id", "stage", "x", "y", "z", "score", "class_id",
            "set_class_id", "project_id"]
    if sets.empty:
        return pd.DataFrame(columns=cols)
    parts = catalog.particles([int(i) for i in sets["id"]])
    info = sets.set_index("id")
    parts = parts.assign(
        stage=parts["set_id"].map(info["stage"]),
        set_class_id=parts["set_id"].map(info["class_id"]),
        project_id=parts["set_id"].map(info["project_id"]),
        mic=parts["micrograph_id"].map(mic_of),
        z=parts["z"] if "z" in parts.columns else np.nan,
    )
    missing = parts["mic"].isna()
    if missing.any():
        log.warning("%d particles reference micrographs not in the catalog; ignored",
                    int(missing.sum()))
        parts = parts[~missing]
    return parts[cols]


def _micrograph_table(pos: pd.DataFrame, mics: pd.DataFrame) -> pd.DataFrame:
    """One row per selected micrograph: the catalog row most of its positives refer to, with CTF
    and motion filled from any row of the same key where the representative lacks them."""
    counts = pos.groupby(["mic", "micrograph_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["mic", "n", "micrograph_id"], ascending=[True, False, True])
    rep = counts.drop_duplicates("mic")[["mic", "micrograph_id"]]
    info = mics.rename(columns={"id": "micrograph_id"}).drop(columns=["mic"])
    table = rep.merge(info, on="micrograph_id", how="left")
    used = mics[mics["mic"].isin(table["mic"])]
    for col in ("ctf_max_res", "total_motion", "pixel_size"):
        values = pd.to_numeric(used[col], errors="coerce").astype("float64")
        fill = values.groupby(used["mic"]).first()  # first known value of the key
        table[col] = (
            pd.to_numeric(table[col], errors="coerce").astype("float64")
            .fillna(table["mic"].map(fill))
        )
    ranked = pos.assign(_r=pos["stage"].map(STAGE_RANK)).sort_values("_r", ascending=False)
    table["stage"] = table["mic"].map(ranked.drop_duplicates("mic").set_index("mic")["stage"])
    for col in ("nx", "ny"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    return table


def _to_representative(picks: pd.DataFrame, table: pd.DataFrame, mics: pd.DataFrame):
    """Rescale picks made on another file of the same micrograph (e.g. a binned copy) to the
    representative file's pixels (by the nx, ny ratio) and relabel their micrograph_id."""
    if picks.empty:
        return picks
    rep = table.set_index("mic")
    size = mics.set_index("id")[["nx", "ny"]].apply(pd.to_numeric, errors="coerce").astype(
        "float64")
    other = picks["micrograph_id"].to_numpy() != picks["mic"].map(rep["micrograph_id"]).to_numpy()
    if other.any():
        sub = picks[other]
        fx = sub["mic"].map(rep["nx"]).to_numpy(float) / sub["micrograph_id"].map(
            size["nx"]).to_numpy(float)
        fy = sub["mic"].map(rep["ny"]).to_numpy(float) / sub["micrograph_id"].map(
            size["ny"]).to_numpy(float)
        fx = np.where(np.isfinite(fx), fx, 1.0)
        fy = np.where(np.isfinite(fy), fy, 1.0)
        picks = picks.copy()
        picks.loc[other, "x"] = sub["x"].to_numpy(float) * fx
        picks.loc[other, "y"] = sub["y"].to_numpy(float) * fy
        picks.loc[other, "micrograph_id"] = sub["mic"].map(rep["micrograph_id"]).to_numpy()
    return picks


def _micrograph_diameters(pos, sets, set_diam, table, diameter) -> pd.Series:
    """Particle diameter in Å per micrograph (see the module docstring)."""
    if diameter is not None:
        return pd.Series(float(diameter), index=table["mic"])
    d = pos.assign(d=pos["set_id"].map(set_diam)).groupby("mic")["d"].median()
    proj = (
        sets.assign(d=sets["id"].map(set_diam).to_numpy()).groupby("project_id")["d"].median()
    )
    fallback = table.set_index("mic")["project_id"].map(proj)
    return d.reindex(table["mic"]).fillna(fallback)


def _sparse_fraction(catalog, table: pd.DataFrame, mics: pd.DataFrame) -> pd.DataFrame:
    """``picked_count`` (particles of the picked stage on the micrograph, from the catalog's stage
    counts) and ``sparse_fraction`` = chosen-stage count / picked count (NaN without picks)."""
    mic_of = mics.set_index("id")["mic"]
    chosen, picked = {}, {}
    for pid in sorted(table["project_id"].astype(int).unique()):
        sc = catalog.stage_counts(pid)
        if sc is None or sc.empty:
            continue
        sc = sc.assign(mic=sc["micrograph_id"].map(mic_of))
        agg = sc.groupby(["mic", "stage"])["count"].sum()
        for (mic, stage), n in agg.items():
            if stage == "picked":
                picked[mic] = int(n)
            chosen[(mic, stage)] = int(n)
    table = table.copy()
    table["picked_count"] = table["mic"].map(picked)
    stage_n = [chosen.get((m, s), np.nan) for m, s in zip(table["mic"], table["stage"])]
    table["sparse_fraction"] = np.asarray(stage_n, float) / table["picked_count"].astype(float)
    return table
