""".cs joins: a particle group's files (the job's own results and the passthrough ones) read
once each, only the fields a set needs, and joined on ``uid`` in the main file's row order.

Throughput: a 1M-particle refinement (main + passthrough) parses in about a second: files are
memory-mapped and only the needed columns copied, the join is a hash lookup on uid, and path
strings are factorised as bytes and decoded once per micrograph (see harvest.csfile).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from harvest.conventions import ALIGNMENT_2D_STAGES, ALIGNMENT_3D_STAGES, recentres
from harvest.cryosparc.jobjson import Group
from harvest.csfile import CsFileError, factorize_bytes, join_passthrough, read_cs
from harvest.records import Problem

# Fields a particle set reads, by role. Per-row fields are joined on uid across the group's
# files; per-micrograph fields are read beside ``location/micrograph_path`` and looked up through
# the path's code (a micrograph has one shape and pixel size); per-set fields come from the
# first row of the first file that has them.
PATH_FIELD = "location/micrograph_path"
ROW_FIELDS: tuple[str, ...] = (
    "uid",
    "location/center_x_frac",
    "location/center_y_frac",
    "pick_stats/ncc_score",
)
CLASS_FIELDS = {"2d": ("alignments2D/class",), "3d": ("alignments3D/class",),
                "any": ("alignments2D/class", "alignments3D/class")}
# Shift fields by alignment dimension (read only where the stage recentres); ``blob/psize_A`` is
# the pixel-size fallback, ``alignments3D_multi/`` the per-class shifts of v4.5+.
SHIFT_FIELDS: dict[str, tuple[str, ...]] = {
    "2d": ("alignments2D/shift", "alignments2D/psize_A", "blob/psize_A"),
    "3d": ("alignments3D/shift", "alignments3D/psize_A", "blob/psize_A", "alignments3D_multi/"),
}
MIC_FIELDS: tuple[str, ...] = (
    "location/micrograph_uid",
    "location/micrograph_shape",
    "location/micrograph_psize_A",
)
SET_FIELDS: tuple[str, ...] = (
    "blob/shape", "blob/psize_A", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast",
)


def group_files(root: str, g: Group) -> tuple[list[str], list[str]]:
    """Absolute main metafiles (job's own results) and passthrough metafiles of a group."""
    main: list[str] = []
    passthrough: list[str] = []
    for r in g.results:
        path = os.path.normpath(os.path.join(root, r.metafile))
        target = passthrough if r.passthrough else main
        if path not in main and path not in passthrough:
            target.append(path)
    if not main and passthrough:  # a group that only passes particles through
        main.append(passthrough.pop(0))
    return main, passthrough


def cs_problem(path: str, exc: Exception) -> Problem:
    """A Problem whose message does not repeat the path (readers name the file themselves)."""
    msg = str(exc)
    for prefix in (f"{path}: ", f"{os.path.abspath(path)}: "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return Problem(path, msg)


def fingerprint(paths: list[str]) -> str:
    h = hashlib.sha1()
    for p in sorted(paths):
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{p}\0missing\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def first_value(arrays: list[np.ndarray], name: str, cast=float):
    """Row 0 of the first array that has ``name``, as a Python scalar (first element of vector
    fields); None when absent, empty or not finite."""
    for arr in arrays:
        if name in arr.dtype.names:
            if len(arr) == 0:
                return None
            v = np.asarray(arr[name][0]).reshape(-1)
            if v.size == 0:
                return None
            value = v[0].item()
            if isinstance(value, float) and not np.isfinite(value):
                return None
            return cast(value)
    return None


@dataclass
class Loaded:
    """A particle group's files, read once each and joined on uid (main file's row order).

    ``cols``: per-row fields. The micrograph path is not joined as bytes (a random gather of
    ~100 bytes per row): it is factorised in its own file's order and only the codes are
    carried over. ``path_codes``: per main row, index into ``path_values`` (-1: no row in that
    file). ``mic_fields``: per distinct path, the location fields read beside it.
    """

    cols: dict
    arrays: list[np.ndarray]
    main_file: str
    files: list[str]
    own_fields: frozenset = frozenset()
    path_values: np.ndarray | None = None
    path_codes: np.ndarray | None = None
    mic_fields: dict = field(default_factory=dict)


def alignment_of(stage: str) -> str | None:
    """``"2d"``/``"3d"``: which alignment a stage's classes and shifts come from (None: none)."""
    if stage in ALIGNMENT_3D_STAGES:
        return "3d"
    if stage in ALIGNMENT_2D_STAGES:
        return "2d"
    return None


def fields_for_stage(stage: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    """Per-row fields a set of ``stage`` reads: its alignment's class, and its shifts where the
    stage recentres (``extra``: per-class alignment prefixes such as ``alignments_class_N/``)."""
    dim = alignment_of(stage)
    if dim is None:
        return ROW_FIELDS + CLASS_FIELDS["any"]
    fields = ROW_FIELDS + CLASS_FIELDS[dim]
    if recentres(stage):
        fields += SHIFT_FIELDS[dim] + extra
    return fields


def load_group(root: str, g: Group, row_fields: tuple[str, ...], problems: list[Problem]):
    """Read and join a group's files; a :class:`Loaded` or None (Problems recorded)."""
    main, passthrough = group_files(root, g)
    if not main:
        return None
    files = main + passthrough
    missing = [p for p in files if not os.path.exists(p)]  # a FIFO: read_cs says what it is
    if missing:
        problems.append(
            Problem(missing[0], f"output '{g.name}': {len(missing)} metafile(s) missing")
        )
        return None
    wanted = (*row_fields, PATH_FIELD, *MIC_FIELDS, *SET_FIELDS)
    arrays = []
    for p in files:
        try:
            arrays.append(read_cs(p, fields=wanted))  # one pass over each file
        except CsFileError as exc:
            problems.append(cs_problem(p, exc))
            return None
    exact = {f for f in row_fields if not f.endswith("/")}
    prefixes = tuple(f for f in row_fields if f.endswith("/"))

    def per_row(arr: np.ndarray) -> np.ndarray:
        names = [n for n in arr.dtype.names if n in exact or (prefixes and n.startswith(prefixes))]
        return arr[names]  # a view: only these fields are gathered by the join

    cols = join_passthrough(per_row(arrays[0]), *[per_row(a) for a in arrays[1:]])
    for other, unmatched in zip(files[1:], cols.unmatched):
        if unmatched:
            problems.append(
                Problem(
                    other,
                    f"{unmatched} of {len(arrays[0])} particles of {main[0]} have no row "
                    "(uid) here; their fields from this file are missing",
                )
            )
    own = frozenset(n for a in arrays[: len(main)] for n in a.dtype.names)
    loaded = Loaded(cols, arrays, main[0], files, own_fields=own)
    path_file = next((i for i, a in enumerate(arrays) if PATH_FIELD in a.dtype.names), None)
    if path_file is not None:
        arr = arrays[path_file]
        key = arr["location/micrograph_uid"] if "location/micrograph_uid" in arr.dtype.names else None
        first, codes = factorize_bytes(arr[PATH_FIELD], key=key)
        if path_file:
            rows, found = cols.rows[path_file - 1], cols.found[path_file - 1]
            codes = np.where(found, codes[rows], -1)
        loaded.path_values = arr[PATH_FIELD][first]
        loaded.path_codes = codes
        loaded.mic_fields = {f: arr[f][first] for f in MIC_FIELDS if f in arr.dtype.names}
    return loaded
