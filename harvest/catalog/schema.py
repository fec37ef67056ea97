"""The catalog's schema: tables, indexes, the ordered migrations and the schema version.

A catalog records its version in ``schema_version`` (one row per applied migration). Migration
*i* (1-based, :data:`MIGRATIONS`) brings a catalog from version *i − 1* to *i*; a writer applies
the missing ones on open (:func:`migrate`), each in its own ``BEGIN IMMEDIATE`` transaction; a
reader refuses a catalog that is newer than :data:`SCHEMA_VERSION`, and an older one unless every
missing migration is in :data:`READER_COMPATIBLE` (the read API then makes up for it, see
:class:`harvest.catalog.store.Catalog`). The particle columns' encoding is
:mod:`harvest.catalog.codec`'s; the SQL views are :mod:`harvest.catalog.views`'.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from harvest.catalog.sqlvalues import utcnow
from harvest.catalog.views import STORED_TOTALS_VIEW, create_views, project_totals_sql

# Micrograph columns that a crawl fills and merges (besides id, project, key and paths).
MICROGRAPH_FIELDS: tuple[str, ...] = (
    "nx", "ny", "nz", "pixel_size", "defocus_u", "defocus_v", "defocus_angle", "ctf_max_res",
    "ctf_fom", "total_motion", "exposure_uid", "size_source",
)
# Where a micrograph's nx/ny/nz came from: the image file's header, or metadata (CryoSPARC
# micrograph_shape, RELION rlnImageSizeX/Y of the motion metadata or micrographs STAR,
# tomograms.star sizes) when the file was not there to read.
SIZE_SOURCES: tuple[str, ...] = ("header", "metadata")


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
    # Private encoding, see harvest.catalog.codec. No REFERENCES here: checking two parent keys
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


def _migration_2(db: sqlite_utils.Database) -> None:
    """Issue 10: ``micrographs.size_source`` (header | metadata); RELION class numbers as RELION
    numbers them (``rlnClassNumber``, 1-based; version 1 stored them 0-based); the SQL views."""
    db.execute("ALTER TABLE micrographs ADD COLUMN size_source TEXT")
    if db.execute("SELECT 1 FROM micrographs LIMIT 1").fetchone():  # a catalog with data
        db.execute("UPDATE micrographs SET size_source = CASE WHEN project_id IN (SELECT id "
                   "FROM projects WHERE software = 'relion') THEN 'header' ELSE 'metadata' END "
                   "WHERE nx IS NOT NULL")
    if db.execute("SELECT 1 FROM particle_sets LIMIT 1").fetchone():
        relion_sets = ("SELECT s.id FROM particle_sets s JOIN projects p ON p.id = s.project_id "
                       "WHERE p.software = 'relion' AND s.origin = 'job'")
        db.execute(f"UPDATE particles SET class_id = class_id + 1 WHERE class_id >= 0 "
                   f"AND set_id IN ({relion_sets})")
        db.execute(f"UPDATE particle_sets SET class_id = class_id + 1 "
                   f"WHERE class_id IS NOT NULL AND id IN ({relion_sets})")
    create_views(db.conn)


# What ``particles`` shows from schema 3 on: the schema-2 table's columns, decoded from the
# id ranges of set_counts (one range per set and micrograph), so SQL written against the table
# keeps working; a set and micrograph is a rowid range seek.
PARTICLES_VIEW = (
    "SELECT c.set_id, c.micrograph_id, p.drow + p.id - s.first_row AS row, p.x, p.y, p.dx, p.dy, "
    "z.z, z.dz, p.score, p.class_id, p.uid "
    "FROM set_counts c JOIN particle_sets s ON s.id = c.set_id "
    "JOIN particle_rows p ON p.id >= c.first_row AND p.id < c.first_row + c.count "
    "LEFT JOIN particle_z z ON z.id = p.id"
)


def _migration_3(db: sqlite_utils.Database) -> None:
    """Issues 15/16: particles in a rowid table, ``particle_rows`` (id, drow, x, y, dx, dy,
    score, class_id, uid), each set one id range in (micrograph, row) order, z in
    ``particle_z``; ``particle_sets.first_row`` and ``set_counts.first_row`` say where a set's
    and a micrograph's range starts; ``particles`` becomes a view with the old columns. Rows
    appended in id order fill B-tree pages completely, and a row no longer repeats its set
    and micrograph (see :mod:`harvest.catalog.codec`)."""
    conn = db.conn
    conn.execute("CREATE TABLE particle_rows (id INTEGER PRIMARY KEY, drow INTEGER NOT NULL, "
                 "x INTEGER, y INTEGER, dx INTEGER, dy INTEGER, score INTEGER, "
                 "class_id INTEGER, uid INTEGER)")
    conn.execute("CREATE TABLE particle_z (id INTEGER PRIMARY KEY, z INTEGER, dz INTEGER)")
    conn.execute("ALTER TABLE particle_sets ADD COLUMN first_row INTEGER")
    conn.execute("ALTER TABLE set_counts ADD COLUMN first_row INTEGER")
    if conn.execute("SELECT 1 FROM particles LIMIT 1").fetchone():
        # ids in key order (set, micrograph, row): each set and micrograph one range
        order = "ORDER BY set_id, micrograph_id, row"
        conn.execute(
            "INSERT INTO particle_rows (id, drow, x, y, dx, dy, score, class_id, uid) "
            f"SELECT row_number() OVER ({order}), "
            f"row - row_number() OVER (PARTITION BY set_id {order}) + 1, "
            f"x, y, dx, dy, score, class_id, uid FROM particles {order}")
        conn.execute(
            f"INSERT INTO particle_z (id, z, dz) SELECT id, z, dz FROM (SELECT row_number() "
            f"OVER ({order}) AS id, z, dz FROM particles) WHERE z IS NOT NULL")
        conn.execute(
            "UPDATE set_counts SET first_row = f.first FROM (SELECT set_id AS sid, "
            "micrograph_id AS mid, sum(n) OVER (ORDER BY set_id, micrograph_id "
            "ROWS UNBOUNDED PRECEDING) - n + 1 AS first FROM (SELECT set_id, micrograph_id, "
            "count(*) AS n FROM particles GROUP BY set_id, micrograph_id)) f "
            "WHERE set_counts.set_id = f.sid AND set_counts.micrograph_id = f.mid")
        conn.execute("UPDATE particle_sets SET first_row = (SELECT min(first_row) "
                     "FROM set_counts c WHERE c.set_id = particle_sets.id)")
    conn.execute("DROP TABLE particles")
    conn.execute(f"CREATE VIEW particles AS {PARTICLES_VIEW}")
    create_views(conn)


def _migration_4(db: sqlite_utils.Database) -> None:
    """Issue 15: ``project_fingerprints`` (crawl bookkeeping, :mod:`harvest.fingerprint`): the
    stat data a project's last scan depended on, so that a re-crawl skips unchanged projects."""
    db.execute(
        "CREATE TABLE project_fingerprints (project_id INTEGER PRIMARY KEY "
        "REFERENCES projects(id), scanner TEXT NOT NULL, taken_at TEXT, paths BLOB NOT NULL, "
        "digest BLOB NOT NULL)"
    )


