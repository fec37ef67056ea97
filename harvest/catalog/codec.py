"""The particle codec: how a particle set's rows are stored and read back.

Coordinates that callers see are float pixels of the referenced micrograph (DESIGN.md frame:
x = column, y = row, origin at the first stored pixel, no flip). How particles are stored is
private to this module (:func:`insert_set` writes a set, :func:`read_set` reads one back):

Particle storage (schema 3; why it is this narrow)
    ``particle_rows`` is a rowid table: ``id INTEGER PRIMARY KEY, drow, x, y, dx, dy, score,
    class_id, uid``. A set's rows are one id range, appended after every existing row, in
    (micrograph id, source row) order, so each micrograph of a set is a sub-range:
    ``particle_sets.first_row`` and ``set_counts.first_row`` (with their counts) say where.
    Neither set nor micrograph is repeated in a row, and a read is a rowid range seek ("all
    particles of micrograph M": one range per set of M's project, from ``set_counts``).
    Appending in id order fills B-tree pages completely (SQLite's append path), so a catalog is
    as small as written as after a VACUUM (schema 2's ``WITHOUT ROWID`` table keyed (set,
    micrograph, row) was ~13 % larger until VACUUMed, and ~60 % slower to insert).

    * ``x, y`` are the *raw* (as picked) coordinates as integers in 1/1000 px
      (:data:`COORD_SCALE`): max quantisation error 0.0005 px; SQLite stores them in 3 bytes up
      to 8388 px and 4 bytes up to 2.1 million px (a float would take 8).
    * ``dx, dy`` are the recentring (best centre − raw) in the same 1/1000 px units, rounded
      from the float centre, so the recentred centre is also within 0.0005 px. Where a job did
      not refine shifts they are 0, which SQLite stores in zero bytes.
    * ``drow`` is the source row minus the position in the set: 0 (zero bytes) for a file
      grouped by micrograph, as CryoSPARC and RELION write them.
    * ``score`` is an integer ``round(score × score_scale)``; ``score_scale`` is per particle set
      (1e4 unless |score| ≥ 1e11, then smaller so the value fits 2^53): error ≤ 0.5/score_scale
      (5e-5 for pick scores). NULL where the score is NaN; a set without scores stores NULL.
    * ``uid`` stores ``uid − source row`` (wrapping int64): RELION's uid *is* the row number, so
      it costs zero bytes; CryoSPARC's random uint64 uids (kept as their int64 view) cost 8.
    * ``class_id`` as is (−1 = none, 1 byte).
    * 3D sets keep ``z, dz`` (same units) in ``particle_z`` (id = the particle's id), only for
      rows that have a z, so 2D rows carry no empty z columns.

    The ``particles`` view (:data:`harvest.catalog.schema.PARTICLES_VIEW`) shows the schema-2
    columns (set_id, micrograph_id, row, …, z, dz) for SQL written against them.

    Measured (``benchmarks/bench_harvest_size.py`` and ``bench_harvest_ingest.py``, 1M rows,
    key and page overhead included; ``benchmarks/results/harvest.md``): 37–39 bytes per
    CryoSPARC refined particle (random 64-bit uid, shifts, score, class) as written, the same
    after VACUUM; the budget is 40.

    ``set_counts`` caches particles per (set, micrograph) so stage counts never scan particles.

Bulk rows go in with the connection's ``executemany`` of multi-row ``INSERT … VALUES`` (256 rows
a statement) built from one int64 array per set, inside the project's transaction; SQLite gives
the ids (max + 1 each: the range starting at the max id + 1 read before, checked after). Each
statement's parameters become Python ints only when sqlite3 asks for them (a generator over the
array's rows), so a set never holds 10^7 ints at once; a column with one value for the whole set
(no shifts, uid = row, one class, rows in order) is written into the SQL text instead of bound
per row. Reads pack pairs ((x, y), (dx, dy)) into one 64-bit value in SQL so a whole set
becomes one int64 array; coordinates are therefore limited to ±2.1 million px (a set beyond that
is refused with a ValueError naming it). A ``micrograph`` column may be a pandas Categorical
(its codes are used, no string per row; both parsers hand one over); new micrographs go in with
one ``executemany`` and explicit ids (max + 1 in order, as SQLite would assign them; see
:mod:`harvest.catalog.writer`). Measurements behind these choices:
``benchmarks/results/harvest.md``, sections 1 and 4.
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
    """Insert one particle set and its particles (inside the caller's transaction): the rows
    in (micrograph id, row) order at the end of ``particle_rows``, z in ``particle_z`` (3D
    sets), one ``set_counts`` row per micrograph with its first row id."""
    df = ps.particles
    n = len(df)
    for col in ("micrograph", "x", "y", "raw_x", "raw_y"):
        if col not in df.columns:
            raise ValueError(
                f"particle set {ps.name!r} from {ps.source_file}: column {col!r} missing"
            )
    score = (df["score"].to_numpy(np.float64) if "score" in df.columns else np.full(n, np.nan))
    scale = _score_scale(score)
    if n:
        codes, uniques = factorized or factorize_micrographs(df)
        lookup = np.array([mic_ids[u] for u in uniques], dtype=np.int64)
        mic = lookup[codes]
    else:
        mic = np.zeros(0, np.int64)
    row = np.arange(n, dtype=np.int64)
    if n > 1 and not bool((mic[1:] >= mic[:-1]).all()):
        # not grouped by micrograph: sorted once, so that a micrograph is one id range
        order = np.lexsort((row, mic))
        mic = mic[order]
        drow = order - row  # source row − position
    else:
        order = None
        drow = np.zeros(n, np.int64)

    def col(name: str) -> np.ndarray:
        v = df[name].to_numpy(np.float64)
        return v if order is None else v[order]

    xq, xn = _quantise(col("raw_x"), COORD_SCALE)
    yq, yn = _quantise(col("raw_y"), COORD_SCALE)
    cx, cxn = _quantise(col("x"), COORD_SCALE)
    cy, cyn = _quantise(col("y"), COORD_SCALE)
    dx, dy = cx - xq, cy - yq
    limits = [xq, yq, dx, dy]
    is_3d = bool(ps.is_3d) or ("z" in df.columns and "raw_z" in df.columns)
    has_z = is_3d and "raw_z" in df.columns and "z" in df.columns
    if has_z:
        zq, zn = _quantise(col("raw_z"), COORD_SCALE)
        cz, czn = _quantise(col("z"), COORD_SCALE)
        limits += [zq, cz - zq]
    for arr in limits:
        if n and np.abs(arr).max() >= _COORD_LIMIT * 0.999:
            raise ValueError(
                f"particle set {ps.name!r} from {ps.source_file}: coordinates beyond "
                f"±{_COORD_LIMIT // COORD_SCALE:,} px cannot be stored; check the file"
            )
    cls = (df["class_id"].fillna(-1).to_numpy(np.int64) if "class_id" in df.columns
           else np.full(n, -1, np.int64))
    uid = df["uid"].to_numpy(np.int64) if "uid" in df.columns else np.arange(n, dtype=np.int64)
    if order is not None:
        cls, uid = cls[order], uid[order]
    with np.errstate(over="ignore"):
        duid = uid - (row + drow)  # wraps in int64; decoded by adding the source row back
    sq, sn = _quantise(score if order is None else score[order], scale)
    nxy, nd = xn | yn, xn | yn | cxn | cyn
    # (column, values, null mask)
    params = [("drow", drow, None), ("x", xq, nxy), ("y", yq, nxy), ("dx", dx, nd),
              ("dy", dy, nd)]
    if not sn.all():
        params.append(("score", sq, sn))
    params += [("class_id", cls, None), ("uid", duid, None)]

    first = None
    if n:
        first = int(conn.execute("SELECT ifnull(max(id), 0) + 1 FROM particle_rows").fetchone()[0])
    cur = conn.execute(
        "INSERT INTO particle_sets (project_id, job_id, name, stage, class_id, count, box_size, "
        "image_pixel_size, voltage, cs, amp_contrast, is_3d, sparse, source_file, fingerprint, "
        "score_scale, origin, first_row) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (project_id, job_id, db_text(ps.name), ps.stage, ps.class_id, n, ps.box_size,
         *sql_values([ps.image_pixel_size, ps.voltage, ps.cs, ps.amp_contrast]),
         int(is_3d), int(bool(ps.sparse)), db_text(ps.source_file), db_text(ps.fingerprint), scale,
         origin, first),
    )
    sid = int(cur.lastrowid)
    if not n:
        return SetWriteResult(sid, 0)
    _insert_rows(conn, "particle_rows", params)
    last = conn.execute("SELECT max(id) FROM particle_rows").fetchone()[0]
    if last != first + n - 1:  # ids are SQLite's (max + 1 each), so this cannot happen
        raise RuntimeError(f"particle rows of set {sid} got ids up to {last}, "
                           f"expected {first + n - 1}")
    if has_z:
        keep = ~zn  # a row without z has no particle_z row (reads as NULL)
        ids = first + np.flatnonzero(keep)
        _insert_rows(conn, "particle_z", [("id", ids, None), ("z", zq[keep], zn[keep]),
                                          ("dz", (cz - zq)[keep], (zn | czn)[keep])])
    mids, starts, counts = np.unique(mic, return_index=True, return_counts=True)
    conn.executemany(
        f"INSERT INTO set_counts (set_id, micrograph_id, count, first_row) VALUES ({sid}, ?, ?, ?)",
        np.stack([mids, counts, first + starts], axis=1).tolist(),
    )
    return SetWriteResult(sid, n)


def _insert_rows(conn: sqlite3.Connection, table: str,
                 params: list[tuple[str, np.ndarray, np.ndarray | None]]) -> None:
    """``executemany`` of multi-row INSERTs of columns given as arrays (with null masks). A
    column with one value throughout goes into the SQL text as a literal; the others are
    bound, one statement's parameters made only when sqlite3 asks for them."""
    literal: dict[int, int] = {}
    for j, (_, v, m) in enumerate(params):
        if (m is None or not m.any()) and len(v) and bool((v == v[0]).all()):
            literal[j] = int(v[0])
    bound = [j for j in range(len(params)) if j not in literal]
    n = len(params[0][1])
    if bound:
        data = np.stack([params[j][1] for j in bound], axis=1)
    else:
        data = np.zeros((n, 0), np.int64)
    masks = {i: params[j][2] for i, j in enumerate(bound)
             if params[j][2] is not None and params[j][2].any()}
    if masks:
        # Rare: some values missing. Python objects with None where a value is missing.
        data = data.astype(object)
        for i, m in masks.items():
            data[m, i] = None
    width = len(bound)

    def row_sql(base: int) -> str:
        exprs, pos = [], base
        for j in range(len(params)):
            if j in literal:
                exprs.append(str(literal[j]))
            else:
                pos += 1
                exprs.append(f"?{pos}")
        return "(" + ", ".join(exprs) + ")"

    head = f"INSERT INTO {table} ({', '.join(p[0] for p in params)}) VALUES "
    if not width:  # every column constant: one statement per row would still be needed
        conn.executemany(head + row_sql(0), [()] * n)
        return
    k = _ROWS_PER_STATEMENT
    full = (n // k) * k
    if full:
        conn.executemany(head + ", ".join(row_sql(i * width) for i in range(k)),
                         map(np.ndarray.tolist, data[:full].reshape(-1, k * width)))
    if full < n:
        conn.executemany(head + row_sql(0), data[full:].tolist())


def _legacy(conn: sqlite3.Connection) -> bool:
    """Whether this catalog still keeps particles in the schema-2 ``particles`` table (a
    read-only reader of a catalog that migration 3 has not reached yet)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'particle_rows'").fetchone() is None


def read_set(conn: sqlite3.Connection, set_id: int, score_scale: float,
             micrograph_id: int | None = None) -> pd.DataFrame:
    """One set's particles (optionally of one micrograph), decoded to float pixels, ordered by
    micrograph id, then source row. Pairs are packed into one 64-bit value in SQL and NULLs
    replaced by a sentinel, so that the rows become one int64 array in C; micrograph ids and
    positions come from ``set_counts`` (one id range per micrograph)."""
    if _legacy(conn):
        return _read_set_v2(conn, set_id, score_scale, micrograph_id)
    head = conn.execute("SELECT is_3d, first_row FROM particle_sets WHERE id = ?",
                        (set_id,)).fetchone()
    is_3d = bool(head and head[0])
    where, params = "set_id = ?", [set_id]
    if micrograph_id is not None:
        where, params = "set_id = ? AND micrograph_id = ?", [set_id, micrograph_id]
    runs = np.array(conn.execute(
        f"SELECT micrograph_id, first_row, count FROM set_counts WHERE {where} ORDER BY first_row",
        params).fetchall(), dtype=np.int64).reshape(-1, 3)
    n = int(runs[:, 2].sum())
    # 2D sets skip z/dz: fewer Python objects per row (their absence reads as NaN below)
    zcols = f", ifnull(z.z, {_NULL}), ifnull(z.dz, 0)" if is_3d else ""
    zjoin = " LEFT JOIN particle_z z ON z.id = p.id" if is_3d else ""
    blocks = []
    spans = _ranges(runs)
    for lo, hi in spans:
        blocks.append(conn.execute(
            f"SELECT p.drow, ifnull((p.x << 32) | (p.y & {_M32}), {_NULL}), "
            f"ifnull((p.dx << 32) | (p.dy & {_M32}), {_NULL}), "
            f"ifnull(p.score, {_NULL}), ifnull(p.class_id, -1), ifnull(p.uid, 0){zcols} "
            f"FROM particle_rows p{zjoin} WHERE p.id BETWEEN ? AND ? ORDER BY p.id",
            (lo, hi)).fetchall())
    rows = blocks[0] if len(blocks) == 1 else [r for b in blocks for r in b]
    if len(rows) != n:
        raise ValueError(f"particle set {set_id}: {len(rows)} rows stored where set_counts "
                         f"says {n}; the catalog is damaged (re-crawl into a new catalog)")
    a = np.array(rows, dtype=np.int64).reshape(n, 8 if is_3d else 6)
    if not is_3d:  # same column positions as a 3D read
        a = np.concatenate([a, np.tile([[_NULL, 0]], (n, 1))], axis=1)
    mic = np.repeat(runs[:, 0], runs[:, 2])
    set_first = int(head[1]) if head and head[1] is not None else 0
    ids = np.concatenate([np.arange(lo, hi + 1, dtype=np.int64) for lo, hi in spans])
    row = ids - set_first + a[:, 0]  # position in the set + (source row − position)
    null_xy = a[:, 1] == _NULL
    xq, yq = _unpack(a[:, 1])
    dxq, dyq = _unpack(np.where(a[:, 2] == _NULL, 0, a[:, 2]))
    null_d = null_xy | (a[:, 2] == _NULL)
    return _frame(set_id, mic, row, xq, yq, dxq, dyq, null_xy, null_d, a[:, 6], a[:, 7],
                  a[:, 3], a[:, 4], a[:, 5], score_scale)


def _ranges(runs: np.ndarray) -> list[tuple[int, int]]:
    """(first id, last id) of the contiguous id ranges that ``runs`` (micrograph, first, count,
    ordered by first) cover: one range for a whole set."""
    out: list[tuple[int, int]] = []
    for first, count in runs[:, 1:].tolist():
        if not count:
            continue
        if out and out[-1][1] + 1 == first:
            out[-1] = (out[-1][0], first + count - 1)
        else:
            out.append((first, first + count - 1))
    return out or [(0, -1)]


def _frame(set_id, mic, row, xq, yq, dxq, dyq, null_xy, null_d, zq, dzq, score_q, cls, duid,
           score_scale) -> pd.DataFrame:
    n = len(mic)
    raw_x = np.where(null_xy, np.nan, xq / COORD_SCALE)
    raw_y = np.where(null_xy, np.nan, yq / COORD_SCALE)
    x = np.where(null_d, np.nan, (xq + dxq) / COORD_SCALE)
    y = np.where(null_d, np.nan, (yq + dyq) / COORD_SCALE)
    null_z = zq == _NULL
    raw_z = np.where(null_z, np.nan, zq / COORD_SCALE)
    z = np.where(null_z, np.nan, (zq + dzq) / COORD_SCALE)
    score = np.where(score_q == _NULL, np.nan, score_q / score_scale)
    with np.errstate(over="ignore"):
        uid = duid + row
    return pd.DataFrame({
        "set_id": np.full(n, set_id, np.int64), "micrograph_id": mic, "x": x, "y": y,
        "raw_x": raw_x, "raw_y": raw_y, "z": z, "raw_z": raw_z, "score": score,
        "class_id": cls, "uid": uid,
    })


def _read_set_v2(conn: sqlite3.Connection, set_id: int, score_scale: float,
                 micrograph_id: int | None = None) -> pd.DataFrame:
    """:func:`read_set` of a schema-2 catalog (``particles`` keyed (set, micrograph, row))."""
    where, params = "set_id = ?", [set_id]
    if micrograph_id is not None:
        where, params = "set_id = ? AND micrograph_id = ?", [set_id, micrograph_id]
    is_3d = conn.execute("SELECT is_3d FROM particle_sets WHERE id = ?", (set_id,)).fetchone()
    is_3d = bool(is_3d and is_3d[0])
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
    null_xy = a[:, 1] == _NULL
    xq, yq = _unpack(a[:, 1])
    dxq, dyq = _unpack(np.where(a[:, 2] == _NULL, 0, a[:, 2]))
    return _frame(set_id, a[:, 0] >> 32, a[:, 0] & _M32, xq, yq, dxq, dyq, null_xy,
                  null_xy | (a[:, 2] == _NULL), a[:, 3], a[:, 4], a[:, 5], a[:, 6], a[:, 7],
                  score_scale)


_CENTRE_COLUMNS = ["set_id", "micrograph_id", "x", "y", "z", "score", "class_id"]


def read_centres(conn: sqlite3.Connection, set_id: int, score_scale: float) -> pd.DataFrame:
    """One set's particles as :func:`read_set` gives them, without ``raw_x, raw_y, raw_z, uid``
    (what an export needs): the same values in the same order, in half the Python objects per
    row (the recentred (x, y) travel packed, micrographs come from the set's id ranges).
    Centres beyond the packed range (±2.1 million px) fall back to :func:`read_set`."""
    if _legacy(conn):  # a schema-2 catalog read read-only: the full read, then the columns
        return read_set(conn, set_id, score_scale)[_CENTRE_COLUMNS]
    head = conn.execute("SELECT is_3d FROM particle_sets WHERE id = ?", (set_id,)).fetchone()
    is_3d, far = bool(head and head[0]), _NULL + 1  # far: a centre beyond the packed pair
    runs = np.array(conn.execute(
        "SELECT micrograph_id, first_row, count FROM set_counts WHERE set_id = ? "
        "ORDER BY first_row", (set_id,)).fetchall(), dtype=np.int64).reshape(-1, 3)
    n, width, parts = int(runs[:, 2].sum()), 4 if is_3d else 3, []
    zcol = f", ifnull(z.z + ifnull(z.dz, 0), {_NULL})" if is_3d else ""
    zjoin = " LEFT JOIN particle_z z ON z.id = p.id" if is_3d else ""
    for lo, hi in _ranges(runs):
        cur = conn.execute(
            f"SELECT CASE WHEN abs(p.x + p.dx) < {_COORD_LIMIT} AND abs(p.y + p.dy) < "
            f"{_COORD_LIMIT} THEN ((p.x + p.dx) << 32) | ((p.y + p.dy) & {_M32}) "
            f"WHEN p.x + p.dx + p.y + p.dy IS NULL THEN {_NULL} ELSE {far} END, "
            f"ifnull(p.score, {_NULL}), ifnull(p.class_id, -1){zcol} "
            f"FROM particle_rows p{zjoin} WHERE p.id BETWEEN ? AND ? ORDER BY p.id", (lo, hi))
        # rows straight into one int64 array (np.array of a list of tuples costs half again)
        parts.append(np.fromiter(itertools.chain.from_iterable(cur), dtype=np.int64))
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if len(flat) != n * width:
        raise ValueError(f"particle set {set_id}: rows stored differ from set_counts' {n}; the "
                         "catalog is damaged (re-crawl into a new catalog)")
    a = flat.reshape(n, width)
    if (a[:, 0] == far).any():
        return read_set(conn, set_id, score_scale)[_CENTRE_COLUMNS]
    null, (cx, cy), z = a[:, 0] == _NULL, _unpack(a[:, 0]), np.full(n, np.nan)
    if is_3d:
        z = np.where(a[:, 3] == _NULL, np.nan, a[:, 3] / COORD_SCALE)
    return pd.DataFrame({
        "set_id": np.full(n, set_id, np.int64), "micrograph_id": np.repeat(runs[:, 0], runs[:, 2]),
        "x": np.where(null, np.nan, cx / COORD_SCALE), "y": np.where(null, np.nan, cy / COORD_SCALE),
        "z": z, "score": np.where(a[:, 1] == _NULL, np.nan, a[:, 1] / score_scale),
        "class_id": a[:, 2],
    })
