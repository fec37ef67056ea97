"""The particle codec: how a particle set's rows are stored in ``particles`` and read back.

Coordinates that callers see are float pixels of the referenced micrograph (DESIGN.md frame:
x = column, y = row, origin at the first stored pixel, no flip). How particles are stored is
private to this module (:func:`insert_set` writes a set, :func:`read_set` reads one back):

Particle storage (why it is this narrow)
    ``particles`` is a ``WITHOUT ROWID`` table keyed ``(set_id, micrograph_id, row)``. The key is
    both indexes the catalog needs: all particles of a set are one contiguous key range, and the
    particles of one micrograph in a set are a sub-range; "all particles of micrograph M" is
    ``set_id IN (sets of M's project) AND micrograph_id = M``, again key seeks. A separate index
    on micrograph_id would cost ~20 bytes a row for a query that never spans projects.
    Rows go in sorted by key, so B-tree pages fill completely.

    * ``x, y, z`` are the *raw* (as picked) coordinates as integers in 1/1000 px
      (:data:`COORD_SCALE`): max quantisation error 0.0005 px; SQLite stores them in 3 bytes up
      to 8388 px and 4 bytes up to 2.1 million px (a float would take 8).
    * ``dx, dy, dz`` are the recentring (best centre − raw) in the same 1/1000 px units, rounded
      from the float centre, so the recentred centre is also within 0.0005 px. Where a job did
      not refine shifts they are 0, which SQLite stores in zero bytes.
    * ``score`` is an integer ``round(score × score_scale)``; ``score_scale`` is per particle set
      (1e4 unless |score| ≥ 1e11, then smaller so the value fits 2^53): error ≤ 0.5/score_scale
      (5e-5 for pick scores). NULL where the score is NaN; a set without scores stores NULL.
    * ``uid`` stores ``uid − row`` (wrapping int64): RELION's uid *is* the row number, so it costs
      zero bytes; CryoSPARC's random uint64 uids (kept as their int64 view) cost 8.
    * ``class_id`` as is (−1 = none, 1 byte).

    Measured (``benchmarks/bench_harvest_size.py``, 1M rows each, after VACUUM, key and page
    overhead included): 43 bytes per CryoSPARC refined particle (random uid, shifts, score,
    class), 31 per RELION pick, 32 per 3D tomogram pick; the budget is 60.

    ``set_counts`` caches particles per (set, micrograph) so stage counts never scan particles.

Bulk rows go in with the connection's ``executemany`` of multi-row ``INSERT … VALUES`` (256 rows
a statement) built from one int64 array per set, inside the project's transaction. Python objects
are what a bulk insert costs, so pairs of 32-bit values travel packed in one 64-bit parameter
((micrograph, row), (x, y), (dx, dy)) and SQL splits them; reads pack them the same way so a
whole set becomes one int64 array. Coordinates are therefore limited to ±2.1 million px (a set
beyond that is refused with a ValueError naming it). Each statement's parameters become Python
ints only when sqlite3 asks for them (a generator over the array's rows), so a set never holds
10^7 ints at once; a parameter with one value for the whole set (no shifts, uid = row, one
class) is written into the SQL text instead of bound per row. A ``micrograph`` column may be a
pandas Categorical (its codes are used, no string per row); new micrographs go in with one
``executemany`` and explicit ids (max + 1 in order, as SQLite would assign them; see
:mod:`harvest.catalog.writer`). Measurements behind these choices: ``benchmarks/results/harvest.md``, section 1.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harvest.catalog.sqlvalues import db_text, sql_values
from harvest.records import ParticleSetRecord

COORD_SCALE = 1000  # stored coordinate units per pixel (max error 0.5 / COORD_SCALE px)
DEFAULT_SCORE_SCALE = 1e4
_ROWS_PER_STATEMENT = 256  # rows per multi-row INSERT statement (≤ 8 parameters a row)


@dataclass
class SetWriteResult:
    set_id: int
    count: int


def _quantise(values: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(int64 array, null mask) of round(values × scale)."""
    values = np.asarray(values, dtype=np.float64)
    null = ~np.isfinite(values)
    if not null.any():  # the usual case: no boolean gather and scatter
        return np.rint(values * scale).astype(np.int64), null
    q = np.zeros(len(values), dtype=np.int64)
    ok = ~null
    q[ok] = np.rint(values[ok] * scale).astype(np.int64)
    return q, null


