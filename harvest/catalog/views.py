"""SQL views: the catalog as plain data for ``sqlite3``, pandas or a notebook, without the codec.

The ``particles`` table stores integers (:mod:`harvest.catalog.codec`); these views decode them
in SQL, so ``SELECT avg(x) FROM particles_px`` is in pixels. Created by the schema's migration 2
(:mod:`harvest.catalog.schema`), ``stage_totals`` reads stored totals since migration 5; a
read-only reader of an older catalog gets them as TEMP views.

=====================  ========================================================================
view                   what
=====================  ========================================================================
``particles_px``       one row per particle: project_id, set_id, stage, micrograph_id, row,
                       x, y (recentred centre), raw_x, raw_y (as picked), z, raw_z (NULL in
                       2D): float **pixels** of the micrograph (DESIGN.md frame); score (float,
                       NULL where none); class_id as the package numbers it (NULL where none);
                       uid (as :meth:`Catalog.particles`)
``micrographs_a``      one row per micrograph/tomogram: key, path, nx, ny, nz (px),
                       size_source (header | metadata), pixel_size_A, width_A, height_A,
                       depth_A (size × pixel size, **Å**), CTF (defocus Å, angle °, max res Å,
                       figure of merit), total_motion_A, exposure_uid, is_tomogram
``sets``               one row per particle set: project root and software, job key and kind,
                       name, **stage** and stage_rank, class_id, count, box_size (px),
                       image_pixel_size_A, box_A, is_3d, sparse, origin (job | external)
``stage_totals``       per project and stage: particles and micrographs (instant: it reads
                       the table ``project_totals``, which every crawl write of a project
                       rewrites for that project in the same transaction), combined from the
                       per-set, per-micrograph counts as :meth:`Catalog.project_stage_totals`
                       says (per micrograph, a job's per-class sets add up, its other sets
                       take the largest; the largest job wins; micrographs add up)
=====================  ========================================================================
"""

from __future__ import annotations

import sqlite3

from harvest.conventions import STAGE_RANK, STAGES

_INT64_MAX = 9223372036854775807
# uid is stored as (uid − row) wrapped in int64; adding row back may wrap again (SQLite would
# turn the overflow into a float), hence the two branches.
_UID = (f"CASE WHEN p.uid > {_INT64_MAX} - p.row "
        f"THEN ((p.uid - {_INT64_MAX} - 1) + p.row) - {_INT64_MAX} - 1 ELSE p.uid + p.row END")


STAGE_ORDER_SQL = "CASE stage " + " ".join(
    f"WHEN '{s}' THEN {i}" for i, s in enumerate(STAGES)) + " END"

# The stored totals (schema 5): one row per project and stage, rewritten with every write of
# the project (refresh_project_totals, in the write's transaction).
STORED_TOTALS_VIEW = "SELECT project_id, stage, particles, micrographs FROM project_totals"


def _per_micrograph_sql(project_filter: bool = False) -> str:
    """``WITH per_job AS (…), per_mic AS (…)``: per project, micrograph and stage, how many
    particles reached the stage (column ``n``), from ``set_counts``. Per micrograph, a job's
    per-class sets add up (they partition its particles), its other sets take the largest (an
    ``all_classes`` set repeats them), and the largest job wins (jobs at one stage are
    alternative curations of the same particles). ``project_filter``: only project ``?``
    (seeks: particle_sets by project, set_counts by set)."""
    where = "WHERE s.project_id = ? " if project_filter else ""
    return (
        "WITH per_job AS (SELECT s.project_id, c.micrograph_id, s.stage, "
        "ifnull(s.job_id, -s.id) AS job, "
        "sum(CASE WHEN s.class_id IS NOT NULL THEN c.count ELSE 0 END) AS classed, "
        "max(CASE WHEN s.class_id IS NULL THEN c.count ELSE 0 END) AS unclassed "
        f"FROM particle_sets s JOIN set_counts c ON c.set_id = s.id {where}"
        "GROUP BY s.project_id, c.micrograph_id, s.stage, job), "
        "per_mic AS (SELECT project_id, micrograph_id, stage, "
        "max(max(classed, unclassed)) AS n FROM per_job "
        "GROUP BY project_id, micrograph_id, stage)"
    )


def micrograph_stage_counts_sql() -> str:
    """SELECT micrograph_id, stage, count of project ``?``, ordered by micrograph and stage."""
    return (f"{_per_micrograph_sql(True)} SELECT micrograph_id, stage, n AS count FROM per_mic "
            f"ORDER BY micrograph_id, {STAGE_ORDER_SQL}")


