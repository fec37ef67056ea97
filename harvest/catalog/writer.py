"""Writing one project inside a crawl's transaction (:class:`ProjectWriter`), and what the catalog
remembers of a project for incremental crawls (:class:`ProjectState`, :func:`stamps_equal`).

:meth:`harvest.catalog.Catalog.write_project` opens the transaction and yields a
:class:`ProjectWriter`: it upserts the project row, then jobs, their particle sets (through
:func:`harvest.catalog.codec.insert_set`), micrographs (merged by path; new ones inserted
together with explicit ids, max + 1 in order, as SQLite would assign them), job edges and file
stamps. Ids follow the order the crawl meets projects and jobs, so the same crawl gives the same
catalog.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harvest.catalog.codec import factorize_micrographs, insert_set
from harvest.catalog.schema import MICROGRAPH_FIELDS
from harvest.catalog.sqlvalues import db_text, sql_values, texts, utcnow
from harvest.conventions import micrograph_key, stage_rank
from harvest.records import FileStamp, JobRecord, JobScan, MicrographRecord, Problem, ProjectScan
from harvest.validate import check_micrographs, check_particles, check_set_metadata

if TYPE_CHECKING:
    from harvest.catalog.store import Catalog


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
        self.now = utcnow()
        root = db_text(scan.root)
        row = self.conn.execute("SELECT id FROM projects WHERE root = ?", (root,)).fetchone()
        values = texts(scan.software, scan.version, scan.title, scan.uid, "ok", self.now)
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
        values = texts(src.raw_type, src.kind, job.status, src.title, src.created_at,
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
        sets = self.conn.execute(
            "SELECT id, first_row, count FROM particle_sets WHERE job_id = ?", (jid,)).fetchall()
        for sid, first, count in sets:
            if first is not None and count:  # a set's particles are one id range
                for table in ("particle_rows", "particle_z"):
                    self.conn.execute(f"DELETE FROM {table} WHERE id BETWEEN ? AND ?",
                                      (first, first + count - 1))
            self.conn.execute("DELETE FROM set_counts WHERE set_id = ?", (sid,))
            self.conn.execute("DELETE FROM particle_sets WHERE id = ?", (sid,))
        # project_id too: files is indexed (project_id, job_id); job_id alone scanned the whole
        # table once per job, which made a first crawl quadratic in the number of jobs
        self.conn.execute("DELETE FROM files WHERE project_id = ? AND job_id = ?",
                          (self.project_id, jid))

    def _write_files(self, jid: int | None, stamps: Iterable[FileStamp]) -> None:
        self.conn.executemany(
            "INSERT INTO files (project_id, job_id, path, size, mtime_ns, parsed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(self.project_id, jid, db_text(s.path), int(s.size), int(s.mtime_ns), self.now)
             for s in sorted(stamps, key=lambda s: s.path)],
        )

    def _write_record(self, jid: int, record: JobRecord) -> None:
        mics = self._micrographs()
        # last guard (harvest.validate): sizes out of range are stored as unknown
        record.problems += check_micrographs(record.micrographs, record.key)
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
            codes, paths = factorize_micrographs(ps.particles)
            missing: dict[str, str] = {}
            for p in paths:
                t = db_text(p)
                if t not in mics and t not in missing:
                    missing[t] = p
            self._insert_micrographs(
                mics, [_bare_micrograph(p, self.scan.root) for p in missing.values()])
            # last guard: no position off its micrograph (as the catalog knows it) is stored
            sizes = {p: tuple(mics[db_text(p)][1:4]) for p in paths}
            found = check_particles(ps, sizes, factorized=(codes, paths)) + check_set_metadata(ps)
            if found:
                record.problems += found
                codes, paths = factorize_micrographs(ps.particles)
            mapping = {p: mics[db_text(p)][0] for p in paths}
            result = insert_set(self.conn, self.project_id, jid, ps, mapping, origin="job",
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
                         *sql_values(new), int(bool(nz is not None and nz > 1))))
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
                (self.project_id, db_text(m.key), path, db_text(m.abs_path), *sql_values(new),
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
            params = [*sql_values(list(changes.values()))]
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

def _bare_micrograph(path: str, root: str) -> MicrographRecord:
    """A micrograph known only by the path a particle set names (no metadata)."""
    p = path[1:] if path.startswith(">") else path
    abs_path = p if os.path.isabs(p) else os.path.normpath(os.path.join(root, p))
    return MicrographRecord(path=path, abs_path=abs_path, key=micrograph_key(path))