def _score_scale(score: np.ndarray) -> float:
    finite = score[np.isfinite(score)]
    if not len(finite):
        return DEFAULT_SCORE_SCALE
    top = float(np.max(np.abs(finite)))
    scale = DEFAULT_SCORE_SCALE
    while top * scale >= 2.0**53:
        scale /= 10.0
    return scale


_M32 = 0xFFFFFFFF
_NULL = np.iinfo(np.int64).min  # read-side sentinel for NULL
_COORD_LIMIT = 2**31  # packed pairs hold 32-bit signed halves (±2.1 million px)


def _pack(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Two int32-range int64 arrays into one int64: ``hi << 32 | lo & 0xFFFFFFFF``."""
    return (hi << 32) | (lo & _M32)


def _unpack(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`_pack` (sign-extends both halves)."""
    return v >> 32, (v & _M32).astype(np.uint32).view(np.int32).astype(np.int64)


def _sql_hi(p: str) -> str:
    return f"({p} >> 32)"


def _sql_lo(p: str) -> str:
    """Low 32 bits of a packed parameter, sign-extended (SQLite has no XOR; all bit
    operators share one precedence level, hence the parentheses)."""
    return f"(({p} & {_M32}) - ((({p} >> 31) & 1) << 32))"


def factorize_micrographs(df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """(code per particle, distinct micrograph paths) of a particles frame."""
    if not len(df):
        return np.zeros(0, np.int64), []
    col = df["micrograph"]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return _categorical_codes(col)
    if col.dtype == object and isinstance(col.iloc[0], bytes):
        col = col.map(os.fsdecode)
    elif not (pd.api.types.is_string_dtype(col.dtype) or col.dtype == object):
        col = col.astype(str)
    codes, uniques = pd.factorize(col, sort=False)
    if (codes < 0).any():
        raise ValueError(f"{int((codes < 0).sum())} particle(s) have no micrograph path")
    return codes, [str(u) for u in uniques]


def _categorical_codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """:func:`factorize_micrographs` of a Categorical column from its codes, without touching a
    string per row. Same result as factorising the strings: unused categories dropped, codes
    renumbered in order of first appearance (so new micrographs get the same ids)."""
    raw = col.cat.codes.to_numpy()
    if (raw < 0).any():
        raise ValueError(f"{int((raw < 0).sum())} particle(s) have no micrograph path")
    # first appearances: only where the code changes (rows usually come grouped by micrograph)
    change = np.flatnonzero(np.concatenate(([True], raw[1:] != raw[:-1])))
    order = pd.unique(raw[change])
    cats = col.cat.categories
    renumber = np.zeros(len(cats), dtype=np.int64)
    renumber[order] = np.arange(len(order), dtype=np.int64)
    names = [os.fsdecode(c) if isinstance(c, bytes) else str(c) for c in cats[order]]
    return renumber[raw], names


def insert_set(conn: sqlite3.Connection, project_id: int, job_id: int | None,
               ps: ParticleSetRecord, mic_ids: dict[str, int], origin: str,
               factorized: tuple[np.ndarray, list[str]] | None = None) -> SetWriteResult:
    """Insert one particle set and its particles (inside the caller's transaction).

    Python objects are the cost of a bulk insert, so pairs of 32-bit values travel as one
    64-bit parameter ((micrograph, row), (x, y), (dx, dy)) and SQLite splits them again.
    """
    df = ps.particles
    n = len(df)
    for col in ("micrograph", "x", "y", "raw_x", "raw_y"):
        if col not in df.columns:
            raise ValueError(
                f"particle set {ps.name!r} from {ps.source_file}: column {col!r} missing"
            )
    raw_x = df["raw_x"].to_numpy(np.float64)
    raw_y = df["raw_y"].to_numpy(np.float64)
    x = df["x"].to_numpy(np.float64)
    y = df["y"].to_numpy(np.float64)
    score = (df["score"].to_numpy(np.float64) if "score" in df.columns else np.full(n, np.nan))
    scale = _score_scale(score)
    if n:
        codes, uniques = factorized or factorize_micrographs(df)
        lookup = np.array([mic_ids[u] for u in uniques], dtype=np.int64)
        mic = lookup[codes]
    else:
        mic = np.zeros(0, np.int64)
    row = np.arange(n, dtype=np.int64)
    xq, xn = _quantise(raw_x, COORD_SCALE)
    yq, yn = _quantise(raw_y, COORD_SCALE)
    cx, cxn = _quantise(x, COORD_SCALE)
    cy, cyn = _quantise(y, COORD_SCALE)
    dx, dy = cx - xq, cy - yq
    limits = [xq, yq, dx, dy]
    is_3d = bool(ps.is_3d) or ("z" in df.columns and "raw_z" in df.columns)
    has_z = is_3d and "raw_z" in df.columns and "z" in df.columns
    if has_z:
        zq, zn = _quantise(df["raw_z"].to_numpy(np.float64), COORD_SCALE)
        cz, czn = _quantise(df["z"].to_numpy(np.float64), COORD_SCALE)
        limits += [zq, cz - zq]
    for arr in limits:
        if n and np.abs(arr).max() >= _COORD_LIMIT * 0.999:
            raise ValueError(
                f"particle set {ps.name!r} from {ps.source_file}: coordinates beyond "
                f"±{_COORD_LIMIT // COORD_SCALE:,} px cannot be stored; check the file"
            )
    cls = (df["class_id"].fillna(-1).to_numpy(np.int64) if "class_id" in df.columns
           else np.full(n, -1, np.int64))
    uid = df["uid"].to_numpy(np.int64) if "uid" in df.columns else row
    with np.errstate(over="ignore"):
        duid = uid - row  # wraps in int64; decoded by adding row back
    sq, sn = _quantise(score, scale)
    # (name, values, null mask, SQL expressions for the table columns it fills)
    params: list[tuple[str, np.ndarray, np.ndarray | None]] = [
        ("mr", _pack(mic, row), None),
        ("xy", _pack(xq, yq), xn | yn),
        ("d", _pack(dx, dy), xn | yn | cxn | cyn),
    ]
    columns = ["micrograph_id", "row", "x", "y", "dx", "dy"]
    if has_z:
        params += [("z", zq, zn), ("dz", cz - zq, zn | czn)]
        columns += ["z", "dz"]
    if not sn.all():
        params.append(("score", sq, sn))
        columns.append("score")
    params += [("class", cls, None), ("uid", duid, None)]
    columns += ["class_id", "uid"]

    cur = conn.execute(
        "INSERT INTO particle_sets (project_id, job_id, name, stage, class_id, count, box_size, "
        "image_pixel_size, voltage, cs, amp_contrast, is_3d, sparse, source_file, fingerprint, "
        "score_scale, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (project_id, job_id, db_text(ps.name), ps.stage, ps.class_id, n, ps.box_size,
         *sql_values([ps.image_pixel_size, ps.voltage, ps.cs, ps.amp_contrast]),
         int(is_3d), int(bool(ps.sparse)), db_text(ps.source_file), db_text(ps.fingerprint), scale,
         origin),
    )
    sid = int(cur.lastrowid)
    if not n:
        return SetWriteResult(sid, 0)
    if n > 1 and bool((mic[1:] >= mic[:-1]).all()):
        order = slice(None)  # already grouped by micrograph (the usual case): rows in key order
    else:
        order = np.lexsort((row, mic))
    # A parameter with one value for the whole set (RELION: no shifts, uid = row, one class)
    # goes into the SQL text as a literal instead of one Python int per row.
    # (Never the key "mr": one row per bound parameter set.)
    literal: dict[int, int] = {}
    for j, (name, v, m) in enumerate(params):
        if name != "mr" and (m is None or not m.any()) and v[0] != _NULL and bool((v == v[0]).all()):
            literal[j] = int(v[0])
    bound = [j for j in range(len(params)) if j not in literal]
    data = np.stack([params[j][1][order] for j in bound], axis=1)
    masks = {i: params[j][2][order] for i, j in enumerate(bound)
             if params[j][2] is not None and params[j][2].any()}
    if masks:
        # Rare: some values missing. Python objects with None where a value is missing.
        data = data.astype(object)
        for i, m in masks.items():
            data[m, i] = None
    width = len(bound)

    def row_sql(base: int) -> str:
        exprs = [str(sid)]
        pos = base
        for j, (name, _, _) in enumerate(params):
            if j in literal:
                p = str(literal[j])
            else:
                pos += 1
                p = f"?{pos}"
            if name in ("mr", "xy", "d"):
                exprs += [_sql_hi(p), _sql_lo(p) if name != "mr" else f"({p} & {_M32})"]
            else:
                exprs.append(p)
        return "(" + ", ".join(exprs) + ")"

    head = f"INSERT INTO particles (set_id, {', '.join(columns)}) VALUES "
    k = _ROWS_PER_STATEMENT
    full = (n // k) * k
    if full:
        # One statement's parameters become Python ints only when sqlite3 asks for them:
        # the ints of a statement are freed before the next is made (no 10^7 live objects).
        conn.executemany(head + ", ".join(row_sql(i * width) for i in range(k)),
                         map(np.ndarray.tolist, data[:full].reshape(-1, k * width)))
    if full < n:
        conn.executemany(head + row_sql(0), data[full:].tolist())
    mids, counts = np.unique(mic, return_counts=True)
    conn.executemany(
        f"INSERT INTO set_counts (set_id, micrograph_id, count) VALUES ({sid}, ?, ?)",
        np.stack([mids, counts], axis=1).tolist(),
    )
    return SetWriteResult(sid, n)


def read_set(conn: sqlite3.Connection, set_id: int, score_scale: float,
             micrograph_id: int | None = None) -> pd.DataFrame:
    """One set's particles (optionally of one micrograph), decoded to float pixels. Pairs are
    packed into one 64-bit value in SQL and NULLs replaced by a sentinel, so that the rows
    become one int64 array in C."""
    where, params = "set_id = ?", [set_id]
    if micrograph_id is not None:
        where, params = "set_id = ? AND micrograph_id = ?", [set_id, micrograph_id]
    is_3d = conn.execute("SELECT is_3d FROM particle_sets WHERE id = ?", (set_id,)).fetchone()
    is_3d = bool(is_3d and is_3d[0])
    # 2D sets skip z/dz: fewer Python objects per row (their absence reads as NaN below)
    zcols = f"ifnull(z, {_NULL}), ifnull(dz, 0), " if is_3d else ""
    rows = conn.execute(
        f"SELECT (micrograph_id << 32) | row, "
        f"ifnull((x << 32) | (y & {_M32}), {_NULL}), "
        f"ifnull((dx << 32) | (dy & {_M32}), {_NULL}), {zcols}"
        f"ifnull(score, {_NULL}), ifnull(class_id, -1), "
        f"ifnull(uid, 0) FROM particles WHERE {where} ORDER BY micrograph_id, row",
        params,
    ).fetchall()
    n = len(rows)
    a = np.array(rows, dtype=np.int64).reshape(n, 8 if is_3d else 6)
    if not is_3d:  # same column positions as a 3D read
        a = np.insert(a, 3, [[_NULL], [0]], axis=1) if n else np.zeros((0, 8), np.int64)
    mic, row = a[:, 0] >> 32, a[:, 0] & _M32
    null_xy = a[:, 1] == _NULL
    xq, yq = _unpack(a[:, 1])
    dxq, dyq = _unpack(np.where(a[:, 2] == _NULL, 0, a[:, 2]))
    raw_x = np.where(null_xy, np.nan, xq / COORD_SCALE)
    raw_y = np.where(null_xy, np.nan, yq / COORD_SCALE)
    x = np.where(null_xy | (a[:, 2] == _NULL), np.nan, (xq + dxq) / COORD_SCALE)
    y = np.where(null_xy | (a[:, 2] == _NULL), np.nan, (yq + dyq) / COORD_SCALE)
    null_z = a[:, 3] == _NULL
    raw_z = np.where(null_z, np.nan, a[:, 3] / COORD_SCALE)
    z = np.where(null_z, np.nan, (a[:, 3] + a[:, 4]) / COORD_SCALE)
    score = np.where(a[:, 5] == _NULL, np.nan, a[:, 5] / score_scale)
    with np.errstate(over="ignore"):
        uid = a[:, 7] + row
    return pd.DataFrame({
        "set_id": np.full(n, set_id, np.int64), "micrograph_id": mic, "x": x, "y": y,
        "raw_x": raw_x, "raw_y": raw_y, "z": z, "raw_z": raw_z, "score": score,
        "class_id": a[:, 6], "uid": uid,
    })


def read_centres(conn: sqlite3.Connection, set_id: int, score_scale: float) -> pd.DataFrame:
    """One set's particles as :func:`read_set` gives them, without ``raw_x, raw_y, raw_z, uid``
    (what an export needs): the same values in the same order, in half the Python objects per
    row ((micrograph, class) and the recentred (x, y) travel packed, see the module docstring).
    Centres (or classes) beyond the packed range (±2.1 million px) fall back to
    :func:`read_set`."""
    is_3d = conn.execute("SELECT is_3d FROM particle_sets WHERE id = ?", (set_id,)).fetchone()
    is_3d = bool(is_3d and is_3d[0])
    far = _NULL + 1  # a centre that does not fit the packed pair
    zcol = f", ifnull(z + ifnull(dz, 0), {_NULL})" if is_3d else ""
    cur = conn.execute(
        f"SELECT CASE WHEN abs(ifnull(class_id, -1)) < {_COORD_LIMIT} THEN "
        f"(micrograph_id << 32) | (ifnull(class_id, -1) & {_M32}) ELSE {far} END, "
        f"CASE WHEN abs(x + dx) < {_COORD_LIMIT} AND abs(y + dy) < {_COORD_LIMIT} "
        f"THEN ((x + dx) << 32) | ((y + dy) & {_M32}) WHEN x + dx + y + dy IS NULL "
        f"THEN {_NULL} ELSE {far} END, ifnull(score, {_NULL}){zcol} "
        "FROM particles WHERE set_id = ? ORDER BY micrograph_id, row",
        (set_id,),
    )
    # rows straight into one int64 array (np.array of a list of tuples costs half as much again)
    flat = np.fromiter(itertools.chain.from_iterable(cur), dtype=np.int64)
    n = len(flat) // (4 if is_3d else 3)
    a = flat.reshape(n, 4 if is_3d else 3)
    if (a[:, :2] == far).any():
        full = read_set(conn, set_id, score_scale)
        return full[["set_id", "micrograph_id", "x", "y", "z", "score", "class_id"]]
    mic, cls = _unpack(a[:, 0])
    null = a[:, 1] == _NULL
    cx, cy = _unpack(a[:, 1])
    x = np.where(null, np.nan, cx / COORD_SCALE)
    y = np.where(null, np.nan, cy / COORD_SCALE)
    z = (np.where(a[:, 3] == _NULL, np.nan, a[:, 3] / COORD_SCALE) if is_3d
         else np.full(n, np.nan))
    score = np.where(a[:, 2] == _NULL, np.nan, a[:, 2] / score_scale)
    return pd.DataFrame({
        "set_id": np.full(n, set_id, np.int64), "micrograph_id": mic, "x": x, "y": y, "z": z,
        "score": score, "class_id": cls,
    })
