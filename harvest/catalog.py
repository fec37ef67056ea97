"""The catalog: one SQLite file that holds every harvested project, job, micrograph and particle.

Opened with :class:`Catalog` (``Catalog(path, readonly=False)``). Writers create and migrate the
schema (``schema_version`` table; migrations are an ordered list of functions), use WAL so any
number of readers can work while one crawl writes, and turn foreign keys on. One crawl writer at
a time is enforced by :func:`writer_lock` (``fcntl.flock`` on ``<db>.lock``).

Everything a crawl writes for one project goes through :meth:`Catalog.write_project`, one
``BEGIN IMMEDIATE`` … ``COMMIT``: a crawl killed at any point leaves the catalog as it was before
that project. Ids are SQLite rowids assigned as ``max + 1`` in the (sorted) order the crawl meets
projects and jobs, so the same crawl gives the same catalog.

Coordinates that callers see are float pixels of the referenced micrograph (DESIGN.md frame:
x = column, y = row, origin at the first stored pixel, no flip). How particles are stored is
private to this module:

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
``executemany`` and explicit ids (max + 1 in order, as SQLite would assign them).
Measurements behind these choices: ``benchmarks/results/harvest.md``, section 1.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlite_utils

from harvest.conventions import STAGES, micrograph_key, stage_rank
from harvest.records import FileStamp, JobRecord, JobScan, ParticleSetRecord, Problem, ProjectScan

COORD_SCALE = 1000  # stored coordinate units per pixel (max error 0.5 / COORD_SCALE px)
DEFAULT_SCORE_SCALE = 1e4
_ROWS_PER_STATEMENT = 256  # rows per multi-row INSERT statement (≤ 8 parameters a row)
_INT64_MASK = (1 << 64) - 1

MICROGRAPH_FIELDS: tuple[str, ...] = (
    "nx", "ny", "nz", "pixel_size", "defocus_u", "defocus_v", "defocus_angle", "ctf_max_res",
    "ctf_fom", "total_motion", "exposure_uid",
)


class CatalogLocked(OSError):
    """Another process holds the catalog's writer lock (``<db>.lock``)."""

    def __init__(self, lock_path: str, pid: int | None, waited: float):
        self.lock_path = lock_path
        self.pid = pid
        self.waited = waited
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(
            errno.EAGAIN,
            f"catalog is locked by another crawl ({holder}, lock file {lock_path})"
            f"{f' after waiting {waited:g} s' if waited else ''}; "
            "try again later or pass --wait SECONDS",
        )

    def __str__(self) -> str:
        return self.strerror


