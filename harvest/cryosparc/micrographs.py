"""CryoSPARC micrographs: exposure outputs (motion correction, CTF, curation, imports) → micrograph
records with shape, pixel size, CTF fit and total motion; records of the micrographs particles
name (``location/*`` fields); a check that the referenced files exist."""

from __future__ import annotations

import os

import numpy as np

from harvest import fsguard
from harvest.conventions import micrograph_key
from harvest.cryosparc.joins import cs_problem, group_files
from harvest.csfile import CsFileError, decode_strings, join_passthrough, read_cs
from harvest.records import MicrographRecord, Problem

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


def _abs(root: str, path: str) -> str:
    """Absolute path of a project-relative path; never touches the file system."""
    return os.path.normpath(os.path.join(root, path))


def _merge(mics: dict[str, MicrographRecord], m: MicrographRecord) -> None:
    old = mics.get(m.path)
    if old is None:
        mics[m.path] = m
        return
    for name in ("nx", "ny", "pixel_size", "defocus_u", "defocus_v", "defocus_angle",
                 "ctf_max_res", "ctf_fom", "total_motion", "exposure_uid", "size_source"):
        if getattr(old, name) is None and getattr(m, name) is not None:
            setattr(old, name, getattr(m, name))


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def add_particle_micrographs(root, mic_fields, which, names, mics) -> None:
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
                size_source="metadata" if sh is not None else None,
                pixel_size=_num(ps[i]) if ps is not None and ps[i] > 0 else None,
                exposure_uid=str(uids[i]) if uids is not None and uids[i] else None,
            ),
        )


def _field(cols, attr: str):
    for name in EXPOSURE_FIELDS[attr]:
        if name in cols:
            return cols[name]
    return None


def parse_exposure_group(root, g, mics, problems) -> None:
    main, passthrough = group_files(root, g)
    if not main:
        return
    wanted = ["uid", *TRAJECTORY_FIELDS] + [f for names in EXPOSURE_FIELDS.values() for f in names]
    arrays = []
    for p in main + passthrough:
        if not os.path.exists(p):  # a FIFO or folder: read_cs says what it is
            problems.append(Problem(p, f"output '{g.name}': metafile missing"))
            return
        try:
            arrays.append(read_cs(p, fields=wanted))
        except CsFileError as exc:
            problems.append(cs_problem(p, exc))
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
                size_source="metadata" if shape is not None and len(shape[i]) >= 2 else None,
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
            fsguard.check_file(path)  # regular and inside the roots, else never opened
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


def check_micrographs_exist(job_dir, micrographs, problems) -> None:
    missing = [m.abs_path for m in micrographs if not os.path.exists(m.abs_path)]
    if missing:
        problems.append(
            Problem(
                job_dir,
                f"{len(missing)} of {len(micrographs)} referenced micrograph files not found "
                f"(first: {missing[0]})",
            )
        )
