"""The catalog: one SQLite file that holds every harvested project, job, micrograph and particle.

Opened with :class:`Catalog` (``Catalog(path, readonly=False)``). Writers create and migrate the
schema (:mod:`harvest.catalog.schema`), use WAL so any number of readers can work while one crawl
writes, and turn foreign keys on. One crawl writer at a time is enforced by
:func:`harvest.catalog.lock.writer_lock`.

Everything a crawl writes for one project goes through :meth:`Catalog.write_project`, one
``BEGIN IMMEDIATE`` … ``COMMIT``: a crawl killed at any point leaves the catalog as it was before
that project (the writes themselves: :mod:`harvest.catalog.writer`).

Read methods return pandas DataFrames; coordinates are float pixels of the referenced micrograph
(DESIGN.md frame: x = column, y = row, origin at the first stored pixel, no flip); how particles
are stored is :mod:`harvest.catalog.codec`'s business.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import sqlite_utils

from harvest.catalog import compat, external, opening, schema, views
from harvest.catalog.codec import DEFAULT_SCORE_SCALE, read_centres, read_set
from harvest.catalog.sqlvalues import db_text, utcnow
from harvest.catalog.writer import ProjectState, ProjectWriter, StoredJob
from harvest.records import Problem, ProjectScan


class Catalog:
    """The catalog database. ``Catalog(path)`` creates or migrates the schema;
    ``Catalog(path, readonly=True)`` opens an existing catalog for reading only.

    Read methods return pandas DataFrames; coordinates are float64 pixels of the referenced
    micrograph (x = column, y = row, origin at the first stored pixel).
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = os.fspath(path)
        self.readonly = readonly
        conn = opening.connect(self.path, readonly)
        self.conn = conn
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
            opening.check_foreign(conn, self.path)
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA cache_size = -65536")
            self.db = sqlite_utils.Database(conn, execute_plugins=False, recursive_triggers=False)
            self._check_or_migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise opening.CatalogError(
                f"catalog {self.path} is not a readable SQLite catalog: {exc}") from exc
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
        return schema.schema_version(self.db)

    def _check_or_migrate(self) -> None:
        if self.readonly and schema.schema_version(self.db) == 0:
            raise opening.CatalogError(f"catalog {self.path} is empty (no cryoglean tables); run "
                                       f"`cryoglean crawl ROOT --db {self.path}` first")
        found = schema.schema_version(self.db)
        if not self.readonly and 0 < found <= schema.SCHEMA_VERSION:
            # before migrating or writing: a damaged catalog is not written to
            opening.check_schema(self.conn, self.path, found)
            opening.quick_check(self.conn, self.path)
        schema.migrate(self.db, self.path, self.readonly)
        version = self.schema_version()
        opening.check_schema(self.conn, self.path, version)
        self._stored_totals = version >= 5  # migration 5: project_totals
        self._v1 = version < 2  # read-only, one migration behind: see harvest.catalog.compat
        if self._v1 and version >= 1:
            compat.temp_views(self.conn)

    def _class_shift_sql(self) -> str:
        return compat.class_shift_sql("s") if self._v1 else ""

    def _class_shifts(self, set_ids) -> dict[int, int]:
        return compat.class_shifts(self.conn, set_ids) if self._v1 else {}

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
            "SELECT s.id, s.job_id, s.project_id, j.key AS job_key, s.name, s.stage, "
            f"s.class_id{self._class_shift_sql()} AS class_id, "
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
        is_tomogram, size_source]. Sizes in px; pixel size, defocus, CTF max resolution and
        total motion in **Å**, angle in degrees. ``size_source``: where nx/ny/nz came from,
        ``header`` (the image file) or ``metadata`` (schema.SIZE_SOURCES); None if unknown."""
        w1, p1 = self._in("project_id", project_ids)
        w2, p2 = self._in("id", ids)
        source = "NULL AS size_source" if self._v1 else "size_source"
        df = self._frame(
            "SELECT id, project_id, key, path, abs_path, nx, ny, nz, pixel_size, defocus_u, "
            "defocus_v, defocus_angle, ctf_max_res, ctf_fom, total_motion, exposure_uid, "
            f"is_tomogram, {source} FROM micrographs WHERE 1{w1}{w2} ORDER BY id",
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
        return self._read_sets(set_ids, read_set)

    def particle_centres(self, set_ids: Iterable[int]) -> pd.DataFrame:
        """:meth:`particles` minus raw_x/raw_y/raw_z/uid, same values, half the read cost."""
        return self._read_sets(set_ids, read_centres)

    def _read_sets(self, set_ids: Iterable[int], reader) -> pd.DataFrame:
        ids = [int(s) for s in set_ids]
        q = f"SELECT id, score_scale FROM particle_sets WHERE id IN ({','.join('?' * len(ids))})"
        scales = dict(self.conn.execute(q, ids).fetchall()) if ids else {}
        parts, shifts = [], self._class_shifts(ids)
        for sid in ids:
            if sid not in scales:
                raise ValueError(f"no particle set {sid} in catalog {self.path}")
            parts.append(compat.shift_classes(
                reader(self.conn, sid, scales[sid] or DEFAULT_SCORE_SCALE), shifts.get(sid, 0)))
        return (pd.concat(parts, ignore_index=True) if len(parts) > 1
                else parts[0] if parts else reader(self.conn, -1, DEFAULT_SCORE_SCALE))

    def micrograph_particles(self, micrograph_id: int,
                             stages: Iterable[str] | None = None) -> pd.DataFrame:
        """All particles on one micrograph (every set of its project, or only ``stages``), as
        :meth:`particles`. Uses key seeks ``(set_id, micrograph_id)``, no scan."""
        row = self.conn.execute("SELECT project_id FROM micrographs WHERE id = ?",
                                (int(micrograph_id),)).fetchone()
        if row is None:
            raise ValueError(f"no micrograph {micrograph_id} in catalog {self.path}")
        sets = self.particle_sets(project_ids=[row[0]], stages=stages)
        shifts = self._class_shifts(sets["id"])
        parts = [compat.shift_classes(read_set(self.conn, int(r.id), r.score_scale or DEFAULT_SCORE_SCALE,
                                         micrograph_id=int(micrograph_id)), shifts.get(int(r.id), 0))
                 for r in sets.assign(score_scale=self._score_scales(sets["id"])).itertuples()]
        if not parts:
            return read_set(self.conn, -1, DEFAULT_SCORE_SCALE)
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
        each curation stage, ordered by micrograph and stage.

        Sets of one job at one stage are combined as: the largest set without a class, or the
        sum of the per-class sets, whichever is larger (per-class sets partition the job's
        particles; an ``all_classes`` set repeats them). Different jobs at the same stage are
        alternative curations of the same particles: the largest wins. Combined in SQL from the
        project's own count rows (index seeks; the rest of the catalog is not read).
        """
        rows = self.conn.execute(views.micrograph_stage_counts_sql(), (int(project_id),)).fetchall()
        df = pd.DataFrame(rows, columns=["micrograph_id", "stage", "count"])
        for col in ("micrograph_id", "count"):
            df[col] = df[col].astype(np.int64)
        return df

    def project_stage_totals(self, project_ids: Iterable[int] | None = None) -> pd.DataFrame:
        """DataFrame[project_id, stage, count, micrographs]: :meth:`stage_counts` summed over
        micrographs (``micrographs``: how many have particles at that stage), for every project
        (or ``project_ids``), ordered by project and stage: what ``cryoglean ls`` shows.

        Read from the totals every crawl write stores (``project_totals``, schema 5: a few rows
        per project, whatever the number of particles); a read-only reader of an older catalog
        combines the per-micrograph counts instead."""
        where, params = self._in("project_id", project_ids)
        source = ("project_totals" if self._stored_totals
                  else f"({views.project_totals_sql()})")
        df = self._frame(
            f"SELECT project_id, stage, particles AS count, micrographs FROM {source} "
            f"WHERE 1{where} ORDER BY project_id, {views.STAGE_ORDER_SQL}", params,
            columns=["project_id", "stage", "count", "micrographs"])
        for col in ("project_id", "count", "micrographs"):
            df[col] = df[col].astype(np.int64)
        return df

    def job_counts(self, project_ids: Iterable[int] | None = None) -> dict[int, int]:
        """{project id: number of jobs} for every project (or ``project_ids``), from the jobs
        index (no job row is read)."""
        where, params = self._in("project_id", project_ids)
        return {int(p): int(n) for p, n in self.conn.execute(
            f"SELECT project_id, count(*) FROM jobs WHERE 1{where} GROUP BY project_id", params)}

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
                (utcnow(), "\n".join(db_text(r) or "" for r in roots), os.getpid()),
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
        now = utcnow()
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
            if self._stored_totals:
                views.refresh_project_totals(self.conn, writer.project_id)
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
        frame). Micrographs are matched by path, then by micrograph key
        (:func:`harvest.catalog.external.match_micrographs`); ValueError names
        the unmatched ones. Returns the new set id. The set has no job (``origin='external'``).
        """
        return external.add_external_set(self, project_id, name, picks, stage)

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