def _utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def db_text(value: str | None) -> str | None:
    """Text that SQLite can store: file names that are not UTF-8 (surrogate-escaped by
    ``os.fsdecode``) are kept readable with backslash escapes."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------------
# Writer lock
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def writer_lock(db_path: str | os.PathLike, wait: float = 0.0) -> Iterator[str]:
    """Hold the exclusive crawl lock ``<db>.lock`` (``fcntl.flock``) for the block.

    Waits up to ``wait`` seconds for another holder, then raises :class:`CatalogLocked` naming
    the holder's pid (written into the lock file). Yields the lock file path.
    """
    lock_path = os.fspath(db_path) + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= wait:
                    raise CatalogLocked(lock_path, _read_pid(fd), round(waited, 1)) from None
                time.sleep(min(0.1, max(wait - waited, 0.01)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield lock_path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Schema and migrations
# ---------------------------------------------------------------------------------------------


def _migration_1(db: sqlite_utils.Database) -> None:
    """Initial schema."""
    db["projects"].create(
        {
            "id": int, "root": str, "software": str, "version": str, "title": str, "uid": str,
            "status": str, "first_seen": str, "last_crawl": str,
        },
        pk="id", not_null={"root", "software", "status"},
    )
    db["projects"].create_index(["root"], unique=True)
    db["jobs"].create(
        {
            "id": int, "project_id": int, "key": str, "raw_type": str, "kind": str, "status": str,
            "title": str, "created_at": str, "completed_at": str, "harvested": int,
            "parsed_at": str,
        },
        pk="id", not_null={"project_id", "key", "status"},
        foreign_keys=[("project_id", "projects", "id")],
    )
    db["jobs"].create_index(["project_id", "key"], unique=True)
    db.execute(
        "CREATE TABLE job_edges (parent_id INTEGER NOT NULL REFERENCES jobs(id), "
        "child_id INTEGER NOT NULL REFERENCES jobs(id), PRIMARY KEY (parent_id, child_id)) "
        "WITHOUT ROWID"
    )
    db.execute("CREATE INDEX idx_job_edges_child ON job_edges(child_id)")
    db["micrographs"].create(
        {
            "id": int, "project_id": int, "key": str, "path": str, "abs_path": str,
            "nx": int, "ny": int, "nz": int, "pixel_size": float, "defocus_u": float,
            "defocus_v": float, "defocus_angle": float, "ctf_max_res": float, "ctf_fom": float,
            "total_motion": float, "exposure_uid": str, "is_tomogram": int,
        },
        pk="id", not_null={"project_id", "key", "path"},
        foreign_keys=[("project_id", "projects", "id")],
    )
    db["micrographs"].create_index(["project_id", "path"], unique=True)
    db["micrographs"].create_index(["project_id", "key"])
    db["particle_sets"].create(
        {
            "id": int, "project_id": int, "job_id": int, "name": str, "stage": str,
            "class_id": int, "count": int, "box_size": int, "image_pixel_size": float,
            "voltage": float, "cs": float, "amp_contrast": float, "is_3d": int, "sparse": int,
            "source_file": str, "fingerprint": str, "score_scale": float, "origin": str,
        },
        pk="id", not_null={"project_id", "name", "stage", "count", "origin"},
        foreign_keys=[("project_id", "projects", "id"), ("job_id", "jobs", "id")],
    )
    db["particle_sets"].create_index(["project_id", "stage"])
    db["particle_sets"].create_index(["job_id"])
    # Private encoding, see the module docstring. No REFERENCES here: checking two parent keys
    # per row costs 15-20 % of a bulk insert, and both ids come from rows the same transaction
    # has just written (set_counts, one row per set and micrograph, keeps its foreign keys).
    db.execute(
        "CREATE TABLE particles (set_id INTEGER NOT NULL, "
        "micrograph_id INTEGER NOT NULL, row INTEGER NOT NULL, "
        "x INTEGER, y INTEGER, dx INTEGER, dy INTEGER, z INTEGER, dz INTEGER, score INTEGER, "
        "class_id INTEGER, uid INTEGER, PRIMARY KEY (set_id, micrograph_id, row)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE set_counts (set_id INTEGER NOT NULL REFERENCES particle_sets(id), "
        "micrograph_id INTEGER NOT NULL REFERENCES micrographs(id), count INTEGER NOT NULL, "
        "PRIMARY KEY (set_id, micrograph_id)) WITHOUT ROWID"
    )
    db["files"].create(
        {
            "id": int, "project_id": int, "job_id": int, "path": str, "size": int,
            "mtime_ns": int, "parsed_at": str,
        },
        pk="id", not_null={"project_id", "path", "size", "mtime_ns"},
        foreign_keys=[("project_id", "projects", "id"), ("job_id", "jobs", "id")],
    )
    db["files"].create_index(["project_id", "job_id"])
    db["crawls"].create(
        {
            "id": int, "started_at": str, "finished_at": str, "roots": str, "pid": int,
            "projects": int, "new_jobs": int, "new_particles": int, "problems": int,
        },
        pk="id",
    )
    db["problems"].create(
        {"id": int, "crawl_id": int, "project_id": int, "job_key": str, "path": str,
         "error": str},
        pk="id", not_null={"path", "error"},
        foreign_keys=[("crawl_id", "crawls", "id"), ("project_id", "projects", "id")],
    )
    db["problems"].create_index(["crawl_id"])


# Ordered: migration i (1-based) brings the schema from version i-1 to i. Append, never edit.
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_migration_1,)
SCHEMA_VERSION = len(MIGRATIONS)

# Data tables (everything but crawl bookkeeping), for comparisons of two catalogs.
DATA_TABLES: tuple[str, ...] = (
    "projects", "jobs", "job_edges", "micrographs", "particle_sets", "particles", "set_counts",
    "files", "problems",
)


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------


@dataclass
class SetWriteResult:
    set_id: int
    count: int


class Catalog:
    """The catalog database. ``Catalog(path)`` creates or migrates the schema;
    ``Catalog(path, readonly=True)`` opens an existing catalog for reading only.

    Read methods return pandas DataFrames; coordinates are float64 pixels of the referenced
    micrograph (x = column, y = row, origin at the first stored pixel).
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = os.fspath(path)
        self.readonly = readonly
        if readonly:
            if not os.path.exists(self.path):
                raise FileNotFoundError(
                    f"catalog {self.path} does not exist; run `cryoglean crawl ROOT --db "
                    f"{self.path}` first"
                )
            uri = "file:" + _uri_path(self.path) + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
        else:
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise FileNotFoundError(
                    f"catalog {self.path}: folder {parent} does not exist; create it first"
                )
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.conn = conn
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA cache_size = -65536")
            self.db = sqlite_utils.Database(conn, execute_plugins=False, recursive_triggers=False)
            self._check_or_migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ValueError(f"catalog {self.path} is not a readable SQLite catalog: {exc}") from exc
        except BaseException:
            conn.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def schema_version(self) -> int:
        if "schema_version" not in self.db.table_names():
            return 0
        row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _check_or_migrate(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"catalog {self.path} has schema version {version}, newer than this cryoglean "
                f"understands ({SCHEMA_VERSION}); upgrade cryoglean"
            )
        if version == SCHEMA_VERSION:
            return
        if self.readonly:
            raise ValueError(
                f"catalog {self.path} has schema version {version}, this cryoglean needs "
                f"{SCHEMA_VERSION}; open it once writable (e.g. run a crawl) to migrate"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                # Re-read inside the lock: another process may have migrated meanwhile.
                if self.schema_version() >= number:
                    self.conn.execute("COMMIT")
                    continue
                if "schema_version" not in self.db.table_names():
                    self.db.execute(
                        "CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT)"
                    )
                MIGRATIONS[number - 1](self.db)
                self.conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (number, _utcnow()),
                )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    # -- small helpers ---------------------------------------------------------------------------

    def _frame(self, sql: str, params: Sequence = (), columns: Sequence[str] | None = None):
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns or names)

    @staticmethod
    def _in(column: str, values: Iterable | None) -> tuple[str, list]:
        if values is None:
            return "", []
        vals = [int(v) if isinstance(v, (int, np.integer)) else v for v in values]
        if not vals:
            return " AND 0", []
        return f" AND {column} IN ({','.join('?' * len(vals))})", vals

    # -- read API --------------------------------------------------------------------------------

    def projects(self) -> pd.DataFrame:
        """DataFrame[id, root, software, version, title, uid, status, last_crawl]."""
        return self._frame(
            "SELECT id, root, software, version, title, uid, status, last_crawl FROM projects "
            "ORDER BY id"
        )

    def find_project(self, spec: str | int) -> int:
        """Project id from an id, a root path or a title; ValueError if none or several match."""
        projects = self.projects()
        if isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.isdigit()):
            pid = int(spec)
            if pid in set(projects["id"]):
                return pid
            if isinstance(spec, (int, np.integer)):
                raise ValueError(f"no project with id {pid} in catalog {self.path}")
        text = str(spec)
        root = os.path.abspath(os.path.expanduser(text)).rstrip("/") if text else text
        by_root = projects[projects["root"] == root]
        if len(by_root) == 1:
            return int(by_root["id"].iloc[0])
        by_title = projects[projects["title"] == text]
        if len(by_title) == 1:
            return int(by_title["id"].iloc[0])
        if len(by_title) > 1:
            listing = ", ".join(f"{r.id} ({r.root})" for r in by_title.itertuples())
            raise ValueError(f"project title {text!r} is ambiguous: {listing}; give the id")
        raise ValueError(
            f"no project {text!r} in catalog {self.path} (give an id, root path or title; "
            "`cryoglean ls --db ...` lists them)"
        )

    def jobs(self, project_ids: Iterable[int] | None = None) -> pd.DataFrame:
        """DataFrame[id, project_id, key, raw_type, kind, status, title, created_at,
        completed_at]."""
        where, params = self._in("project_id", project_ids)
        return self._frame(
            "SELECT id, project_id, key, raw_type, kind, status, title, created_at, completed_at "
            f"FROM jobs WHERE 1{where} ORDER BY id",
            params,
        )

    def job_edges(self, project_ids: Iterable[int] | None = None) -> pd.DataFrame:
        """DataFrame[parent_id, child_id] (the provenance graph as the package recorded it)."""
        where, params = self._in("j.project_id", project_ids)
        return self._frame(
            "SELECT e.parent_id, e.child_id FROM job_edges e JOIN jobs j ON j.id = e.child_id "
            f"WHERE 1{where} ORDER BY e.parent_id, e.child_id",
            params,
        )

    def particle_sets(
        self,
        project_ids: Iterable[int] | None = None,
        job_ids: Iterable[int] | None = None,
        set_ids: Iterable[int] | None = None,
        stages: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """DataFrame[id, job_id, project_id, job_key, name, stage, class_id, count, box_size,
        image_pixel_size, voltage, cs, amp_contrast, is_3d, sparse, source_file].

        ``box_size`` in pixels of the particle images, ``image_pixel_size`` in Å. Sets imported
        with :meth:`add_external_set` have no job (``job_id`` and ``job_key`` missing).
        """
        w1, p1 = self._in("s.project_id", project_ids)
        w2, p2 = self._in("s.job_id", job_ids)
        w3, p3 = self._in("s.id", set_ids)
        w4, p4 = self._in("s.stage", None if stages is None else [str(s) for s in stages])
        df = self._frame(
            "SELECT s.id, s.job_id, s.project_id, j.key AS job_key, s.name, s.stage, s.class_id, "
            "s.count, s.box_size, s.image_pixel_size, s.voltage, s.cs, s.amp_contrast, s.is_3d, "
            "s.sparse, s.source_file FROM particle_sets s LEFT JOIN jobs j ON j.id = s.job_id "
            f"WHERE 1{w1}{w2}{w3}{w4} ORDER BY s.id",
            p1 + p2 + p3 + p4,
        )
        df["is_3d"] = df["is_3d"].astype(bool)
        df["sparse"] = df["sparse"].astype(bool)
        return df

    def micrographs(
        self, project_ids: Iterable[int] | None = None, ids: Iterable[int] | None = None
    ) -> pd.DataFrame:
        """DataFrame[id, project_id, key, path, abs_path, nx, ny, nz, pixel_size, defocus_u,
        defocus_v, defocus_angle, ctf_max_res, ctf_fom, total_motion, exposure_uid,
        is_tomogram]. Pixel size and defocus in Å, angle in degrees, total motion in pixels."""
        w1, p1 = self._in("project_id", project_ids)
        w2, p2 = self._in("id", ids)
        df = self._frame(
            "SELECT id, project_id, key, path, abs_path, nx, ny, nz, pixel_size, defocus_u, "
            "defocus_v, defocus_angle, ctf_max_res, ctf_fom, total_motion, exposure_uid, "
            f"is_tomogram FROM micrographs WHERE 1{w1}{w2} ORDER BY id",
            p1 + p2,
        )
        for col in ("nx", "ny", "nz"):
            df[col] = df[col].astype("Int64")
        for col in ("pixel_size", "defocus_u", "defocus_v", "defocus_angle", "ctf_max_res",
                    "ctf_fom", "total_motion"):
            df[col] = df[col].astype("float64")
        df["is_tomogram"] = df["is_tomogram"].fillna(0).astype(bool)
        return df

    def particles(self, set_ids: Iterable[int]) -> pd.DataFrame:
        """DataFrame[set_id, micrograph_id, x, y, raw_x, raw_y, z, raw_z, score, class_id, uid].

        ``x, y`` the best known centre (recentred where the job refined shifts), ``raw_x, raw_y``
        as picked; float64 pixels of the micrograph (max storage error 0.0005 px); ``z, raw_z``
        NaN for 2D sets; ``score`` NaN where absent; ``class_id`` −1 where absent; ``uid`` int64
        (CryoSPARC uid as int64 view, or the row in the source file). Sets in the order given;
        within a set ordered by micrograph id, then row in the source file.
        """
        ids = [int(s) for s in set_ids]
        scales = dict(
            self.conn.execute(
                f"SELECT id, score_scale FROM particle_sets WHERE id IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
        ) if ids else {}
        parts = []
        for sid in ids:
            if sid not in scales:
                raise ValueError(f"no particle set {sid} in catalog {self.path}")
            parts.append(_read_set(self.conn, sid, scales[sid] or DEFAULT_SCORE_SCALE))
        if not parts:
            return _read_set(self.conn, -1, DEFAULT_SCORE_SCALE)
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def micrograph_particles(self, micrograph_id: int,
                             stages: Iterable[str] | None = None) -> pd.DataFrame:
        """All particles on one micrograph (every set of its project, or only ``stages``), as
        :meth:`particles`. Uses key seeks ``(set_id, micrograph_id)``, no scan."""
        row = self.conn.execute("SELECT project_id FROM micrographs WHERE id = ?",
                                (int(micrograph_id),)).fetchone()
        if row is None:
            raise ValueError(f"no micrograph {micrograph_id} in catalog {self.path}")
        sets = self.particle_sets(project_ids=[row[0]], stages=stages)
        parts = [_read_set(self.conn, int(r.id), r.score_scale or DEFAULT_SCORE_SCALE,
                           micrograph_id=int(micrograph_id))
                 for r in sets.assign(score_scale=self._score_scales(sets["id"])).itertuples()]
        if not parts:
            return _read_set(self.conn, -1, DEFAULT_SCORE_SCALE)
        return pd.concat(parts, ignore_index=True)

    def _score_scales(self, set_ids) -> list[float]:
        ids = [int(i) for i in set_ids]
        if not ids:
            return []
        scales = dict(self.conn.execute(
            f"SELECT id, score_scale FROM particle_sets WHERE id IN ({','.join('?' * len(ids))})",
            ids).fetchall())
        return [scales[i] for i in ids]

    def stage_counts(self, project_id: int) -> pd.DataFrame:
        """DataFrame[micrograph_id, stage, count]: how many particles of each micrograph reached
        each curation stage.

        Sets of one job at one stage are combined as: the largest set without a class, or the
        sum of the per-class sets, whichever is larger (per-class sets partition the job's
        particles; an ``all_classes`` set repeats them). Different jobs at the same stage are
        alternative curations of the same particles: the largest wins.
        """
        df = self._frame(
            "SELECT c.micrograph_id, s.stage, s.job_id, s.id AS set_id, s.class_id, c.count "
            "FROM set_counts c JOIN particle_sets s ON s.id = c.set_id WHERE s.project_id = ?",
            (int(project_id),),
        )
        return _combine_stage_counts(df)

    def project_stage_totals(self) -> pd.DataFrame:
        """DataFrame[project_id, stage, count]: :meth:`stage_counts` summed over micrographs,
        for every project at once (what ``cryoglean ls`` shows)."""
        df = self._frame(
            "SELECT s.project_id, c.micrograph_id, s.stage, s.job_id, s.id AS set_id, s.class_id, "
            "c.count FROM set_counts c JOIN particle_sets s ON s.id = c.set_id"
        )
        if df.empty:
            return pd.DataFrame({"project_id": [], "stage": [], "count": []})
        per = _combine_stage_counts(df, extra=["project_id"])
        return per.groupby(["project_id", "stage"], as_index=False, sort=True)["count"].sum()

    def problems(self, crawl_id: int | None = None) -> pd.DataFrame:
        """DataFrame[id, crawl_id, project_id, job_key, path, error] (latest crawl by default)."""
        if crawl_id is None:
            row = self.conn.execute("SELECT max(crawl_id) FROM problems").fetchone()
            crawl_id = row[0] if row and row[0] is not None else -1
        return self._frame(
            "SELECT id, crawl_id, project_id, job_key, path, error FROM problems "
            "WHERE crawl_id = ? ORDER BY id",
            (int(crawl_id),),
        )

    def project_problems(self, project_id: int) -> pd.DataFrame:
        """Problems of one project from the latest crawl that recorded any for it:
        DataFrame[id, crawl_id, project_id, job_key, path, error]."""
        return self._frame(
            "SELECT id, crawl_id, project_id, job_key, path, error FROM problems "
            "WHERE project_id = ? AND crawl_id = (SELECT max(crawl_id) FROM problems "
            "WHERE project_id = ?) ORDER BY id",
            (int(project_id), int(project_id)),
        )

    # -- crawl bookkeeping (used by harvest.crawl) -----------------------------------------------

    def start_crawl(self, roots: Sequence[str]) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self.conn.execute(
                "INSERT INTO crawls (started_at, roots, pid) VALUES (?, ?, ?)",
                (_utcnow(), "\n".join(db_text(r) or "" for r in roots), os.getpid()),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return int(cur.lastrowid)

    def finish_crawl(self, crawl_id: int, projects: int, new_jobs: int, new_particles: int,
                     problems: int, unchanged_projects: Sequence[int] = ()) -> None:
        """Close the crawl's bookkeeping row; projects that were crawled but needed no write
        get their ``last_crawl`` time here, in one statement."""
        now = _utcnow()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("UPDATE projects SET last_crawl = ? WHERE id = ?",
                                  [(now, int(i)) for i in unchanged_projects])
            self.conn.execute(
                "UPDATE crawls SET finished_at = ?, projects = ?, new_jobs = ?, "
                "new_particles = ?, problems = ? WHERE id = ?",
                (now, projects, new_jobs, new_particles, problems, crawl_id),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def add_problems(self, crawl_id: int | None, problems: Iterable[Problem],
                     project_id: int | None = None, job_key: str | None = None) -> int:
        """Record problems in their own short transaction (outside a project's)."""
        rows = [(crawl_id, project_id, db_text(job_key), db_text(p.path), db_text(p.error))
                for p in problems]
        if not rows:
            return 0
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                "INSERT INTO problems (crawl_id, project_id, job_key, path, error) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return len(rows)

    def project_state(self, root: str) -> ProjectState | None:
        """What the catalog knows of the project at ``root`` (for incremental crawls)."""
        row = self.conn.execute(
            "SELECT id, status FROM projects WHERE root = ?", (db_text(root),)
        ).fetchone()
        if row is None:
            return None
        pid = int(row[0])
        jobs = {
            key: StoredJob(int(jid), status, bool(harvested))
            for jid, key, status, harvested in self.conn.execute(
                "SELECT id, key, status, harvested FROM jobs WHERE project_id = ?", (pid,)
            )
        }
        by_id = {j.id: j for j in jobs.values()}
        project_files: dict[str, tuple[int, int]] = {}
        for job_id, path, size, mtime_ns in self.conn.execute(
            "SELECT job_id, path, size, mtime_ns FROM files WHERE project_id = ?", (pid,)
        ):
            target = project_files if job_id is None else by_id[job_id].files
            target[path] = (int(size), int(mtime_ns))
        return ProjectState(pid, row[1], jobs, project_files)

    def mark_missing_projects(self, roots: Iterable[str]) -> int:
        """Status 'missing' for these project roots (rows are kept)."""
        roots = [db_text(r) for r in roots]
        if not roots:
            return 0
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self.conn.executemany(
                "UPDATE projects SET status = 'missing' WHERE root = ? AND status != 'missing'",
                [(r,) for r in roots],
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return cur.rowcount

    # -- writes ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def write_project(self, scan: ProjectScan, crawl_id: int | None = None,
                      hook: Callable[[str], None] | None = None) -> Iterator[ProjectWriter]:
        """One transaction for everything a crawl writes about one project.

        Upserts the project row from ``scan``; the yielded :class:`ProjectWriter` writes jobs,
        particle sets, micrographs, edges and file stamps. Commits when the block ends, rolls
        back on any exception (the catalog is then as it was before this project).
        """
        if self.readonly:
            raise ValueError(f"catalog {self.path} was opened read-only")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            writer = ProjectWriter(self, scan, crawl_id, hook)
            yield writer
            if hook:
                hook("commit")
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def add_external_set(self, project_id: int, name: str, picks: pd.DataFrame,
                         stage: str = "picked") -> int:
        """Picks from elsewhere (``cryoglean import``) as a particle set of a project.

        ``picks``: DataFrame[micrograph, x, y, score?(, z)] in pixels of the micrograph (DESIGN
        frame). Micrographs are matched by path, then by :func:`micrograph_key`; ValueError names
        the unmatched ones. Returns the new set id. The set has no job (``origin='external'``).
        """
        stage_rank(stage)
        pid = int(project_id)
        if self.conn.execute("SELECT 1 FROM projects WHERE id = ?", (pid,)).fetchone() is None:
            raise ValueError(f"no project with id {pid} in catalog {self.path}")
        for col in ("micrograph", "x", "y"):
            if col not in picks.columns:
                raise ValueError(f"picks for set {name!r} lack column {col!r} (need micrograph, x, y)")
        exists = self.conn.execute(
            "SELECT id FROM particle_sets WHERE project_id = ? AND job_id IS NULL AND name = ?",
            (pid, name),
        ).fetchone()
        if exists:
            raise ValueError(
                f"project {pid} already has an imported set named {name!r} (set {exists[0]}); "
                "choose another --name"
            )
        mics = self.micrographs([pid])
        by_path: dict[str, int] = {}
        for r in mics.itertuples():
            by_path.setdefault(r.path, r.id)
            if r.abs_path:
                by_path.setdefault(r.abs_path, r.id)
        # Among micrographs sharing a key prefer the one whose size is known, then the lowest id.
        ranked = mics.assign(_known=mics["nx"].notna()).sort_values(
            ["_known", "id"], ascending=[False, True]
        )
        by_key: dict[str, int] = {}
        for r in ranked.itertuples():
            by_key.setdefault(r.key, r.id)
        names = picks["micrograph"].astype(str)
        uniq = pd.unique(names)
        mapping: dict[str, int] = {}
        unmatched = []
        for m in uniq:
            mid = by_path.get(m)
            if mid is None:
                mid = by_key.get(micrograph_key(m))
            if mid is None:
                unmatched.append(m)
            else:
                mapping[m] = mid
        if unmatched:
            shown = ", ".join(unmatched[:5]) + (" …" if len(unmatched) > 5 else "")
            raise ValueError(
                f"{len(unmatched)} micrograph(s) of set {name!r} match no micrograph of project "
                f"{pid}: {shown} (matched by path or micrograph key)"
            )
        n = len(picks)
        is_3d = "z" in picks.columns and picks["z"].notna().any()
        frame = pd.DataFrame({
            "micrograph": names.to_numpy(),
            "x": picks["x"].to_numpy(np.float64),
            "y": picks["y"].to_numpy(np.float64),
            "raw_x": picks["x"].to_numpy(np.float64),
            "raw_y": picks["y"].to_numpy(np.float64),
            "score": (picks["score"].to_numpy(np.float64) if "score" in picks.columns
                      else np.full(n, np.nan)),
            "class_id": (picks["class_id"].to_numpy(np.int64) if "class_id" in picks.columns
                         else np.full(n, -1, np.int64)),
            "uid": np.arange(n, dtype=np.int64),
        })
        if is_3d:
            frame["z"] = picks["z"].to_numpy(np.float64)
            frame["raw_z"] = frame["z"]
        record = ParticleSetRecord(name=name, stage=stage, particles=frame,
                                   source_file="(imported)", is_3d=bool(is_3d))
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = _insert_set(self.conn, pid, None, record, mapping, origin="external")
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        return result.set_id

    # -- maintenance -----------------------------------------------------------------------------

    def table_rows(self, table: str, exclude: Sequence[str] = ()) -> list[tuple]:
        """All rows of a table, sorted, without the named columns (for catalog comparisons)."""
        if table not in self.db.table_names():
            raise ValueError(f"no table {table!r} in catalog {self.path}")
        cols = [c.name for c in self.db[table].columns if c.name not in exclude]
        quoted = ", ".join(f'"{c}"' for c in cols)
        return self.conn.execute(f"SELECT {quoted} FROM {table} ORDER BY {quoted}").fetchall()

    def vacuum(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.execute("VACUUM")


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


@dataclass
class StoredJob:
    id: int
    status: str
    harvested: bool
    files: dict | None = None

    def __post_init__(self):
        if self.files is None:
            self.files = {}


@dataclass
class ProjectState:
    id: int
    status: str
    jobs: dict[str, StoredJob]
    files: dict[str, tuple[int, int]]


def stamps_equal(stamps: Iterable[FileStamp], stored: dict[str, tuple[int, int]]) -> bool:
    """Whether file stamps (size + mtime_ns) equal what the catalog recorded."""
    current = {db_text(s.path): (int(s.size), int(s.mtime_ns)) for s in stamps}
    return current == stored


class ProjectWriter:
    """Writes one project inside :meth:`Catalog.write_project`'s transaction."""

    def __init__(self, cat: Catalog, scan: ProjectScan, crawl_id: int | None,
                 hook: Callable[[str], None] | None):
        self.cat = cat
        self.conn = cat.conn
        self.scan = scan
        self.crawl_id = crawl_id
        self.hook = hook
        self.new_jobs = 0
        self.new_particles = 0
        self.problems = 0
        self.now = _utcnow()
        root = db_text(scan.root)
        row = self.conn.execute("SELECT id FROM projects WHERE root = ?", (root,)).fetchone()
        values = _texts(scan.software, scan.version, scan.title, scan.uid, "ok", self.now)
        if row is None:
            cur = self.conn.execute(
                "INSERT INTO projects (root, software, version, title, uid, status, last_crawl, "
                "first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (root, *values, self.now),
            )
            self.project_id = int(cur.lastrowid)
        else:
            self.project_id = int(row[0])
            self.conn.execute(
                "UPDATE projects SET software = ?, version = ?, title = ?, uid = ?, status = ?, "
                "last_crawl = ? WHERE id = ?",
                (*values, self.project_id),
            )
        self.job_ids: dict[str, int] = dict(
            self.conn.execute("SELECT key, id FROM jobs WHERE project_id = ?", (self.project_id,))
        )
        self._mics: dict[str, list] | None = None
        self._seen_jobs: set[str] = set()

    # micrographs are loaded lazily: a re-crawl that changes nothing never reads them
    def _micrographs(self) -> dict[str, list]:
        if self._mics is None:
            self._mics = {}
            for row in self.conn.execute(
                f"SELECT id, path, {', '.join(MICROGRAPH_FIELDS)} FROM micrographs "
                "WHERE project_id = ?",
                (self.project_id,),
            ):
                self._mics[row[1]] = [row[0], *row[2:]]
        return self._mics

    def put_job(self, job: JobScan, record: JobRecord | None = None,
                harvested: bool | None = None) -> int:
        """Insert or update a job row from its scan; with ``record``, replace the job's particle
        sets, merge its micrographs, and store the scan's file stamps (the job is then not
        parsed again until they change). ``harvested=False`` (parse failed) clears the stamps
        so the next crawl tries again."""
        key = db_text(job.key)
        src = record or job
        values = _texts(src.raw_type, src.kind, job.status, src.title, src.created_at,
                        src.completed_at)
        jid = self.job_ids.get(key)
        if jid is None:
            cur = self.conn.execute(
                "INSERT INTO jobs (project_id, key, raw_type, kind, status, title, created_at, "
                "completed_at, harvested) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (self.project_id, key, *values),
            )
            jid = int(cur.lastrowid)
            self.job_ids[key] = jid
            self.new_jobs += 1
        else:
            self.conn.execute(
                "UPDATE jobs SET raw_type = ?, kind = ?, status = ?, title = ?, created_at = ?, "
                "completed_at = ? WHERE id = ?",
                (*values, jid),
            )
        self._seen_jobs.add(key)
        if record is not None:
            self._put_record(jid, job, record)
        elif harvested is False:
            self._drop_job_outputs(jid)
            self.conn.execute("UPDATE jobs SET harvested = 0 WHERE id = ?", (jid,))
        if self.hook:
            self.hook("job")
        return jid

    def _put_record(self, jid: int, job: JobScan, record: JobRecord) -> None:
        """Replace the job's outputs with ``record`` inside a savepoint: a record the catalog
        cannot store (ValueError naming the set) leaves the job's previous outputs in place,
        marks it not harvested (tried again next crawl) and re-raises."""
        self.conn.execute("SAVEPOINT job_record")
        new_particles = self.new_particles
        try:
            self._drop_job_outputs(jid)
            self._write_record(jid, record)
            self._write_files(jid, job.files)
            self.conn.execute(
                "UPDATE jobs SET harvested = 1, parsed_at = ? WHERE id = ?", (self.now, jid)
            )
            if record.problems:
                self.add_problems(record.problems, job_key=job.key)
        except sqlite3.OperationalError:
            raise  # the database itself is in trouble (disk, lock): not this job's fault
        except Exception as exc:
            self.conn.execute("ROLLBACK TO job_record")
            self.conn.execute("RELEASE job_record")
            self.new_particles = new_particles
            self._mics = None  # rows inserted since the savepoint are gone
            self.conn.execute("UPDATE jobs SET harvested = 0 WHERE id = ?", (jid,))
            raise ValueError(f"cannot store job {job.key}: {exc}") from exc
        self.conn.execute("RELEASE job_record")

    def add_problems(self, problems: Iterable[Problem], job_key: str | None = None) -> None:
        rows = [(self.crawl_id, self.project_id, db_text(job_key), db_text(p.path),
                 db_text(p.error)) for p in problems]
        self.conn.executemany(
            "INSERT INTO problems (crawl_id, project_id, job_key, path, error) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        self.problems += len(rows)

    def _drop_job_outputs(self, jid: int) -> None:
        set_ids = [r[0] for r in self.conn.execute(
            "SELECT id FROM particle_sets WHERE job_id = ?", (jid,))]
        for sid in set_ids:
            self.conn.execute("DELETE FROM particles WHERE set_id = ?", (sid,))
            self.conn.execute("DELETE FROM set_counts WHERE set_id = ?", (sid,))
            self.conn.execute("DELETE FROM particle_sets WHERE id = ?", (sid,))
        self.conn.execute("DELETE FROM files WHERE job_id = ?", (jid,))

    def _write_files(self, jid: int | None, stamps: Iterable[FileStamp]) -> None:
        self.conn.executemany(
            "INSERT INTO files (project_id, job_id, path, size, mtime_ns, parsed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(self.project_id, jid, db_text(s.path), int(s.size), int(s.mtime_ns), self.now)
             for s in sorted(stamps, key=lambda s: s.path)],
        )

    def _write_record(self, jid: int, record: JobRecord) -> None:
        mics = self._micrographs()
        queued: dict[str, object] = {}  # new micrographs, inserted together
        for m in record.micrographs:
            path = db_text(m.path)
            if path in queued:  # a repeat merges into the row inserted first
                self._insert_micrographs(mics, list(queued.values()))
                queued = {}
            if path in mics:
                self._merge_micrograph(mics, m)
            else:
                queued[path] = m
        self._insert_micrographs(mics, list(queued.values()))
        names = set()
        for ps in record.particle_sets:
            if ps.name in names:
                raise ValueError(
                    f"job {record.key}: two particle sets named {ps.name!r} "
                    f"({ps.source_file}); set names must be unique within a job"
                )
            names.add(ps.name)
            stage_rank(ps.stage)
            codes, paths = _factorize_micrographs(ps.particles)
            missing: dict[str, str] = {}
            for p in paths:
                t = db_text(p)
                if t not in mics and t not in missing:
                    missing[t] = p
            self._insert_micrographs(
                mics, [_bare_micrograph(p, self.scan.root) for p in missing.values()])
            mapping = {p: mics[db_text(p)][0] for p in paths}
            result = _insert_set(self.conn, self.project_id, jid, ps, mapping, origin="job",
                                 factorized=(codes, paths))
            self.new_particles += result.count
            if self.hook:
                self.hook("set")

    def _insert_micrographs(self, mics: dict[str, list], records: list) -> None:
        """Insert micrographs whose paths are new and distinct, in one ``executemany``. Ids are
        given explicitly as SQLite would (max + 1 in order), so the catalog is the same as
        with one INSERT each."""
        if not records:
            return
        first = self.conn.execute("SELECT ifnull(max(id), 0) + 1 FROM micrographs").fetchone()[0]
        rows = []
        for i, m in enumerate(records):
            path = db_text(m.path)
            new = [getattr(m, f) for f in MICROGRAPH_FIELDS]
            nz = m.nz
            rows.append((first + i, self.project_id, db_text(m.key), path, db_text(m.abs_path),
                         *_sql_values(new), int(bool(nz is not None and nz > 1))))
            mics[path] = [first + i, *new]
        self.conn.executemany(
            f"INSERT INTO micrographs (id, project_id, key, path, abs_path, "
            f"{', '.join(MICROGRAPH_FIELDS)}, is_tomogram) VALUES "
            f"(?, ?, ?, ?, ?, {', '.join('?' * len(MICROGRAPH_FIELDS))}, ?)",
            rows,
        )

    def _merge_micrograph(self, mics: dict[str, list], m) -> list:
        path = db_text(m.path)
        new = [getattr(m, f) for f in MICROGRAPH_FIELDS]
        entry = mics.get(path)
        if entry is None:
            nz = m.nz
            cur = self.conn.execute(
                f"INSERT INTO micrographs (project_id, key, path, abs_path, "
                f"{', '.join(MICROGRAPH_FIELDS)}, is_tomogram) VALUES "
                f"(?, ?, ?, ?, {', '.join('?' * len(MICROGRAPH_FIELDS))}, ?)",
                (self.project_id, db_text(m.key), path, db_text(m.abs_path), *_sql_values(new),
                 int(bool(nz is not None and nz > 1))),
            )
            entry = [int(cur.lastrowid), *new]
            mics[path] = entry
            return entry
        changes = {}
        for i, f in enumerate(MICROGRAPH_FIELDS):
            v = new[i]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            if entry[i + 1] != v:
                changes[f] = v
                entry[i + 1] = v
        if changes:
            sets = ", ".join(f"{f} = ?" for f in changes)
            extra = ""
            if "nz" in changes:
                extra = ", is_tomogram = ?"
            params = [*_sql_values(list(changes.values()))]
            if extra:
                params.append(int(changes["nz"] > 1))
            self.conn.execute(f"UPDATE micrographs SET {sets}{extra} WHERE id = ?",
                              (*params, entry[0]))
        return entry

    def set_edges(self, edges: Iterable[tuple[str, str]]) -> None:
        """Replace the project's job edges with (parent key, child key) pairs; keys not known as
        jobs of this project are skipped."""
        ids = list(self.job_ids.values())
        if ids:
            self.conn.execute(
                "DELETE FROM job_edges WHERE child_id IN (SELECT id FROM jobs WHERE project_id = ?)",
                (self.project_id,),
            )
        keyed = [(db_text(p), db_text(c)) for p, c in edges]
        rows = sorted({(self.job_ids[p], self.job_ids[c]) for p, c in keyed
                       if p in self.job_ids and c in self.job_ids})
        self.conn.executemany("INSERT INTO job_edges (parent_id, child_id) VALUES (?, ?)", rows)

    def set_project_files(self, stamps: Iterable[FileStamp]) -> None:
        self.conn.execute(
            "DELETE FROM files WHERE project_id = ? AND job_id IS NULL", (self.project_id,)
        )
        self._write_files(None, stamps)

    def mark_missing_jobs(self, unreadable: Iterable[str] = ()) -> int:
        """Status 'missing' for the project's crawled jobs not put in this transaction, except
        ``unreadable`` ones (present, but their bookkeeping could not be read this time: they
        keep their status and a problem row says why)."""
        keep = {db_text(k) for k in unreadable}
        gone = [jid for key, jid in self.job_ids.items()
                if key not in self._seen_jobs and key not in keep]
        self.conn.executemany(
            "UPDATE jobs SET status = 'missing' WHERE id = ? AND status != 'missing'",
            [(j,) for j in gone],
        )
        return len(gone)

def _sql_values(values: list) -> list:
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and math.isnan(v):
            v = None
        elif isinstance(v, str):
            v = db_text(v)
        out.append(v)
    return out


def _texts(*values) -> tuple:
    """Values for SQL with every string made storable (:func:`db_text`)."""
    return tuple(db_text(v) if isinstance(v, str) else v for v in values)


def _bare_micrograph(path: str, root: str):
    from harvest.records import MicrographRecord

    p = path[1:] if path.startswith(">") else path
    abs_path = p if os.path.isabs(p) else os.path.normpath(os.path.join(root, p))
    return MicrographRecord(path=path, abs_path=abs_path, key=micrograph_key(path))


# ---------------------------------------------------------------------------------------------
# Particle encoding (private)
# ---------------------------------------------------------------------------------------------


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


def _factorize_micrographs(df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
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
    """:func:`_factorize_micrographs` of a Categorical column from its codes, without touching a
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


def _insert_set(conn: sqlite3.Connection, project_id: int, job_id: int | None,
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
        codes, uniques = factorized or _factorize_micrographs(df)
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
         *_sql_values([ps.image_pixel_size, ps.voltage, ps.cs, ps.amp_contrast]),
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


def _read_set(conn: sqlite3.Connection, set_id: int, score_scale: float,
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


def _combine_stage_counts(df: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    keys = [*extra, "micrograph_id", "stage"]
    if df.empty:
        return pd.DataFrame({c: [] for c in [*keys, "count"]})
    df = df.copy()
    df["job_id"] = df["job_id"].fillna(-df["set_id"]).astype(np.int64)  # external: own "job"
    classed = df[df["class_id"].notna()]
    unclassed = df[df["class_id"].isna()]
    parts = []
    if len(classed):
        parts.append(classed.groupby([*keys, "job_id"], sort=False)["count"].sum())
    if len(unclassed):
        parts.append(unclassed.groupby([*keys, "job_id"], sort=False)["count"].max())
    per_job = pd.concat(parts).groupby(level=list(range(len(keys) + 1))).max()
    out = per_job.groupby(level=list(range(len(keys)))).max().reset_index()
    order = {s: i for i, s in enumerate(STAGES)}
    out["_o"] = out["stage"].map(order)
    out = out.sort_values([*extra, "micrograph_id", "_o"]).drop(columns="_o")
    out["count"] = out["count"].astype(np.int64)
    return out.reset_index(drop=True)
