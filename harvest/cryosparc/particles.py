"""CryoSPARC particle groups → particle sets (positions, recentring, classes, set metadata).

Coordinates (DESIGN.md pixel frame: pixels of the micrograph file named by
``location/micrograph_path``, x = column, y = row, no flip):

* ``raw_x, raw_y`` = ``location/center_{x,y}_frac`` × ``location/micrograph_shape`` ([ny, nx])
  through :func:`harvest.conventions.cryosparc_frac_to_pixels`.
* ``x, y`` = recentred with the alignment shifts
  (:func:`harvest.conventions.recentre_cryosparc`: ``x − shift × alignment psize / micrograph
  psize``) for the stages that recentre (:func:`harvest.conventions.recentres`: for now
  ``refined`` and ``classified3d``, from ``alignments3D``; 2D stages keep ``x = raw_x``, and
  would read ``alignments2D`` once the rule includes them).
* Per-class outputs (hetero refinement, 3D classification, ab-initio ``particles_class_N``) use
  the class group's own ``alignments3D``; without it ``alignments_class_N`` (≤ v4.4); without
  that ``alignments3D_multi`` at class N (v4.5+, per-class shifts of shape [n, K, 2]; psize
  [n] or [n, K]); a set that is not per class but has only ``alignments3D_multi`` uses each
  particle's ``class_posterior`` argmax. Other ``alignments3D_multi`` layouts are not handled:
  the set keeps its raw positions and a Problem says why.
* Micrograph shape and pixel size are read per distinct ``location/micrograph_path`` (in the
  file that holds the path) and applied to its particles: one micrograph, one shape.
* Values are checked at this boundary (:mod:`harvest.validate`, tolerance
  :data:`harvest.conventions.EDGE_MARGIN`): a particle whose ``center_*_frac`` is NaN, inf or
  off its micrograph is left out and counted in one Problem per set.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from harvest.conventions import cryosparc_frac_to_pixels, recentre_cryosparc, recentres
from harvest.cryosparc.jobjson import Group
from harvest.cryosparc.jobs import JobType
from harvest.cryosparc.joins import (
    alignment_of,
    fields_for_stage,
    fingerprint,
    first_value,
    group_files,
    load_group,
)
from harvest.cryosparc.micrographs import add_particle_micrographs
from harvest.csfile import CsFileError, cs_field_names, decode_strings
from harvest.records import MicrographRecord, ParticleSetRecord, Problem, empty_particles
from harvest.validate import check_particles


def parse_particle_group(
    root: str,
    jt: JobType,
    g: Group,
    stage: str,
    class_id: int | None,
    mics: dict[str, MicrographRecord],
    problems: list[Problem],
    own_shifts_only: bool = False,
) -> ParticleSetRecord | None:
    """One particle set from an output group at ``stage``. ``own_shifts_only``: recentre only
    with alignments the job wrote itself (not passed through), for stages inherited through
    provenance (see :func:`harvest.cryosparc.project.particle_stage`)."""
    extra: tuple[str, ...] = ()
    if class_id is not None:
        extra = (f"alignments_class_{class_id}/",)
    main, passthrough = group_files(root, g)
    if jt.extracted_if_blob and main:
        try:  # header only: does any file carry particle images?
            if any(n.startswith("blob/") for p in main + passthrough if os.path.isfile(p)
                   for n in cs_field_names(p)):
                stage = "extracted"
        except CsFileError:
            pass  # reported by load_group below
    loaded = load_group(root, g, fields_for_stage(stage, extra), problems)
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
    if recentres(stage) and n:
        mpsize = loaded.mic_fields.get("location/micrograph_psize_A")
        mpsize = None if mpsize is None else np.asarray(mpsize, dtype=np.float64)[codes]
        own = loaded.own_fields
        if own_shifts_only:
            cols_used = {k: v for k, v in cols.items() if k in own or not k.startswith("align")}
        else:
            cols_used = cols
        x, y = _recentre(cols_used, alignment_of(stage), own, class_id, raw_x, raw_y,
                         mpsize, main_file, g.name, problems)

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
    add_particle_micrographs(root, loaded.mic_fields, np.flatnonzero(used), names, mics)

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
    pset = ParticleSetRecord(
        name=g.name,
        stage=stage,
        particles=particles,
        source_file=main_file,
        fingerprint=fingerprint(loaded.files),
        class_id=class_id,
        box_size=first_value(arrays, "blob/shape", int),
        image_pixel_size=first_value(arrays, "blob/psize_A"),
        voltage=first_value(arrays, "ctf/accel_kv"),
        cs=first_value(arrays, "ctf/cs_mm"),
        amp_contrast=first_value(arrays, "ctf/amp_contrast"),
        is_3d=False,
        sparse=jt.sparse,
    )
    # values at the boundary (harvest.validate): center_*_frac NaN, inf or off the micrograph
    if n:
        sizes = {names[i]: (mic_shape[i, 1], mic_shape[i, 0]) for i in np.flatnonzero(used)}
        problems += check_particles(pset, sizes, factorized=(codes, list(names)))
    return pset


def _string_column(codes: np.ndarray, values: np.ndarray) -> pd.Categorical:
    """``values[codes]`` as a pandas Categorical: no string per row is made, and the catalog
    writer stores its codes as they are (no second factorisation of 10^6 paths)."""
    inverse, uniq = pd.factorize(values)  # two paths that decode alike become one category
    return pd.Categorical.from_codes(np.asarray(inverse)[codes] if len(uniq) < len(values)
                                     else codes, pd.Index(uniq, dtype=object))


def _class_ids(cols: dict, stage: str, class_id: int | None, n: int) -> np.ndarray:
    """Per-particle class: 3D stages read ``alignments3D/class`` (per-class sets: N), 2D stages
    ``alignments2D/class``, others whichever exists; -1 where unknown."""
    dim = alignment_of(stage)
    if dim == "3d":
        if class_id is not None:
            return np.full(n, class_id, dtype=np.int64)
        order = ("alignments3D/class",)
    elif dim == "2d":
        order = ("alignments2D/class",)
    else:
        order = ("alignments2D/class", "alignments3D/class")
    for name in order:
        if name in cols:
            return np.asarray(cols[name]).astype(np.int64)
    return np.full(n, -1, dtype=np.int64)


def _recentre(cols, dim, own, class_id, raw_x, raw_y, mpsize, main_file, group, problems):
    """Recentred (x, y) from the set's alignments (``dim``: ``"2d"``/``"3d"``, see
    :func:`~harvest.cryosparc.joins.alignment_of`); raw positions where that is impossible.

    2D: ``alignments2D`` (the job's own or passed through). 3D, with ``own`` the fields of the
    job's own (non-passthrough) files: the job's own ``alignments3D`` wins; then the class's
    ``alignments_class_N`` or ``alignments3D_multi``; an ``alignments3D`` passed through from an
    upstream job comes last.
    """
    shift = psize = None
    n = len(raw_x)
    if dim == "2d":
        shift = cols.get("alignments2D/shift")
        psize = cols.get("alignments2D/psize_A")
    elif dim != "3d":
        return raw_x, raw_y
    elif "alignments3D/shift" in own:
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
    ok |= ~(np.isfinite(raw_x) & np.isfinite(raw_y))  # left out later (harvest.validate)
    if not ok.all():
        problems.append(
            Problem(main_file, f"'{group}': {int((~ok).sum())} particles without usable shift or "
                    "pixel size kept their picked position")
        )
        x = np.where(ok, x, raw_x)
        y = np.where(ok, y, raw_y)
    return x, y
