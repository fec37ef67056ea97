"""Catalogs as older cryoglean wrote them, made from a current one (for migration and
read-only reader tests)."""

from __future__ import annotations

import sqlite3

# schema 2's particles table (migration 1), keyed (set, micrograph, row)
PARTICLES_V2 = (
    "CREATE TABLE particles (set_id INTEGER NOT NULL, micrograph_id INTEGER NOT NULL, "
    "row INTEGER NOT NULL, x INTEGER, y INTEGER, dx INTEGER, dy INTEGER, z INTEGER, "
    "dz INTEGER, score INTEGER, class_id INTEGER, uid INTEGER, "
    "PRIMARY KEY (set_id, micrograph_id, row)) WITHOUT ROWID"
)


def as_schema_2(db) -> None:
    """Rewrite the catalog at ``db`` (schema 3) the way schema 2 stored particles: one
    ``particles`` table keyed (set, micrograph, row), no ``particle_rows``/``particle_z``, no
    ``first_row`` columns, no ``project_fingerprints`` or ``project_totals``, version 2 recorded. Views are dropped and made again by schema 2's
    SQL (which reads the ``particles`` table)."""
    from harvest.catalog.views import create_views

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    rows = conn.execute("SELECT * FROM particles").fetchall()
    for (view,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'").fetchall():
        conn.execute(f"DROP VIEW {view}")
    conn.execute("DROP TABLE particle_rows")
    conn.execute("DROP TABLE particle_z")
    conn.execute("DROP TABLE IF EXISTS project_fingerprints")  # migration 4
    conn.execute("DROP TABLE IF EXISTS project_totals")  # migration 5
    conn.execute(PARTICLES_V2)
    conn.executemany(f"INSERT INTO particles VALUES ({', '.join('?' * 12)})", rows)
    conn.execute("ALTER TABLE particle_sets DROP COLUMN first_row")
    conn.execute("ALTER TABLE set_counts DROP COLUMN first_row")
    conn.execute("DELETE FROM schema_version WHERE version > 2")
    create_views(conn)
    conn.execute("COMMIT")
    conn.close()
