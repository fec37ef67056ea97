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
  of the higher stage, then higher score, then lower set id, then the earlier row (greedy in
  that order; close pairs by grid hashing, :mod:`converters.neighbours`, the same pairs a
  KD-tree finds). Uses the recentred ``x, y``.
* **Flip.** ``flip_y`` maps ``y → ny − y`` (``harvest.conventions.flip_y``); never implicit.
* **Sizes.** ``nx, ny`` of each micrograph: the catalog's, else its file header's, else
  ``micrograph_size`` (:mod:`converters.sizes`; ``size_source`` says which). Micrographs may be
  gone: a size is needed only by a flip and by exports that normalise or rescale.
* **Shared catalogs.** Only projects whose root the user can read and list
  (``os.access(root, R_OK | X_OK)``) are used; others are skipped with a warning and listed in
  the manifest; selecting only unreadable projects is an error.

Internally picks are parallel numpy arrays with an integer micrograph code (one per
``"<project_id>:<key>"``), read with :meth:`harvest.catalog.Catalog.particle_centres`; strings
appear only in the micrograph table, and the output frames carry ``mic`` and ``stage`` as
Categoricals.

Output coordinates are float pixels of the micrograph file named in ``Selection.micrographs``
(DESIGN.md frame: x = column, y = row), after the optional flip, before any export scaling.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from converters import neighbours
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
    (distance < radius). Radius ≤ 0 or NaN keeps everything. (:func:`dedup_keep` on arrays.)
    """
    code, names = _codes(picks[mic_col])
    rank = (picks["stage"].map(STAGE_RANK).astype("float64").fillna(-1.0).to_numpy()
            if "stage" in picks else np.zeros(len(picks)))
    score = (pd.to_numeric(picks["score"], errors="coerce").to_numpy(np.float64)
             if "score" in picks else np.zeros(len(picks)))
    sets = (pd.to_numeric(picks["set_id"], errors="coerce").to_numpy(np.float64)
            if "set_id" in picks else np.zeros(len(picks)))
    keep = dedup_keep(code, _coords(picks, "x"), _coords(picks, "y"), _z(picks),
                      _radius_per_code(radius, names)[code] if len(code) else np.zeros(0),
                      rank, score, sets)
    return pd.Series(keep, index=picks.index)


def drop_near(
    candidates: pd.DataFrame, others: pd.DataFrame, radius: float | pd.Series, mic_col="mic"
) -> pd.Series:
    """Keep mask for ``candidates`` farther than ``radius`` px from every row of ``others`` on
    the same micrograph (negatives that coincide with a positive are dropped)."""
    if candidates.empty or others.empty:
        return pd.Series(True, index=candidates.index)
    code, names = _codes(pd.concat([candidates[mic_col], others[mic_col]], ignore_index=True))
    r = _radius_per_code(radius, names)[code]
    n = len(candidates)
    z = np.concatenate([_z(candidates), _z(others)])
    keep = far_from(code[:n], _coords(candidates, "x"), _coords(candidates, "y"), z[:n],
                    r[:n], code[n:], _coords(others, "x"), _coords(others, "y"), z[n:], r[n:])
    return pd.Series(keep, index=candidates.index)


def _priority_order(picks: pd.DataFrame) -> pd.DataFrame:
    """``picks`` sorted in de-duplication priority (the order :func:`dedup_keep` visits)."""
    tmp = picks.copy()
    tmp["_rank"] = tmp["stage"].map(STAGE_RANK).fillna(-1) if "stage" in tmp else 0
    tmp["_score"] = tmp["score"].fillna(-np.inf) if "score" in tmp else 0.0
    tmp["_set"] = tmp["set_id"] if "set_id" in tmp else 0
    tmp["_row"] = np.arange(len(tmp))
    return tmp.sort_values(
        ["_rank", "_score", "_set", "_row"], ascending=[False, False, True, True], kind="stable"
    )


def dedup_keep(code, x, y, z, radius, rank, score, set_id) -> np.ndarray:
    """:func:`deduplicate` on arrays: integer micrograph ``code`` per pick, coordinates (``z``
    NaN for 2D), ``radius`` px per pick, stage ``rank`` (−1 unknown), ``score`` (NaN lowest),
    ``set_id``. Returns the keep mask."""
    n = len(code)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep
    # priority order: rank ↓, score ↓ (NaN last), set ↑ (NaN last), row ↑
    score = np.where(np.isnan(score), -np.inf, score)
    set_id = np.where(np.isnan(set_id), np.inf, set_id)
    order = np.lexsort((set_id, -score, -rank))  # stable: row order breaks the last ties
    axes, valid = _unit(code, x, y, z, radius, code)
    if valid.all():
        i, j = neighbours.close_pairs(code, axes)
    else:
        idx = np.flatnonzero(valid)
        i, j = neighbours.close_pairs(code[idx], [a[idx] for a in axes])
        i, j = idx[i], idx[j]
    if not len(i):
        return keep
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    a, b = position[i], position[j]
    kept = neighbours.greedy_keep(n, np.minimum(a, b), np.maximum(a, b))
    keep[order[~kept]] = False
    return keep


def far_from(code, x, y, z, radius, code_o, x_o, y_o, z_o, radius_o) -> np.ndarray:
    """:func:`drop_near` on arrays (``z`` NaN for 2D; radius px per row of each side)."""
    keep = np.ones(len(code), dtype=bool)
    if not len(code) or not len(code_o):
        return keep
    both = np.concatenate([code, code_o])
    zz = np.concatenate([z, z_o])
    ax, valid = _unit(code, x, y, z, radius, both, zz)
    ax_o, valid_o = _unit(code_o, x_o, y_o, z_o, radius_o, both, zz)
    if not valid.any() or not valid_o.any():
        return keep
    if len(ax) != len(ax_o):  # one side has z: the other's is 0
        ax, ax_o = ([*a, np.zeros(len(a[0]))] if len(a) == 2 else a for a in (ax, ax_o))
    vc = np.flatnonzero(valid)
    near = neighbours.near(code[vc], [a[vc] for a in ax], code_o[valid_o],
                           [a[valid_o] for a in ax_o])
    keep[vc[near]] = False
    return keep


def _unit(code, x, y, z, radius, all_codes, all_z=None):
    """(coordinates in units of their radius: [x, y] or [x, y, z]; valid: radius known and
    > 0). z counts on micrographs where every pick (among ``all_codes``/``all_z``) has a finite
    z; elsewhere it is 0."""
    all_z = z if all_z is None else all_z
    valid = np.isfinite(radius) & (radius > 0)
    r = radius if valid.all() else np.where(valid, radius, 1.0)
    axes = [x / r, y / r]
    finite = np.isfinite(all_z)
    if finite.any():
        ncode = int(all_codes.max()) + 1
        flat = np.bincount(all_codes[~finite], minlength=ncode) > 0
        zz = np.where(flat[code], 0.0, z)
        if (zz != 0).any():
            axes.append(np.nan_to_num(zz) / r)
    return axes, valid


def _codes(col: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """(int64 code per row, micrograph ids) of a micrograph column (Categorical or not); rows
    without a micrograph share one code of their own."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes, names = col.cat.codes.to_numpy().astype(np.int64), pd.Index(col.cat.categories)
    else:
        codes, names = pd.factorize(col)
        codes, names = codes.astype(np.int64), pd.Index(names)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names = names.append(pd.Index([np.nan], dtype=object))
    return codes, names


