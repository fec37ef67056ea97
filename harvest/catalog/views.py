"""SQL views: the catalog as plain data for ``sqlite3``, pandas or a notebook, without the codec.

The ``particles`` table stores integers (:mod:`harvest.catalog.codec`); these views decode them
in SQL, so ``SELECT avg(x) FROM particles_px`` is in pixels. Created by the schema's migration 2
(:mod:`harvest.catalog.schema`); a read-only reader of an older catalog gets them as TEMP views.

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
``stage_totals``       per project and stage: particles and micrographs, from the stored
                       per-set, per-micrograph counts (no particle is read: instant), combined
                       as :meth:`Catalog.project_stage_totals` does (per micrograph, a job's
                       per-class sets add up, its other sets take the largest; the largest job
                       wins; micrographs add up)
=====================  ========================================================================
"""

from __future__ import annotations

import sqlite3

from harvest.conventions import STAGE_RANK

_INT64_MAX = 9223372036854775807
# uid is stored as (uid − row) wrapped in int64; adding row back may wrap again (SQLite would
# turn the overflow into a float), hence the two branches.
_UID = (f"CASE WHEN p.uid > {_INT64_MAX} - p.row "
        f"THEN ((p.uid - {_INT64_MAX} - 1) + p.row) - {_INT64_MAX} - 1 ELSE p.uid + p.row END")


def _stage_rank_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{s}' THEN {r}" for s, r in STAGE_RANK.items())
    return f"CASE {column} {cases} END"


def view_sql(class_shift: bool = False) -> dict[str, str]:
    """``{view name: SELECT …}``. ``class_shift``: the catalog predates 1-based RELION class
    numbers (schema version 1): add 1 to RELION job sets' classes (read-only readers)."""
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
        "stage_totals": (
            "WITH per_job AS (SELECT s.project_id, c.micrograph_id, s.stage, "
            "ifnull(s.job_id, -s.id) AS job, "
            "sum(CASE WHEN s.class_id IS NOT NULL THEN c.count ELSE 0 END) AS classed, "
            "max(CASE WHEN s.class_id IS NULL THEN c.count ELSE 0 END) AS unclassed "
            "FROM set_counts c JOIN particle_sets s ON s.id = c.set_id "
            "GROUP BY s.project_id, c.micrograph_id, s.stage, job), "
            "per_mic AS (SELECT project_id, micrograph_id, stage, "
            "max(max(classed, unclassed)) AS n FROM per_job "
            "GROUP BY project_id, micrograph_id, stage) "
            "SELECT project_id, stage, sum(n) AS particles, count(*) AS micrographs "
            "FROM per_mic GROUP BY project_id, stage"
        ),
    }


def create_views(conn: sqlite3.Connection, temp: bool = False, class_shift: bool = False,
                 size_source: bool = True) -> None:
    """Create (or replace) the views; ``temp`` as TEMP views (a read-only connection)."""
    kind = "TEMP VIEW" if temp else "VIEW"
    for name, sql in view_sql(class_shift).items():
        if not size_source:
            sql = sql.replace("nz, size_source,", "nz, NULL AS size_source,")
        conn.execute(f"DROP VIEW IF EXISTS {'temp.' if temp else ''}{name}")
        conn.execute(f"CREATE {kind} {name} AS {sql}")