def project_totals_sql(project_filter: bool = False) -> str:
    """SELECT project_id, stage, particles, micrographs: computed from ``set_counts`` (all
    projects, or project ``?``)."""
    return (f"{_per_micrograph_sql(project_filter)} SELECT project_id, stage, sum(n) AS "
            "particles, count(*) AS micrographs FROM per_mic GROUP BY project_id, stage")


def refresh_project_totals(conn: sqlite3.Connection, project_id: int) -> None:
    """Rewrite project ``project_id``'s rows of ``project_totals`` from its per-micrograph
    counts (in the caller's transaction: the writes that changed them). Cost: the project's
    own count rows, never the catalog's."""
    pid = int(project_id)
    conn.execute("DELETE FROM project_totals WHERE project_id = ?", (pid,))
    conn.execute(f"INSERT INTO project_totals (project_id, stage, particles, micrographs) "
                 f"{project_totals_sql(True)}", (pid,))


def _stage_rank_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{s}' THEN {r}" for s, r in STAGE_RANK.items())
    return f"CASE {column} {cases} END"


def view_sql(class_shift: bool = False, stored_totals: bool = False) -> dict[str, str]:
    """``{view name: SELECT …}``. ``class_shift``: the catalog predates 1-based RELION class
    numbers (schema version 1): add 1 to RELION job sets' classes (read-only readers).
    ``stored_totals``: ``stage_totals`` reads the table ``project_totals`` (schema 5), else it
    combines the per-micrograph counts itself (older catalogs)."""
    relion = ("(SELECT software FROM projects WHERE id = s.project_id) = 'relion' "
              "AND s.origin = 'job'")
    shift = f" + (CASE WHEN {relion} THEN 1 ELSE 0 END)" if class_shift else ""
    return {
        "particles_px": (
            "SELECT s.project_id, p.set_id, s.stage, p.micrograph_id, p.row, "
            "(p.x + p.dx) / 1000.0 AS x, (p.y + p.dy) / 1000.0 AS y, "
            "p.x / 1000.0 AS raw_x, p.y / 1000.0 AS raw_y, "
            "(p.z + ifnull(p.dz, 0)) / 1000.0 AS z, p.z / 1000.0 AS raw_z, "
            "p.score / s.score_scale AS score, "
            f"CASE WHEN p.class_id < 0 THEN NULL ELSE p.class_id{shift} END AS class_id, "
            f"{_UID} AS uid "
            "FROM particles p JOIN particle_sets s ON s.id = p.set_id"
        ),
        "micrographs_a": (
            "SELECT id, project_id, key, path, abs_path, nx, ny, nz, size_source, "
            "pixel_size AS pixel_size_A, nx * pixel_size AS width_A, "
            "ny * pixel_size AS height_A, nz * pixel_size AS depth_A, "
            "defocus_u AS defocus_u_A, defocus_v AS defocus_v_A, "
            "defocus_angle AS defocus_angle_deg, ctf_max_res AS ctf_max_res_A, ctf_fom, "
            "total_motion AS total_motion_A, exposure_uid, is_tomogram FROM micrographs"
        ),
        "sets": (
            "SELECT s.id AS set_id, s.project_id, pr.root AS project_root, pr.software, "
            "j.key AS job_key, j.kind AS job_kind, s.name, s.stage, "
            f"{_stage_rank_sql('s.stage')} AS stage_rank, s.class_id{shift} AS class_id, "
            "s.count, s.box_size, s.image_pixel_size AS image_pixel_size_A, "
            "s.box_size * s.image_pixel_size AS box_A, s.is_3d, s.sparse, s.origin "
            "FROM particle_sets s JOIN projects pr ON pr.id = s.project_id "
            "LEFT JOIN jobs j ON j.id = s.job_id"
        ),
        "stage_totals": STORED_TOTALS_VIEW if stored_totals else project_totals_sql(),
    }


def create_views(conn: sqlite3.Connection, temp: bool = False, class_shift: bool = False,
                 size_source: bool = True, stored_totals: bool = False) -> None:
    """Create (or replace) the views; ``temp`` as TEMP views (a read-only connection)."""
    kind = "TEMP VIEW" if temp else "VIEW"
    for name, sql in view_sql(class_shift, stored_totals).items():
        if not size_source:
            sql = sql.replace("nz, size_source,", "nz, NULL AS size_source,")
        conn.execute(f"DROP VIEW IF EXISTS {'temp.' if temp else ''}{name}")
        conn.execute(f"CREATE {kind} {name} AS {sql}")