def _radius_per_code(radius, names: pd.Index) -> np.ndarray:
    if isinstance(radius, pd.Series):
        return pd.Series(names, dtype=object).map(radius).to_numpy(np.float64)
    return np.full(len(names), float(radius))


def _coords(df: pd.DataFrame, col: str) -> np.ndarray:
    return df[col].to_numpy(np.float64)


def _z(df: pd.DataFrame) -> np.ndarray:
    if "z" not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df["z"], errors="coerce").to_numpy(np.float64)


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
    # integer micrograph codes: one per micrograph id ("<project>:<key>"), rows of `mics` in id
    # order; picks carry codes, strings appear only in the (small) micrograph table
    mcode, names = pd.factorize(mics["mic"])
    ctx = _Context(mics, np.asarray(mcode, np.int64), pd.Index(names), sets)

    set_diam = _set_diameters(sets, opts.diameter)
    if opts.stage is None and not (opts.jobs or opts.sets or opts.classes):
        # every set of the projects is a candidate: the catalog's stage counts tell which
        # stages can win on some micrograph, so the (large) less curated sets stay unread
        pos_sets = pos_sets[pos_sets["stage"].isin(
            _winning_stages(catalog, project_ids, mic_of, set(pos_sets["stage"])))]
    pos = ctx.load(catalog, pos_sets)
    n_loaded = len(pos)
    if opts.classes:
        pos = pos.take(ctx.class_mask(pos, opts.classes))
    record["particles_loaded"] = n_loaded
    record["dropped_by_class"] = n_loaded - len(pos)

    # --- stage per micrograph, then scores within it
    if opts.stage is None:
        pos = pos.take(_most_curated(pos.code, ctx.rank[pos.sidx], len(names)))
    if opts.min_score is not None:
        low = ~np.isnan(pos.score) & (pos.score < float(opts.min_score))
        record["dropped_by_min_score"] = int(low.sum())
        pos = pos.take(~low)
    if not len(pos):
        raise SelectionError("no particles left after the stage, class and score selection")

    # --- micrograph table (representative file per micrograph)
    table = _micrograph_table(pos, ctx)
    keep, filt = filter_micrographs(table, opts.max_ctf_res, opts.max_motion)
    record["filters"] = filt
    table = table[keep]
    if table.empty:
        raise SelectionError(
            "every micrograph was dropped by the CTF/motion filters; relax --max-ctf-res / "
            "--max-motion"
        )
    # sizes: the catalog's, else the file header's, else --micrograph-size (micrographs may be
    # gone: converters.sizes)
    table = resolve_sizes(table, parse_size(opts.micrograph_size))
    per = _PerCode(table, len(names))
    pos = pos.take(per.selected[pos.code])
    pos = _to_representative(pos, per, ctx)

    # --- diameters and separation (Å -> micrograph px)
    diam_a = _micrograph_diameters(pos, ctx, sets, set_diam, table, opts.diameter)
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
    sep = per.values(sep_px.to_numpy(np.float64))
    diameter = per.values(table["diameter_px"].to_numpy(np.float64))
    before = len(pos)
    pos = pos.take(dedup_keep(pos.code, pos.x, pos.y, pos.z, sep[pos.code],
                              ctx.rank[pos.sidx].astype(np.float64), pos.score,
                              pos.set_id.astype(np.float64)))
    record["dropped_as_duplicates"] = before - len(pos)

    # --- negatives
    neg = ctx.load(catalog, neg_sets)
    neg = neg.take(per.selected[neg.code])
    if opts.classes and len(neg):
        neg = neg.take(ctx.class_mask(neg, opts.classes))
    if len(neg):
        neg = _to_representative(neg, per, ctx)
        neg = neg.take(dedup_keep(neg.code, neg.x, neg.y, neg.z, sep[neg.code],
                                  ctx.rank[neg.sidx].astype(np.float64), neg.score,
                                  neg.set_id.astype(np.float64)))
        before = len(neg)
        neg = neg.take(far_from(neg.code, neg.x, neg.y, neg.z, sep[neg.code], pos.code, pos.x,
                                pos.y, pos.z, sep[pos.code]))
        record["negatives_dropped_near_positives"] = before - len(neg)

    # --- flip
    if opts.flip_y:
        ny = table.set_index("mic")["ny"].astype(float)
        if ny.isna().any():
            raise SelectionError(missing_line("--flip-y", sorted(ny[ny.isna()].index)))
        ny_code = per.values(table["ny"].to_numpy(np.float64))
        pos.y = flip_y(pos.y, ny_code[pos.code])
        if len(neg):
            neg.y = flip_y(neg.y, ny_code[neg.code])

    # --- per-micrograph counts, sparse labelling
    table["n_positive"] = np.bincount(pos.code, minlength=len(names))[per.code_of_row]
    table["n_negative"] = (np.bincount(neg.code, minlength=len(names))[per.code_of_row]
                           if len(neg) else 0)
    table = _sparse_fraction(catalog, table, mics)
    table["stem"] = unique_stems(table)
    table = table.sort_values(["project_id", "key"]).reset_index(drop=True).drop(columns="code")

    used_pos = set(np.unique(pos.set_id).tolist())
    used = used_pos | set(np.unique(neg.set_id).tolist())
    pos_frame = pos.frame(ctx, diameter)
    neg_frame = (neg.frame(ctx, diameter) if len(neg)
                 else pd.DataFrame(columns=list(pos_frame.columns)))
    record.update(
        projects=[
            {"id": int(p.id), "root": str(p.root), "software": str(p.software),
             "version": str(p.version), "title": str(p.title or "")}
            for p in readable[readable["id"].isin(table["project_id"])].itertuples()
        ],
        jobs=sorted(
            {str(k) for k in sets.loc[sets["id"].isin(used_pos), "job_key"].dropna()}
        ),
        job_ids=sorted(
            int(j) for j in sets.loc[sets["id"].isin(used_pos), "job_id"].dropna()
        ),
        sets=[
            {"id": int(s.id), "project_id": int(s.project_id),
             "job": None if pd.isna(s.job_key) else str(s.job_key),
             "name": str(s.name), "stage": str(s.stage)}
            for s in sets[sets["id"].isin(used)].itertuples()
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
    return Selection(micrographs=table, positives=pos_frame, negatives=neg_frame, record=record)


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


PICK_COLUMNS = ["mic", "micrograph_id", "set_id", "stage", "x", "y", "z", "score", "class_id",
                "diameter"]


class _Context:
    """The selection's micrographs and sets as arrays: micrograph code per catalog micrograph
    row (``mics`` in id order), stage rank, class and project per set row."""

    def __init__(self, mics: pd.DataFrame, mcode: np.ndarray, names: pd.Index, sets):
        self.mics, self.mcode, self.names, self.sets = mics, mcode, names, sets
        self.mic_ids = pd.Index(mics["id"].to_numpy(np.int64))
        self.set_ids = pd.Index(sets["id"].to_numpy(np.int64))
        self.rank = sets["stage"].map(STAGE_RANK).to_numpy(np.int64)
        self.set_class = pd.to_numeric(sets["class_id"], errors="coerce").to_numpy(np.float64)
        self.stages = pd.Index(sorted(set(sets["stage"]), key=STAGES.index))
        self.set_stage = self.stages.get_indexer(sets["stage"])
        nxy = mics[["nx", "ny"]].apply(pd.to_numeric, errors="coerce").astype("float64")
        self.nx, self.ny = nxy["nx"].to_numpy(), nxy["ny"].to_numpy()

    def load(self, catalog, sets: pd.DataFrame) -> _Picks:
        if sets.empty:
            return _Picks.empty()
        # the lean read where the catalog has it (Catalog.particle_centres), else the full one
        read = getattr(catalog, "particle_centres", None) or catalog.particles
        parts = read([int(i) for i in sets["id"]])
        row = self.mic_ids.get_indexer(parts["micrograph_id"].to_numpy(np.int64))
        missing = row < 0
        if missing.any():
            log.warning("%d particles reference micrographs not in the catalog; ignored",
                        int(missing.sum()))
        ok = ~missing
        set_id = parts["set_id"].to_numpy(np.int64)
        picks = _Picks(
            code=self.mcode[np.where(ok, row, 0)], mrow=row, sidx=self.set_ids.get_indexer(set_id),
            set_id=set_id, micrograph_id=parts["micrograph_id"].to_numpy(np.int64),
            x=parts["x"].to_numpy(np.float64), y=parts["y"].to_numpy(np.float64),
            z=_z(parts), score=parts["score"].to_numpy(np.float64),
            class_id=parts["class_id"].to_numpy(np.int64))
        return picks.take(ok) if missing.any() else picks

    def class_mask(self, picks: _Picks, classes) -> np.ndarray:
        """Picks whose own class or whose set's class is listed."""
        wanted = np.array(sorted({int(c) for c in classes}), dtype=np.float64)
        return (np.isin(picks.class_id.astype(np.float64), wanted)
                | np.isin(self.set_class, wanted)[picks.sidx])


class _Picks:
    """Picks as parallel arrays (what a selected particle carries until the end)."""

    FIELDS = ("code", "mrow", "sidx", "set_id", "micrograph_id", "x", "y", "z", "score",
              "class_id")

    def __init__(self, **arrays):
        for k in self.FIELDS:
            setattr(self, k, arrays[k])

    @classmethod
    def empty(cls) -> _Picks:
        return cls(**{k: np.zeros(0, np.float64 if k in ("x", "y", "z", "score") else np.int64)
                      for k in cls.FIELDS})

    def __len__(self) -> int:
        return len(self.code)

    def take(self, mask: np.ndarray) -> _Picks:
        return _Picks(**{k: getattr(self, k)[mask] for k in self.FIELDS})

    def frame(self, ctx: _Context, diameter: np.ndarray) -> pd.DataFrame:
        """The Selection's frame: ``mic`` and ``stage`` as Categoricals (no string per row)."""
        return pd.DataFrame({
            "mic": pd.Categorical.from_codes(self.code, categories=ctx.names),
            "micrograph_id": self.micrograph_id, "set_id": self.set_id,
            "stage": pd.Categorical.from_codes(ctx.set_stage[self.sidx], categories=ctx.stages),
            "x": self.x, "y": self.y, "z": self.z, "score": self.score,
            "class_id": self.class_id, "diameter": diameter[self.code],
        })


class _PerCode:
    """Per micrograph code: selected (in the table), the table's row and its values."""

    def __init__(self, table: pd.DataFrame, n_codes: int):
        self.code_of_row = table["code"].to_numpy(np.int64)
        self.selected = np.zeros(n_codes, dtype=bool)
        self.selected[self.code_of_row] = True
        self.n = n_codes
        self.table_ids = table["micrograph_id"].to_numpy(np.float64)
        self.table_nx = table["nx"].to_numpy(np.float64)
        self.table_ny = table["ny"].to_numpy(np.float64)

    def values(self, column: np.ndarray) -> np.ndarray:
        out = np.full(self.n, np.nan)
        out[self.code_of_row] = column
        return out


def _most_curated(code: np.ndarray, rank: np.ndarray, n_codes: int) -> np.ndarray:
    """:func:`most_curated_mask` on arrays (positive sets only: every rank counts)."""
    best = np.full(n_codes, -1, dtype=np.int64)
    for r in np.unique(rank):  # ascending: the highest rank present is written last
        best[code[rank == r]] = r
    return rank == best[code]


def _micrograph_table(pos: _Picks, ctx: _Context) -> pd.DataFrame:
    """One row per selected micrograph: the catalog row most of its positives refer to (ties:
    the lowest id), with CTF and motion filled from any row of the same key where the
    representative lacks them. Rows in ``mic`` order; ``code`` is the micrograph code."""
    mics = ctx.mics
    n = np.bincount(pos.mrow, minlength=len(mics))
    has = np.flatnonzero(n > 0)
    code = ctx.mcode[has]
    order = np.lexsort((has, -n[has], ctx.names.to_numpy()[code].astype(str)))
    first = np.concatenate(([True], code[order][1:] != code[order][:-1]))
    rep = has[order][first]
    info = mics.rename(columns={"id": "micrograph_id"}).drop(columns=["mic"])
    table = info.iloc[rep].reset_index(drop=True)
    table.insert(0, "mic", mics["mic"].to_numpy()[rep])
    table.insert(1, "micrograph_id", table.pop("micrograph_id"))
    used = mics[np.isin(ctx.mcode, ctx.mcode[rep])]
    for col in ("ctf_max_res", "total_motion", "pixel_size"):
        values = pd.to_numeric(used[col], errors="coerce").astype("float64")
        fill = values.groupby(used["mic"]).first()  # first known value of the key
        table[col] = (
            pd.to_numeric(table[col], errors="coerce").astype("float64")
            .fillna(table["mic"].map(fill))
        )
    best = np.full(len(ctx.names), -1, dtype=np.int64)
    rank = ctx.rank[pos.sidx]
    for r in np.unique(rank):
        best[pos.code[rank == r]] = r
    stage_of_rank = {int(STAGE_RANK[s]): s for s in ctx.stages if s not in NEGATIVE_STAGES}
    table["stage"] = [stage_of_rank[int(r)] for r in best[ctx.mcode[rep]]]
    for col in ("nx", "ny"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    table["code"] = ctx.mcode[rep]
    return table


def _to_representative(picks: _Picks, per: _PerCode, ctx: _Context) -> _Picks:
    """Rescale picks made on another file of the same micrograph (e.g. a binned copy) to the
    representative file's pixels (by the nx, ny ratio) and relabel their micrograph_id."""
    if not len(picks):
        return picks
    table_id = per.values(per.table_ids).astype(np.float64)
    rep_id = table_id[picks.code]
    other = picks.micrograph_id != rep_id
    if other.any():
        sub = np.flatnonzero(other)
        c, r = picks.code[sub], picks.mrow[sub]
        fx = per.values(per.table_nx)[c] / ctx.nx[r]
        fy = per.values(per.table_ny)[c] / ctx.ny[r]
        fx = np.where(np.isfinite(fx), fx, 1.0)
        fy = np.where(np.isfinite(fy), fy, 1.0)
        picks = picks.take(np.ones(len(picks), dtype=bool))  # a copy
        picks.x[sub] = picks.x[sub] * fx
        picks.y[sub] = picks.y[sub] * fy
        picks.micrograph_id[sub] = rep_id[sub].astype(np.int64)
        picks.mrow[sub] = ctx.mic_ids.get_indexer(picks.micrograph_id[sub])
    return picks


def _micrograph_diameters(pos: _Picks, ctx: _Context, sets, set_diam, table,
                          diameter) -> pd.Series:
    """Particle diameter in Å per micrograph (see the module docstring): the median over the
    micrograph's positives of their set's diameter, else the project's median over its sets."""
    if diameter is not None:
        return pd.Series(float(diameter), index=table["mic"])
    d_set = set_diam.reindex(ctx.set_ids).to_numpy(np.float64)
    med = _median_per_code(pos.code, pos.sidx, d_set, len(ctx.names))
    d = pd.Series(med[table["code"].to_numpy()], index=table["mic"].to_numpy())
    proj = (
        sets.assign(d=sets["id"].map(set_diam).to_numpy()).groupby("project_id")["d"].median()
    )
    fallback = table.set_index("mic")["project_id"].map(proj)
    return d.fillna(fallback)


def _median_per_code(code, sidx, d_set, n_codes) -> np.ndarray:
    """Median (NaN skipped; even counts: mean of the two middle values, as pandas) of
    ``d_set[sidx]`` per code, from the counts of each (code, set)."""
    out = np.full(n_codes, np.nan)
    ok = np.isfinite(d_set[sidx])
    if not ok.any():
        return out
    values, vidx = np.unique(d_set[sidx[ok]], return_inverse=True)
    key = code[ok] * len(values) + vidx.ravel()
    keys, cnt = np.unique(key, return_counts=True)
    gcode, gval = keys // len(values), values[keys % len(values)]  # sorted by (code, value)
    cum = np.cumsum(cnt)
    codes, start = np.unique(gcode, return_index=True)
    total = np.add.reduceat(cnt, start)
    base = cum[start] - cnt[start]
    lo_v = gval[np.searchsorted(cum, base + (total - 1) // 2, side="right")]
    hi_v = gval[np.searchsorted(cum, base + total // 2, side="right")]
    out[codes] = np.where(total % 2 == 1, lo_v, (lo_v + hi_v) / 2)
    return out


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