def _migration_5(db: sqlite_utils.Database) -> None:
    """Issue 16: per-project, per-stage totals stored by the crawl (``project_totals``, rewritten
    for a project by every write of it), so that ``ls``, ``show``, the report and the
    ``stage_totals`` view read a few rows instead of every per-micrograph count."""
    db.execute(
        "CREATE TABLE project_totals (project_id INTEGER NOT NULL REFERENCES projects(id), "
        "stage TEXT NOT NULL, particles INTEGER NOT NULL, micrographs INTEGER NOT NULL, "
        "PRIMARY KEY (project_id, stage)) WITHOUT ROWID"
    )
    db.execute("INSERT INTO project_totals (project_id, stage, particles, micrographs) "
               f"{project_totals_sql()}")
    db.execute("DROP VIEW IF EXISTS stage_totals")
    db.execute(f"CREATE VIEW stage_totals AS {STORED_TOTALS_VIEW}")


# Ordered: migration i (1-based) brings the schema from version i-1 to i. Append, never edit.
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _migration_1, _migration_2, _migration_3, _migration_4, _migration_5)
SCHEMA_VERSION = len(MIGRATIONS)
# Versions whose migration a read-only reader can do without: the read API makes up for it
# (2: no size_source column, 0-based RELION classes shifted on read, TEMP views; 3: the codec
# reads the schema-2 particles table; 4: crawl bookkeeping that readers never read; 5: totals
# computed from the per-micrograph counts instead of read from project_totals).
READER_COMPATIBLE: frozenset[int] = frozenset({2, 3, 4, 5})

# Data tables (everything but crawl bookkeeping), for comparisons of two catalogs.
DATA_TABLES: tuple[str, ...] = (
    "projects", "jobs", "job_edges", "micrographs", "particle_sets", "particle_rows",
    "particle_z", "set_counts", "files", "problems", "project_totals",
)


def schema_version(db: sqlite_utils.Database) -> int:
    """The catalog's schema version (0 for an empty file)."""
    if "schema_version" not in db.table_names():
        return 0
    row = db.conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(db: sqlite_utils.Database, path: str, readonly: bool) -> None:
    """Bring the catalog at ``path`` to :data:`SCHEMA_VERSION` (writable), or check that it is
    there (``readonly``); ValueError when it is newer than this cryoglean, or older and
    read-only."""
    target = SCHEMA_VERSION
    version = schema_version(db)
    if version > target:
        raise ValueError(
            f"catalog {path} has schema version {version}, newer than this cryoglean "
            f"understands ({target}); upgrade cryoglean"
        )
    if version == target:
        return
    if readonly and all(v in READER_COMPATIBLE for v in range(version + 1, target + 1)):
        return  # the reader makes up for the missing migrations (Catalog.schema_version)
    if readonly:
        raise ValueError(
            f"catalog {path} has schema version {version}, this cryoglean needs "
            f"{target}; open it once writable (e.g. run a crawl) to migrate"
        )
    conn: sqlite3.Connection = db.conn
    for number in range(version + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the lock: another process may have migrated meanwhile.
            if schema_version(db) >= number:
                conn.execute("COMMIT")
                continue
            if "schema_version" not in db.table_names():
                db.execute(
                    "CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT)"
                )
            MIGRATIONS[number - 1](db)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (number, utcnow()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
